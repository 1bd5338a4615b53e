import KilnCore

/// The validated header of one .npy member (NPY layout 1.–4. in Layout.swift).
struct NPYHeader: Sendable {
    /// Format major version: 1, 2 or 3.
    let version: UInt8
    let dtype: DType
    let shape: Shape
    /// Bytes before the data: magic, version, length field and header text.
    let length: Int
    /// Bytes of data the header promises: product(shape) × itemsize (checked for overflow).
    let dataBytes: Int
}

/// Parses .npy headers. Errors carry an offset relative to the first byte of the member and
/// no file; the reader places them (see `NPZReader.place`).
enum NPY {
    /// How many bytes the whole header occupies, from the first bytes of a member.
    /// - Parameter prefix: the first `NPYLayout.prelude2` bytes of the member (fewer if it is shorter).
    /// - Throws: `KilnError(.invalidInput)`: bad magic, unknown version, header over the limit.
    static func headerLength(_ prefix: UnsafeRawBufferPointer) throws -> Int {
        guard prefix.count >= NPYLayout.prelude1, Array(prefix[0..<6]) == NPYLayout.magic else {
            let found = prefix.prefix(6).map { String($0, radix: 16, uppercase: true) }.joined(separator: " ")
            throw KilnError.mismatch(file: nil, offset: 0, path: ["npy magic"], expected: "93 4E 55 4D 50 59 (\"\\x93NUMPY\")",
                                     found: found.isEmpty ? "an empty member" : found)
        }
        let major = prefix[6], minor = prefix[7]
        guard NPYLayout.versions.contains(major), minor == 0 else {
            throw KilnError.mismatch(file: nil, offset: 6, path: ["npy version"], expected: "1.0, 2.0 or 3.0", found: "\(major).\(minor)")
        }
        let prelude = major == 1 ? NPYLayout.prelude1 : NPYLayout.prelude2
        guard prefix.count >= prelude else {
            throw KilnError.mismatch(file: nil, offset: 8, path: ["npy header length"], expected: "4 bytes", found: "\(prefix.count - 8)")
        }
        let text = major == 1 ? Int(prefix.u16(8)) : Int(prefix.u32(8))
        guard text <= Limits.maxNPYHeaderBytes else {
            throw KilnError.mismatch(file: nil, offset: 8, path: ["npy header length"],
                                     expected: "at most \(Limits.maxNPYHeaderBytes) bytes", found: "\(text)")
        }
        return prelude + text
    }

    /// Parse and check a whole header.
    /// - Parameter bytes: the member's first `headerLength(_:)` bytes.
    /// - Throws: `KilnError(.invalidInput)` for a malformed dict, missing or extra keys, an unknown
    ///   dtype or a bad shape; `KilnError(.unsupported)` for Fortran-ordered data.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> NPYHeader {
        let length = try headerLength(bytes)
        let textStart = bytes[6] == 1 ? NPYLayout.prelude1 : NPYLayout.prelude2
        var parser = PyLiteralParser(bytes: UnsafeRawBufferPointer(rebasing: bytes[textStart..<length]), base: textStart)
        let (value, at) = try parser.parseHeader()
        guard case .dict(let items) = value else {
            throw KilnError.mismatch(file: nil, offset: at, path: ["npy header"], expected: "a dict", found: value.kind)
        }
        let keys = items.map(\.0).sorted()
        guard keys == ["descr", "fortran_order", "shape"] else {
            throw KilnError.mismatch(file: nil, offset: at, path: ["npy header"], expected: "keys descr, fortran_order, shape",
                                     found: keys.isEmpty ? "no keys" : keys.joined(separator: ", "))
        }
        let field = Dictionary(items.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        let dtype = try self.dtype(field["descr"]!)
        let shape = try self.shape(field["shape"]!)
        guard case .bool(let fortran) = field["fortran_order"]!.0 else {
            throw KilnError.mismatch(file: nil, offset: field["fortran_order"]!.1, path: ["npy header", "fortran_order"],
                                     expected: "True or False", found: field["fortran_order"]!.0.kind)
        }
        // With at most one dimension above 1, Fortran and C order are the same bytes.
        if fortran, shape.dims.filter({ $0 > 1 }).count > 1 {
            throw KilnError(.unsupported, offset: field["fortran_order"]!.1, path: ["npy header", "fortran_order"],
                            "expected False (C order), found True; re-save with np.ascontiguousarray(a)")
        }
        guard let count = shape.elementCount, let dataBytes = dtype.byteCount(elements: count) else {
            throw KilnError.mismatch(file: nil, offset: field["shape"]!.1, path: ["npy header", "shape"],
                                     expected: "a size below 2^63 bytes", found: shape.description)
        }
        return NPYHeader(version: bytes[6], dtype: dtype, shape: shape, length: length, dataBytes: dataBytes)
    }

    private static func dtype(_ field: (PyValue, Int)) throws -> DType {
        let expected = NPYLayout.dtypes.map { "'\($0.descr)'" }.joined(separator: " ")
        guard case .string(let descr) = field.0 else {
            var note: String?
            if case .list = field.0 { note = "structured dtypes are not supported" }
            throw KilnError.mismatch(file: nil, offset: field.1, path: ["npy header", "descr"], expected: "one of \(expected)",
                                     found: field.0.kind, note: note)
        }
        if let hit = NPYLayout.dtypes.first(where: { $0.descr == descr }) { return hit.dtype }
        var note: String?
        if descr.hasPrefix(">") { note = "big-endian; save a.astype(a.dtype.newbyteorder('<')) instead" }
        if descr == "|O" { note = "object arrays are pickles and are not read" }
        if descr.hasPrefix("|V") { note = "raw bytes (ml_dtypes types such as bfloat16 are saved like this)" }
        throw KilnError.mismatch(file: nil, offset: field.1, path: ["npy header", "descr"], expected: "one of \(expected)",
                                 found: "'\(descr)'", note: note)
    }

    private static func shape(_ field: (PyValue, Int)) throws -> Shape {
        guard case .tuple(let items) = field.0 else {
            throw KilnError.mismatch(file: nil, offset: field.1, path: ["npy header", "shape"], expected: "a tuple of integers", found: field.0.kind)
        }
        guard items.count <= Limits.maxRank else {
            throw KilnError.mismatch(file: nil, offset: field.1, path: ["npy header", "shape"],
                                     expected: "at most \(Limits.maxRank) dimensions", found: "\(items.count)")
        }
        var dims: [Int] = []
        for (i, item) in items.enumerated() {
            guard case .int(let d) = item, d >= 0 else {
                throw KilnError.mismatch(file: nil, offset: field.1, path: ["npy header", "shape", "dimension \(i)"],
                                         expected: "a non-negative integer", found: item.text)
            }
            dims.append(d)
        }
        return Shape(dims)
    }
}

/// A Python literal as found in an .npy header.
indirect enum PyValue {
    case string(String), int(Int), bool(Bool), none
    case tuple([PyValue]), list([PyValue])
    /// Keys, values and the offset of each value.
    case dict([(String, PyValue, Int)])

    var kind: String {
        switch self {
        case .string: return "a string"
        case .int: return "an integer"
        case .bool: return "a bool"
        case .none: return "None"
        case .tuple: return "a tuple"
        case .list: return "a list"
        case .dict: return "a dict"
        }
    }

    var text: String {
        switch self {
        case .string(let s): return "'\(s)'"
        case .int(let v): return String(v)
        case .bool(let b): return b ? "True" : "False"
        default: return kind
        }
    }
}

/// Parses the subset of Python literal syntax numpy writes: dicts, tuples, lists, strings,
/// integers (an old `3L` too), True, False, None. Offsets are `base` + position in `bytes`.
struct PyLiteralParser {
    let bytes: UnsafeRawBufferPointer
    let base: Int
    var at = 0
    static let maxDepth = 8

    init(bytes: UnsafeRawBufferPointer, base: Int) {
        self.bytes = bytes
        self.base = base
    }

    /// The header's one value, followed only by spaces and a newline. Returns it with its offset.
    mutating func parseHeader() throws -> (PyValue, Int) {
        skipSpace()
        let start = base + at
        let value = try parseValue(depth: 0)
        skipSpace()
        guard at == bytes.count else { throw problem(expected: "the end of the header") }
        return (value, start)
    }

    private mutating func parseValue(depth: Int) throws -> PyValue {
        guard depth < PyLiteralParser.maxDepth else { throw problem(expected: "at most \(PyLiteralParser.maxDepth) nesting levels") }
        skipSpace()
        guard at < bytes.count else { throw problem(expected: "a value") }
        switch bytes[at] {
        case UInt8(ascii: "'"), UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "("): return .tuple(try parseSequence(close: ")", depth: depth))
        case UInt8(ascii: "["): return .list(try parseSequence(close: "]", depth: depth))
        case UInt8(ascii: "{"): return try parseDict(depth: depth)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .int(try parseInt())
        default:
            for (word, value) in [("True", PyValue.bool(true)), ("False", .bool(false)), ("None", .none)] where take(word) {
                return value
            }
            throw problem(expected: "a Python literal")
        }
    }

    private mutating func parseDict(depth: Int) throws -> PyValue {
        at += 1
        var items: [(String, PyValue, Int)] = []
        while true {
            skipSpace()
            if take("}") { return .dict(items) }
            guard at < bytes.count, bytes[at] == UInt8(ascii: "'") || bytes[at] == UInt8(ascii: "\"") else {
                throw problem(expected: "a string key or '}'")
            }
            let key = try parseString()
            skipSpace()
            guard take(":") else { throw problem(expected: "':'") }
            skipSpace()
            let valueAt = base + at
            let value = try parseValue(depth: depth + 1)
            guard !items.contains(where: { $0.0 == key }) else {
                throw KilnError.mismatch(file: nil, offset: valueAt, path: ["npy header"], expected: "each key once", found: "'\(key)' twice")
            }
            items.append((key, value, valueAt))
            skipSpace()
            if take(",") { continue }
            guard take("}") else { throw problem(expected: "',' or '}'") }
            return .dict(items)
        }
    }

    private mutating func parseSequence(close: Unicode.Scalar, depth: Int) throws -> [PyValue] {
        at += 1
        var items: [PyValue] = []
        while true {
            skipSpace()
            if take(String(close)) { return items }
            items.append(try parseValue(depth: depth + 1))
            skipSpace()
            if take(",") { continue }
            guard take(String(close)) else { throw problem(expected: "',' or '\(close)'") }
            return items
        }
    }

    private mutating func parseString() throws -> String {
        let quote = bytes[at]
        at += 1
        var out: [UInt8] = []
        while at < bytes.count, bytes[at] != quote {
            if bytes[at] == UInt8(ascii: "\\") { at += 1 }
            guard at < bytes.count else { break }
            out.append(bytes[at])
            at += 1
        }
        guard at < bytes.count else { throw problem(expected: "a closing quote") }
        at += 1
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func parseInt() throws -> Int {
        let start = at
        let negative = take("-")
        var value = 0
        guard at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) else { throw problem(expected: "a digit") }
        while at < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(bytes[at] - UInt8(ascii: "0")))
            guard !o1, !o2 else {
                at = start
                throw problem(expected: "an integer below 2^63")
            }
            value = s
            at += 1
        }
        _ = take("L")
        return negative ? -value : value
    }

    private mutating func skipSpace() {
        while at < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[at]) { at += 1 }
    }

    private mutating func take(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard bytes.count - at >= w.count, zip(bytes[at..<at + w.count], w).allSatisfy({ $0 == $1 }) else { return false }
        at += w.count
        return true
    }

    private func problem(expected: String) -> KilnError {
        let found = at < bytes.count ? "'" + String(decoding: bytes[at..<min(bytes.count, at + 12)], as: UTF8.self) + "'" : "the end of the header"
        return KilnError.mismatch(file: nil, offset: base + at, path: ["npy header"], expected: expected, found: found)
    }
}
