#if canImport(Glibc)
import Glibc
#endif

/// Small file-system helpers shared by the host and the format plugins.
public enum FileSystem {
    /// Does anything exist at `path` (following links)?
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// Is `path` a folder (following links)?
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Names in a folder (without "." and ".."), sorted; nil if it cannot be listed.
    public static func list(_ folder: String) -> [String]? {
        guard let dir = opendir(folder) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// The canonical absolute path (links resolved), or nil if it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    /// Is `path`, with links resolved, inside `folder`? (Used to refuse names that escape a checkpoint.)
    public static func isInside(_ path: String, folder: String) -> Bool {
        guard let p = realPath(path), let f = realPath(folder) else { return false }
        return p.hasPrefix(f == "/" ? "/" : f + "/")
    }

    /// Copy a file's bytes to `destination` (created or truncated).
    /// - Throws: `KilnError(.io)` naming the file that failed.
    public static func copyFile(_ source: String, to destination: String) throws {
        let file = try MappedFile(path: source)
        let sink = try FileSink(path: destination)
        try sink.write(file.bytes(offset: 0, count: file.count))
        try sink.finish()
    }

    /// Read a whole small file.
    public static func readBytes(_ path: String) throws -> [UInt8] {
        let file = try MappedFile(path: path)
        return Array(file.bytes(offset: 0, count: file.count))
    }
}
