#if canImport(Glibc)
import Glibc
#endif
import CZlib
import KilnCore

/// Reads numpy `.npz` archives: each member `x.npy` becomes the tensor `x`, in archive order.
///
/// Stored members (`np.savez`) stay in the memory map: `.mapped` when the data is aligned to
/// its element size, otherwise a `.deferred` copy of the mapped bytes. Deflated members
/// (`np.savez_compressed`) are `.deferred`: inflated, size- and CRC-checked when the tensor's
/// bytes are first needed, so `kiln inspect` reads only the headers.
public final class NPZReader: FormatReader {
    public let name = "npz"
    public let summary = "numpy .npz archives (np.savez, np.savez_compressed); member x.npy is tensor x"
    public var capabilities: [String] { ["weights", "deflate", "zip64"] + NPYLayout.dtypes.map { $0.dtype.name } }

    /// 100 for a `.npz` file starting with a zip signature; 10 for another `.npz` file, so that
    /// this reader, not "no reader recognises it", explains what is wrong with it.
    public init() {}

    public func probe(path: String) -> Int {
        guard path.hasSuffix(".npz"), !FileSystem.isDirectory(path) else { return 0 }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 4)
        let n = Glibc.read(fd, &magic, 4)
        return n == 4 && ZipLayout.magics.contains(magic) ? 100 : 10
    }

    /// Read every member's header and describe its data; no tensor data is read.
    /// - Throws: `KilnError` naming the file, the offset and `member "x.npy" › ...` for a bad
    ///   archive, a member that is not an .npy file, a bad header or a header whose shape and
    ///   dtype disagree with the member's size.
    /// - Complexity: O(members + header bytes).
    public func read(path: String, context: KilnContext) throws -> Model {
        let file = try MappedFile(path: path)
        let archive = try ZipArchive(file)
        let model = try Model(sourcePath: path)
        for (i, entry) in archive.entries.enumerated() {
            if entry.name.hasSuffix("/"), entry.uncompressedSize == 0 { continue }  // a folder entry
            guard entry.name.hasSuffix(NPYLayout.memberSuffix), entry.name.count > NPYLayout.memberSuffix.count else {
                throw KilnError.mismatch(file: path, offset: entry.centralOffset, path: [entry.context],
                                         expected: "an .npy member", found: "\"\(entry.name)\"")
            }
            let tensor = try self.tensor(entry, in: file)
            do {
                try model.add(tensor)
            } catch let error as KilnError {
                throw error.inFile(path).adding(context: entry.context)
            }
            context.progress?.update(label: "reading \(path)", done: i + 1, total: archive.entries.count)
        }
        return model
    }

    /// The tensor of one member, with lazy storage.
    func tensor(_ entry: ZipEntry, in file: MappedFile) throws -> Tensor {
        let header: NPYHeader
        do {
            header = try readHeader(entry, in: file)
        } catch let error as KilnError {
            throw place(error, entry, file)
        }
        let available = entry.uncompressedSize - header.length
        guard available == header.dataBytes else {
            let offset = entry.method == .stored ? entry.dataOffset + header.length : entry.localOffset
            throw KilnError.mismatch(
                file: file.path, offset: offset, path: [entry.context, "data"],
                expected: "\(header.dataBytes) bytes (shape \(header.shape) of \(header.dtype))", found: "\(available) bytes",
                note: "the npy header does not describe the data")
        }
        let name = String(entry.name.dropLast(NPYLayout.memberSuffix.count))
        let count = header.dataBytes
        let storage: TensorStorage
        switch entry.method {
        case .stored:
            let start = entry.dataOffset + header.length
            if start % max(1, header.dtype.bits / 8) == 0 {
                storage = .mapped(file, offset: start)
            } else {
                storage = .deferred { TensorBuffer(copying: file.bytes(offset: start, count: count)) }
            }
        case .deflate:
            storage = .deferred {
                let inflater = try Inflater(entry, in: file)
                try inflater.skip(header.length)
                let out = TensorBuffer(count: count)
                try inflater.fill(out.mutableBytes)
                try inflater.finish()
                return out
            }
        }
        return Tensor(name: name, dtype: header.dtype, shape: header.shape, storage: storage)
    }

    /// The member's .npy header: read from the map (stored) or inflated (deflated).
    func readHeader(_ entry: ZipEntry, in file: MappedFile) throws -> NPYHeader {
        let size = entry.uncompressedSize
        switch entry.method {
        case .stored:
            let bytes = file.bytes(offset: entry.dataOffset, count: size)
            let length = try NPY.headerLength(UnsafeRawBufferPointer(rebasing: bytes.prefix(NPYLayout.prelude2)))
            try checkFits(length, size)
            return try NPY.parse(UnsafeRawBufferPointer(rebasing: bytes.prefix(length)))
        case .deflate:
            let (limit, overflow) = entry.compressedSize.multipliedReportingOverflow(by: Limits.maxDeflateRatio)
            guard overflow || size <= limit + Limits.deflateSlack else {
                throw KilnError.mismatch(file: file.path, offset: entry.centralOffset + 24, path: [entry.context, "uncompressed size"],
                                         expected: "at most \(limit + Limits.deflateSlack) for \(entry.compressedSize) deflated bytes",
                                         found: "\(size)", note: "deflate cannot expand more than 1032:1")
            }
            let prelude = try inflatedPrefix(entry, in: file, count: min(size, NPYLayout.prelude2))
            let length = try prelude.withUnsafeBytes { try NPY.headerLength($0) }
            try checkFits(length, size)
            return try inflatedPrefix(entry, in: file, count: length).withUnsafeBytes { try NPY.parse($0) }
        }
    }

    private func checkFits(_ length: Int, _ size: Int) throws {
        guard length <= size else {
            throw KilnError.mismatch(file: nil, offset: 8, path: ["npy header length"],
                                     expected: "at most \(size) bytes (the member's size)", found: "\(length)")
        }
    }

    private func inflatedPrefix(_ entry: ZipEntry, in file: MappedFile, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let inflater = try Inflater(entry, in: file)
        try bytes.withUnsafeMutableBytes { try inflater.fill($0) }
        return bytes
    }

    /// Give an .npy error (offset relative to the member, no file) its place in the archive. A
    /// stored member's offsets are file offsets; inside a deflated member there are none, so the
    /// error points at the member's local header and says where in the inflated bytes it is.
    func place(_ error: KilnError, _ entry: ZipEntry, _ file: MappedFile) -> KilnError {
        guard error.file == nil else { return error }
        var placed = error
        placed.file = file.path
        if entry.method == .stored {
            placed.offset = error.offset.map { entry.dataOffset + $0 }
        } else {
            if let relative = error.offset { placed.message += " (at byte \(relative) of the inflated member)" }
            placed.offset = entry.localOffset
        }
        return placed.adding(context: entry.context)
    }
}

/// Inflates one deflated zip member (raw deflate) with zlib, in pieces of at most 1 GiB (zlib
/// counts in 32 bits), checking the declared size and the CRC-32 at the end.
final class Inflater {
    private let stream: UnsafeMutablePointer<z_stream>
    private let entry: ZipEntry
    private let file: MappedFile
    private let input: UnsafeRawBufferPointer
    private var fed = 0
    private var produced = 0
    private var ended = false
    private var crc: UInt
    private static let piece = 1 << 30

    /// - Throws: `KilnError(.internal)` if zlib cannot start (out of memory, version mismatch).
    init(_ entry: ZipEntry, in file: MappedFile) throws {
        self.entry = entry
        self.file = file
        input = file.bytes(offset: entry.dataOffset, count: entry.compressedSize)
        crc = CZlib.crc32(0, nil, 0)
        // zlib keeps a pointer back to the stream: it must not move, so it lives on the heap.
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = kiln_npz_inflate_init_raw(stream)
        guard status == Z_OK else {
            stream.deallocate()
            throw KilnError(.internal, file: file.path, path: [entry.context], "zlib inflateInit2 failed (\(status))")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    /// Inflate exactly `target.count` bytes into `target`.
    /// - Throws: `KilnError(.invalidInput)` if the data is corrupt or ends before that.
    func fill(_ target: UnsafeMutableRawBufferPointer) throws {
        var written = 0
        while written < target.count {
            let n = min(target.count - written, Inflater.piece)
            let out = target.baseAddress! + written
            let got = try step(into: out, count: n)
            crc = CZlib.crc32(crc, out.assumingMemoryBound(to: Bytef.self), uInt(got))
            written += got
            guard got > 0 || !ended else {
                throw KilnError.mismatch(file: file.path, offset: entry.dataOffset, path: [entry.context, "deflate data"],
                                         expected: "\(entry.uncompressedSize) bytes when inflated", found: "\(produced)")
            }
        }
    }

    /// Inflate and drop `count` bytes (the header, already parsed).
    func skip(_ count: Int) throws {
        var scratch = [UInt8](repeating: 0, count: count)
        try scratch.withUnsafeMutableBytes { try fill($0) }
    }

    /// Check the stream ends here and the CRC-32 matches the central directory.
    func finish() throws {
        var extra: UInt8 = 0
        while !ended {
            guard try step(into: &extra, count: 1) == 0 else {
                throw KilnError.mismatch(file: file.path, offset: entry.centralOffset + 24, path: [entry.context, "uncompressed size"],
                                         expected: "\(entry.uncompressedSize) bytes", found: "more when inflated")
            }
        }
        guard UInt32(truncatingIfNeeded: crc) == entry.crc32 else {
            throw KilnError.mismatch(file: file.path, offset: entry.centralOffset + 16, path: [entry.context, "crc-32"],
                                     expected: "0x" + String(entry.crc32, radix: 16, uppercase: true),
                                     found: "0x" + String(UInt32(truncatingIfNeeded: crc), radix: 16, uppercase: true))
        }
    }

    /// One call to inflate(): up to `count` bytes into `out`. Returns how many were produced.
    private func step(into out: UnsafeMutableRawPointer, count: Int) throws -> Int {
        if ended { return 0 }
        if stream.pointee.avail_in == 0, fed < input.count {
            let n = min(input.count - fed, Inflater.piece)
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self) + fed)
            stream.pointee.avail_in = uInt(n)
            fed += n
        }
        stream.pointee.next_out = out.assumingMemoryBound(to: Bytef.self)
        stream.pointee.avail_out = uInt(count)
        let status = inflate(stream, Z_NO_FLUSH)
        let got = count - Int(stream.pointee.avail_out)
        produced += got
        switch status {
        case Z_STREAM_END:
            ended = true
        case Z_OK:
            break
        case Z_BUF_ERROR where stream.pointee.avail_in == 0 && fed == input.count:
            throw KilnError.mismatch(file: file.path, offset: entry.dataOffset, path: [entry.context, "deflate data"],
                                     expected: "\(entry.uncompressedSize) bytes when inflated", found: "\(produced) before the data ends",
                                     note: "truncated member")
        case Z_BUF_ERROR:
            break
        default:
            let reason = stream.pointee.msg.map { String(cString: $0) } ?? "status \(status)"
            throw KilnError(.invalidInput, file: file.path, offset: entry.dataOffset, path: [entry.context, "deflate data"],
                            "corrupt after \(fed - Int(stream.pointee.avail_in)) compressed bytes: zlib says \"\(reason)\"")
        }
        return got
    }
}
