import KilnCore

/// The ABI stamp a plugin carries (`KILN-ABI-STAMP{abi=1;sdk=0.1.0;toolchain=clang ...}`).
public struct PluginStamp: Equatable, Sendable, CustomStringConvertible {
    public var abi: String
    public var sdk: String
    public var toolchain: String

    /// The stamp of this host's own build.
    public static var host: PluginStamp {
        PluginStamp(parsing: String(cString: kiln_abi_stamp()))!
    }

    /// Parse the text between the braces of a stamp (or the whole stamp).
    public init?(parsing text: String) {
        var body = Substring(text)
        if let open = body.firstIndex(of: "{"), let close = body.lastIndex(of: "}"), open < close {
            body = body[body.index(after: open)..<close]
        }
        var fields: [String: String] = [:]
        for part in body.split(separator: ";", omittingEmptySubsequences: true) {
            guard let eq = part.firstIndex(of: "=") else { return nil }
            fields[String(part[..<eq])] = String(part[part.index(after: eq)...])
        }
        guard let abi = fields["abi"], let sdk = fields["sdk"], let toolchain = fields["toolchain"] else { return nil }
        self.abi = abi
        self.sdk = sdk
        self.toolchain = toolchain
    }

    public init(abi: String, sdk: String, toolchain: String) {
        self.abi = abi
        self.sdk = sdk
        self.toolchain = toolchain
    }

    public var description: String { "abi=\(abi), sdk=\(sdk), toolchain=\(toolchain)" }
}

/// Step 1 of loading: look at the file before dlopen.
enum Preflight {
    static let marker = Array("KILN-ABI-STAMP{".utf8)
    static let maxStampLength = 512

    /// Check the file is an ELF shared object carrying a Kiln stamp, and return the stamp.
    /// - Throws: `KilnError(.plugin)` naming the file: not a shared library, not a Kiln plugin, unreadable stamp.
    static func stamp(of real: String, shownAs path: String) throws -> (stamp: PluginStamp, exportsEntry: Bool?) {
        let file = try MappedFile(path: real)
        let bytes = file.bytes(offset: 0, count: file.count)
        let elf: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]
        guard bytes.count >= 64, Array(bytes[0..<4]) == elf else {
            throw KilnError(.plugin, file: path, "not a shared library (no ELF header)")
        }
        guard bytes[16] == 3 else {  // e_type ET_DYN (little-endian low byte)
            throw KilnError(.plugin, file: path, offset: 16, "not a shared library (ELF type \(bytes[16]), expected 3 = ET_DYN)")
        }
        guard let at = find(marker, in: bytes) else {
            throw KilnError(.plugin, file: path, "not a Kiln plugin (no KILN-ABI-STAMP; was it built against KilnCore?)")
        }
        var end = at + marker.count
        while end < bytes.count, end - at < maxStampLength, bytes[end] != UInt8(ascii: "}"), bytes[end] != 0 { end += 1 }
        guard end < bytes.count, bytes[end] == UInt8(ascii: "}") else {
            throw KilnError(.plugin, file: path, offset: at, "unterminated KILN-ABI-STAMP")
        }
        let text = String(decoding: bytes[at...end], as: UTF8.self)
        guard let stamp = PluginStamp(parsing: text) else {
            throw KilnError(.plugin, file: path, offset: at, "malformed KILN-ABI-STAMP: \(text)")
        }
        return (stamp, ELFSymbols.definesDynamic(KILN_PLUGIN_SYMBOL, in: bytes))
    }

    /// First index of `needle` in `haystack`.
    static func find(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer) -> Int? {
        guard let first = needle.first, haystack.count >= needle.count else { return nil }
        var i = 0
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first {
                var j = 1
                while j < needle.count, haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}
