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

    /// The side files of a model folder (`config.json`, `tokenizer.json`, ...) that exist, by name,
    /// for a reader to attach: writers copy them into their output, so a checkpoint must not be able
    /// to make kiln copy a file from elsewhere.
    /// - Throws: `KilnError(.invalidInput)` naming the file when one is a link leading outside
    ///   `folder` or not a regular file.
    public static func sideFiles(_ names: [String], in folder: String) throws -> [String: String] {
        var found: [String: String] = [:]
        for name in names {
            let path = folder + "/" + name
            guard exists(path) else { continue }
            guard isInside(path, folder: folder) else {
                throw KilnError(.invalidInput, file: path, "side file leads outside the model folder (link) and is refused")
            }
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                throw KilnError(.invalidInput, file: path, "side file is not a regular file")
            }
            found[name] = path
        }
        return found
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
