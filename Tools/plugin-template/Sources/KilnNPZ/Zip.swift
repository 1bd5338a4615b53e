import KilnCore

/// One member of a zip archive, as the central directory describes it, with its data located.
struct ZipEntry: Sendable {
    let name: String
    let method: ZipLayout.Method
    let crc32: UInt32
    let compressedSize: Int
    let uncompressedSize: Int
    /// File offset of the member's central directory header (for error messages).
    let centralOffset: Int
    /// File offset of the member's local header.
    let localOffset: Int
    /// File offset of the first data byte (after the local header, name and extra field).
    let dataOffset: Int

    /// `member "x.npy"`, the path component errors about this member start with.
    var context: String { "member \"\(name)\"" }
}

/// The validated directory of a zip archive: every member's name, sizes and data location.
///
/// Only what numpy writes is supported: one disk, stored or deflated members, no
/// encryption; zip64 records and extra fields are read (members and archives over 4 GB).
struct ZipArchive {
    let file: MappedFile
    let entries: [ZipEntry]

    /// The directory's position, from the end record (or the zip64 one).
    private struct Directory {
        var offset: Int
        var size: Int
        var count: Int
        /// Where the directory must end: the zip64 end record or the end record.
        var limit: Int
    }

    /// Read and check the central directory and every member's local header.
    /// - Throws: `KilnError(.invalidInput)` naming the file, the offset and the record and field;
    ///   `KilnError(.unsupported)` for encrypted, multi-disk or unknown-method archives.
    /// - Complexity: O(members), plus a scan of at most 64 KiB for the end record.
    init(_ file: MappedFile) throws {
        self.file = file
        let directory = try ZipArchive.directory(of: file)
        var entries: [ZipEntry] = []
        entries.reserveCapacity(directory.count)
        var at = directory.offset
        for i in 0..<directory.count {
            let entry = try ZipArchive.centralEntry(in: file, at: at, index: i, directory: directory.offset,
                                                    directoryEnd: directory.offset + directory.size)
            entries.append(entry.entry)
            at = entry.next
        }
        guard at == directory.offset + directory.size else {
            throw KilnError.mismatch(file: file.path, offset: at, path: ["central directory"],
                                     expected: "\(directory.size) bytes for \(directory.count) entries",
                                     found: "\(at - directory.offset) bytes")
        }
        self.entries = entries
    }

    // MARK: - End records

    private static func directory(of file: MappedFile) throws -> Directory {
        let path = file.path
        guard file.count >= ZipLayout.endSize else {
            throw KilnError.mismatch(file: path, offset: 0, path: ["end of central directory"],
                                     expected: "at least \(ZipLayout.endSize) bytes", found: "\(file.count) bytes",
                                     note: "truncated or not a zip archive")
        }
        let bytes = file.bytes(offset: 0, count: file.count)
        // The end record is the last thing in the file, followed only by its comment.
        var end = -1
        var candidate = file.count - ZipLayout.endSize
        let lowest = max(0, candidate - ZipLayout.maxCommentLength)
        while candidate >= lowest {
            if bytes.u32(candidate) == ZipLayout.endSignature,
               candidate + ZipLayout.endSize + Int(bytes.u16(candidate + 20)) <= file.count {
                end = candidate
                break
            }
            candidate -= 1
        }
        guard end >= 0 else {
            throw KilnError(.invalidInput, file: path, path: ["end of central directory"],
                            "expected signature PK\\5\\6 in the last \(file.count - lowest) bytes, found none (truncated or not a zip archive)")
        }
        guard bytes.u16(end + 4) == 0, bytes.u16(end + 6) == 0 || bytes.u16(end + 6) == ZipLayout.saturated16,
              bytes.u16(end + 8) == bytes.u16(end + 10) else {
            throw KilnError(.unsupported, file: path, offset: end + 4, path: ["end of central directory"],
                            "multi-disk (split) zip archives are not supported")
        }
        var directory = Directory(offset: Int(bytes.u32(end + 16)), size: Int(bytes.u32(end + 12)),
                                  count: Int(bytes.u16(end + 10)), limit: end)
        let locator = end - ZipLayout.zip64LocatorSize
        if locator >= 0, bytes.u32(locator) == ZipLayout.zip64LocatorSignature {
            directory = try zip64Directory(file, locator: locator)
        } else if bytes.u16(end + 10) == ZipLayout.saturated16 || bytes.u32(end + 12) == ZipLayout.saturated32
                    || bytes.u32(end + 16) == ZipLayout.saturated32 {
            throw KilnError.mismatch(file: path, offset: max(0, locator), path: ["zip64 end of central directory locator"],
                                     expected: "signature PK\\6\\7 (the end record's fields are 0xFFFF…)", found: "none")
        }
        guard directory.count <= Limits.maxMembers else {
            throw KilnError.mismatch(file: path, offset: end + 10, path: ["end of central directory", "entries"],
                                     expected: "at most \(Limits.maxMembers)", found: "\(directory.count)")
        }
        guard directory.offset <= directory.limit, directory.size <= directory.limit - directory.offset else {
            throw KilnError.mismatch(file: path, offset: end + 12, path: ["end of central directory", "central directory"],
                                     expected: "a range inside 0..<0x\(hex(directory.limit))",
                                     found: "offset 0x\(hex(directory.offset)), size \(directory.size)",
                                     note: "truncated archive or bad central directory")
        }
        guard directory.count <= directory.size / ZipLayout.centralHeaderSize else {
            throw KilnError.mismatch(file: path, offset: end + 10, path: ["end of central directory", "entries"],
                                     expected: "at most \(directory.size / ZipLayout.centralHeaderSize) in \(directory.size) bytes",
                                     found: "\(directory.count)")
        }
        return directory
    }

    private static func zip64Directory(_ file: MappedFile, locator: Int) throws -> Directory {
        let path = file.path, bytes = file.bytes(offset: 0, count: file.count)
        guard bytes.u32(locator + 4) == 0, bytes.u32(locator + 16) <= 1 else {
            throw KilnError(.unsupported, file: path, offset: locator + 4, path: ["zip64 end of central directory locator"],
                            "multi-disk (split) zip archives are not supported")
        }
        let record = bytes.u64(locator + 8)
        guard locator >= ZipLayout.zip64EndSize, record <= UInt64(locator - ZipLayout.zip64EndSize) else {
            throw KilnError.mismatch(file: path, offset: locator + 8, path: ["zip64 end of central directory locator", "record offset"],
                                     expected: "at most 0x\(hex(max(0, locator - ZipLayout.zip64EndSize)))", found: "0x\(String(record, radix: 16, uppercase: true))")
        }
        let at = Int(record)
        guard bytes.u32(at) == ZipLayout.zip64EndSignature else {
            throw KilnError.mismatch(file: path, offset: at, path: ["zip64 end of central directory", "signature"],
                                     expected: "PK\\6\\6", found: "0x" + String(bytes.u32(at), radix: 16, uppercase: true))
        }
        let fields = [bytes.u64(at + 32), bytes.u64(at + 40), bytes.u64(at + 48)]
        guard fields.allSatisfy({ $0 <= UInt64(Int.max) }), bytes.u64(at + 24) == fields[0] else {
            throw KilnError.mismatch(file: path, offset: at + 24, path: ["zip64 end of central directory", "entries"],
                                     expected: "entries on this disk = entries in total, sizes below 2^63",
                                     found: "\(bytes.u64(at + 24)), \(fields[0]), \(fields[1]), \(fields[2])")
        }
        return Directory(offset: Int(fields[2]), size: Int(fields[1]), count: Int(fields[0]), limit: at)
    }

    // MARK: - Central and local headers

    private static func centralEntry(in file: MappedFile, at: Int, index: Int, directory: Int,
                                     directoryEnd: Int) throws -> (entry: ZipEntry, next: Int) {
        let path = file.path, bytes = file.bytes(offset: 0, count: file.count)
        let here = ["central directory", "entry \(index)"]
        guard directoryEnd - at >= ZipLayout.centralHeaderSize, bytes.u32(at) == ZipLayout.centralSignature else {
            throw KilnError.mismatch(file: path, offset: at, path: here, expected: "a central directory header (PK\\1\\2)",
                                     found: directoryEnd - at < 4 ? "the end of the directory" : "0x" + String(bytes.u32(at), radix: 16, uppercase: true),
                                     note: "bad central directory")
        }
        let nameLength = Int(bytes.u16(at + 28)), extraLength = Int(bytes.u16(at + 30)), commentLength = Int(bytes.u16(at + 32))
        let next = at + ZipLayout.centralHeaderSize + nameLength + extraLength + commentLength
        guard next <= directoryEnd else {
            throw KilnError.mismatch(file: path, offset: at + 28, path: here + ["name, extra and comment lengths"],
                                     expected: "at most \(directoryEnd - at - ZipLayout.centralHeaderSize) bytes in total",
                                     found: "\(nameLength + extraLength + commentLength)", note: "bad central directory")
        }
        let nameAt = at + ZipLayout.centralHeaderSize
        let name = try memberName(UnsafeRawBufferPointer(rebasing: bytes[nameAt..<nameAt + nameLength]), file: path, offset: nameAt, context: here)
        let member = ["member \"\(name)\""]
        let flags = bytes.u16(at + 8)
        guard flags & ZipLayout.flagEncrypted == 0 else {
            throw KilnError(.unsupported, file: path, offset: at + 8, path: member, "encrypted members are not supported")
        }
        guard let method = ZipLayout.Method(rawValue: bytes.u16(at + 10)) else {
            throw KilnError(.unsupported, file: path, offset: at + 10, path: member + ["compression method"],
                            "expected 0 (stored) or 8 (deflate), found \(bytes.u16(at + 10))")
        }
        guard bytes.u16(at + 34) == 0 || bytes.u16(at + 34) == ZipLayout.saturated16 else {
            throw KilnError(.unsupported, file: path, offset: at + 34, path: member, "multi-disk (split) zip archives are not supported")
        }
        // Sizes and offset, widened by the zip64 extra field where the 32-bit field is saturated.
        var values = [bytes.u32(at + 24), bytes.u32(at + 20), bytes.u32(at + 42)].map(UInt64.init)
        if values.contains(UInt64(ZipLayout.saturated32)) {
            let extraAt = nameAt + nameLength
            values = try zip64Values(values, extra: UnsafeRawBufferPointer(rebasing: bytes[extraAt..<extraAt + extraLength]),
                                     file: path, offset: extraAt, context: member)
        }
        guard values.allSatisfy({ $0 <= UInt64(Int.max / 2) }) else {
            throw KilnError.mismatch(file: path, offset: at + 20, path: member + ["sizes"], expected: "sizes below 2^62",
                                     found: values.map(String.init).joined(separator: ", "))
        }
        let uncompressed = Int(values[0]), compressed = Int(values[1]), local = Int(values[2])
        if method == .stored, compressed != uncompressed {
            throw KilnError.mismatch(file: path, offset: at + 20, path: member + ["compressed size"],
                                     expected: "\(uncompressed) (= uncompressed size of a stored member)", found: "\(compressed)")
        }
        let dataOffset = try localData(in: file, at: local, name: name, directory: directory, context: member)
        guard compressed <= directory - dataOffset else {
            throw KilnError.mismatch(file: path, offset: dataOffset, path: member + ["data"],
                                     expected: "\(compressed) bytes", found: "\(directory - dataOffset) before the central directory",
                                     note: "truncated archive")
        }
        let entry = ZipEntry(name: name, method: method, crc32: bytes.u32(at + 16), compressedSize: compressed,
                             uncompressedSize: uncompressed, centralOffset: at, localOffset: local, dataOffset: dataOffset)
        return (entry, next)
    }

    /// The zip64 extra field's values for the saturated ones of [uncompressed, compressed, offset].
    private static func zip64Values(_ values: [UInt64], extra: UnsafeRawBufferPointer, file: String, offset: Int,
                                    context: [String]) throws -> [UInt64] {
        var at = 0
        while at + 4 <= extra.count {
            let tag = extra.u16(at), size = Int(extra.u16(at + 2))
            guard at + 4 + size <= extra.count else { break }
            if tag == ZipLayout.zip64ExtraTag {
                var result = values, field = at + 4
                for i in 0..<3 where values[i] == UInt64(ZipLayout.saturated32) {
                    guard field + 8 <= at + 4 + size else {
                        throw KilnError.mismatch(file: file, offset: offset + at, path: context + ["zip64 extra field"],
                                                 expected: "8 more bytes for field \(i + 1)", found: "\(at + 4 + size - field)")
                    }
                    result[i] = extra.u64(field)
                    field += 8
                }
                return result
            }
            at += 4 + size
        }
        throw KilnError.mismatch(file: file, offset: offset, path: context + ["extra field"],
                                 expected: "a zip64 extra field (tag 0x0001) for the sizes marked 0xFFFFFFFF", found: "none")
    }

    /// Check the local header at `at` and return where the member's data starts.
    private static func localData(in file: MappedFile, at: Int, name: String, directory: Int, context: [String]) throws -> Int {
        let path = file.path, bytes = file.bytes(offset: 0, count: file.count)
        guard at <= directory - ZipLayout.localHeaderSize, bytes.u32(at) == ZipLayout.localSignature else {
            throw KilnError.mismatch(file: path, offset: at, path: context + ["local header"], expected: "signature PK\\3\\4",
                                     found: at <= file.count - 4 ? "0x" + String(bytes.u32(at), radix: 16, uppercase: true) : "the end of the file",
                                     note: "bad local header offset or truncated archive")
        }
        let nameLength = Int(bytes.u16(at + 26)), extraLength = Int(bytes.u16(at + 28))
        let data = at + ZipLayout.localHeaderSize + nameLength + extraLength
        guard data <= directory else {
            throw KilnError.mismatch(file: path, offset: at + 26, path: context + ["local header"],
                                     expected: "name and extra before the central directory", found: "\(nameLength) + \(extraLength) bytes",
                                     note: "truncated archive")
        }
        let localName = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[at + 30..<at + 30 + nameLength]), as: UTF8.self)
        guard localName == name else {
            throw KilnError.mismatch(file: path, offset: at + 30, path: context + ["local header", "name"],
                                     expected: "\"\(name)\" (as in the central directory)", found: "\"\(localName)\"")
        }
        return data
    }

    /// A member name that stays inside the archive: relative, no `..`, valid UTF-8, no NUL or `\`.
    static func memberName(_ raw: UnsafeRawBufferPointer, file: String, offset: Int, context: [String]) throws -> String {
        guard let name = String(validating: raw, as: UTF8.self) else {
            throw KilnError.mismatch(file: file, offset: offset, path: context + ["name"], expected: "UTF-8", found: "invalid bytes")
        }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if name.isEmpty || name.hasPrefix("/") || parts.contains("..") || name.contains("\\") || name.contains("\0")
            || (name.count >= 2 && name.dropFirst().first == ":") {
            throw KilnError.mismatch(file: file, offset: offset, path: context + ["name"],
                                     expected: "a relative member name without \"..\"", found: "\"\(name)\"")
        }
        return name
    }
}

func hex(_ v: Int) -> String { String(v, radix: 16, uppercase: true) }

/// Little-endian reads at byte offsets (callers check bounds first).
extension UnsafeRawBufferPointer {
    func u16(_ at: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt16.self)) }
    func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
    func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
}
