// safetensors byte layout (https://github.com/huggingface/safetensors, "Format"):
//
//   1. 8 bytes    N: unsigned little-endian 64-bit length of the header
//   2. N bytes    header: UTF-8 JSON object
//                   { "__metadata__": { str: str, ... },            (optional)
//                     "<tensor name>": { "dtype": "F32" | "BF16" | "F8_E4M3" | ...,
//                                        "shape": [d0, d1, ...],
//                                        "data_offsets": [begin, end] }, ... }
//                 padded with spaces (0x20) to a multiple of 8 by the reference writer
//   3. data       tensor bytes, row-major little-endian; offsets are relative to the
//                 start of this section; together the tensors cover it exactly,
//                 without overlaps or gaps.
//
// Shared by every plugin that reads or writes safetensors files (the safetensors format,
// TensorRT-LLM rank files, unified HF checkpoints): formats must not import each other.

/// One safetensors file: its validated header, and its tensors as lazy mapped views.
///
/// ```swift
/// let st = try SafetensorsFile(path: "rank0.safetensors")
/// for t in st.tensors() { ... }              // mapped, nothing read yet
/// try SafetensorsFile.write(tensors, metadata: [:], to: "out.safetensors")
/// ```
public struct SafetensorsFile: @unchecked Sendable {
    /// One tensor entry of a validated header.
    public struct Entry: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: Shape
        /// Offsets relative to the data section.
        public let begin: Int
        public let end: Int
    }

    /// Named bounds the reader enforces before it trusts a file.
    public enum Limits {
        /// Largest header accepted (the reference implementation's MAX_HEADER_SIZE).
        public static let maxHeaderBytes = 100_000_000
        /// Deepest JSON nesting accepted in a header (real headers use 3 levels).
        public static let maxJSONDepth = 16
        /// Largest rank accepted for a tensor.
        public static let maxRank = 64
    }

    /// Constants of the byte layout (numbered in the comment at the top of this file).
    public enum Layout {
        public static let lengthBytes = 8
        public static let metadataKey = "__metadata__"
        public static let headerPadding: UInt8 = 0x20
        public static let headerAlignment = 8
    }

    public let file: MappedFile
    /// Entries in header order.
    public let entries: [Entry]
    public let metadata: [String: String]
    /// File offset where the data section starts (8 + header length).
    public let dataStart: Int

    /// Map `path` and validate its header.
    /// - Throws: `KilnError(.io)` if the file cannot be mapped; `KilnError(.invalidInput)` naming the
    ///   file, the offset when known, the tensor and field, for any header that does not validate.
    public init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    /// Validate the header of an already mapped file (DESIGN §6): sizes, JSON, dtypes, shapes,
    /// offsets that cover the data section exactly.
    /// - Throws: `KilnError(.invalidInput)` naming the file, the offset when known, the tensor and field.
    /// - Complexity: O(header bytes + n log n) for n tensors.
    public init(file: MappedFile) throws {
        let path = file.path
        guard file.count >= Layout.lengthBytes else {
            throw KilnError.mismatch(file: path, offset: 0, path: ["header length"],
                                     expected: "at least 8 bytes", found: "\(file.count) bytes", note: "truncated file")
        }
        let lengthBytes = file.bytes(offset: 0, count: Layout.lengthBytes)
        var n: UInt64 = 0
        for i in (0..<8).reversed() { n = n << 8 | UInt64(lengthBytes[i]) }
        guard n <= UInt64(Limits.maxHeaderBytes) else {
            throw KilnError.mismatch(file: path, offset: 0, path: ["header length"],
                                     expected: "at most \(Limits.maxHeaderBytes) bytes", found: "\(n)")
        }
        let headerLength = Int(n)
        guard headerLength <= file.count - Layout.lengthBytes else {
            throw KilnError.mismatch(file: path, offset: 0, path: ["header length"],
                                     expected: "at most \(file.count - Layout.lengthBytes) (bytes after the length field)",
                                     found: "\(headerLength)", note: "truncated file or lying header")
        }
        let headerBytes = file.bytes(offset: Layout.lengthBytes, count: headerLength)
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw KilnError.mismatch(file: path, offset: Layout.lengthBytes, path: ["header"],
                                     expected: "a JSON object starting with '{'",
                                     found: headerBytes.first.map { "byte 0x" + String($0, radix: 16) } ?? "an empty header")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(headerBytes, maxDepth: Limits.maxJSONDepth, rejectDuplicateKeys: true)
        } catch var error as KilnError {
            error.file = path
            error.offset = error.offset.map { $0 + Layout.lengthBytes }
            throw error.adding(context: "header")
        }
        guard let object = json.objectValue else {
            throw KilnError.mismatch(file: path, offset: Layout.lengthBytes, path: ["header"], expected: "a JSON object", found: "another JSON value")
        }
        var entries: [Entry] = []
        var metadata: [String: String] = [:]
        for (key, value) in object {
            if key == Layout.metadataKey {
                metadata = try SafetensorsFile.parseMetadata(value, file: path)
            } else {
                entries.append(try SafetensorsFile.parseEntry(name: key, value, file: path))
            }
        }
        let dataStart = Layout.lengthBytes + headerLength
        try SafetensorsFile.checkCoverage(entries, dataBytes: file.count - dataStart, file: path)
        self.file = file
        self.entries = entries
        self.metadata = metadata
        self.dataStart = dataStart
    }

    /// The entry called `name`, if any.
    public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }

    /// Lazy tensors backed by the mapped file, in data order (the order a writer wrote them).
    /// - Parameter wanted: only these names (all when nil).
    public func tensors(only wanted: Set<String>? = nil) -> [Tensor] {
        entries.sorted { $0.begin < $1.begin }.compactMap { e in
            if let wanted, !wanted.contains(e.name) { return nil }
            return tensor(e)
        }
    }

    /// The lazy tensor of one entry.
    public func tensor(_ e: Entry) -> Tensor {
        Tensor(name: e.name, dtype: e.dtype, shape: e.shape, storage: .mapped(file, offset: dataStart + e.begin))
    }

    // MARK: - Validation

    static func parseMetadata(_ value: JSONValue, file: String) throws -> [String: String] {
        let where_ = ["header", Layout.metadataKey]
        guard let object = value.objectValue else {
            throw KilnError.mismatch(file: file, path: where_, expected: "an object of strings", found: describe(value))
        }
        var result: [String: String] = [:]
        for (k, v) in object {
            guard let s = v.stringValue else {
                throw KilnError.mismatch(file: file, path: where_ + ["\"\(k)\""], expected: "a string", found: describe(v))
            }
            result[k] = s
        }
        return result
    }

    static func parseEntry(name: String, _ value: JSONValue, file: String) throws -> Entry {
        let here = ["header", "tensor \"\(name)\""]
        guard value.objectValue != nil else {
            throw KilnError.mismatch(file: file, path: here, expected: "an object with dtype, shape, data_offsets", found: describe(value))
        }
        guard let dtypeName = value["dtype"]?.stringValue else {
            throw KilnError.mismatch(file: file, path: here + ["dtype"], expected: "a string", found: describe(value["dtype"]))
        }
        guard let dtype = DType(safetensorsName: dtypeName) else {
            throw KilnError.mismatch(file: file, path: here + ["dtype"],
                                     expected: "one of \(DType.safetensorsNames.joined(separator: " "))", found: "\"\(dtypeName)\"")
        }
        guard let shapeValues = value["shape"]?.arrayValue else {
            throw KilnError.mismatch(file: file, path: here + ["shape"], expected: "an array of integers", found: describe(value["shape"]))
        }
        guard shapeValues.count <= Limits.maxRank else {
            throw KilnError.mismatch(file: file, path: here + ["shape"], expected: "at most \(Limits.maxRank) dimensions", found: "\(shapeValues.count)")
        }
        var dims: [Int] = []
        for (i, d) in shapeValues.enumerated() {
            guard let v = d.intValue, v >= 0 else {
                throw KilnError.mismatch(file: file, path: here + ["shape", "[\(i)]"], expected: "a non-negative integer", found: describe(d))
            }
            dims.append(Int(v))
        }
        let shape = Shape(dims)
        guard let count = shape.elementCount, let size = dtype.byteCount(elements: count) else {
            throw KilnError(.invalidInput, file: file, path: here + ["shape"], "element count of \(shape) overflows")
        }
        guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
              let b = offsets[0].intValue, let e = offsets[1].intValue else {
            throw KilnError.mismatch(file: file, path: here + ["data_offsets"], expected: "[begin, end] integers", found: describe(value["data_offsets"]))
        }
        guard b >= 0, e >= b else {
            throw KilnError.mismatch(file: file, path: here + ["data_offsets"], expected: "0 ≤ begin ≤ end", found: "[\(b), \(e)]")
        }
        guard e - b == Int64(size) else {
            throw KilnError.mismatch(file: file, path: here + ["data_offsets"],
                                     expected: "\(size) bytes (\(count) × \(dtype.safetensorsName) of shape \(shape))",
                                     found: "\(e - b) bytes [\(b), \(e)]")
        }
        return Entry(name: name, dtype: dtype, shape: shape, begin: Int(b), end: Int(e))
    }

    /// Tensors must tile the data section: sorted by offset, first at 0, each starting where the
    /// previous ended, the last ending at the end of the file.
    static func checkCoverage(_ entries: [Entry], dataBytes: Int, file: String) throws {
        var at = 0
        var previous: String?
        for e in entries.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            let here = ["header", "tensor \"\(e.name)\"", "data_offsets"]
            if e.begin < at {
                throw KilnError.mismatch(file: file, path: here, expected: "begin ≥ \(at)", found: "\(e.begin)",
                                         note: "overlaps tensor \"\(previous ?? "")\"")
            }
            if e.begin > at {
                throw KilnError.mismatch(file: file, path: here, expected: "begin = \(at)", found: "\(e.begin)",
                                         note: "gap of \(e.begin - at) bytes after \(previous.map { "tensor \"\($0)\"" } ?? "the header")")
            }
            if e.end > dataBytes {
                throw KilnError.mismatch(file: file, path: here, expected: "end ≤ \(dataBytes) (data bytes in the file)", found: "\(e.end)",
                                         note: "truncated file")
            }
            at = e.end
            previous = e.name
        }
        if at != dataBytes {
            throw KilnError.mismatch(file: file, path: ["data"], expected: "tensors covering all \(dataBytes) data bytes",
                                     found: "\(dataBytes - at) bytes after the last tensor")
        }
    }

    /// A JSON value in a few words, for error messages.
    public static func describe(_ v: JSONValue?) -> String {
        guard let v else { return "nothing" }
        switch v {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "an array of \(a.count)"
        case .object: return "an object"
        }
    }
}

extension DType {
    /// Safetensors name, or Kiln's name when the format has none (for messages).
    public var safetensorsName: String { traits.safetensors ?? name }
}
