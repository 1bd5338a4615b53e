#if canImport(Glibc)
import Glibc
#endif

/// A file or folder output that appears complete or not at all.
///
/// Writers create everything under ``workPath`` (a temporary sibling of the target),
/// then call ``commit()``, which renames it into place. If ``commit()`` is never
/// reached (an error was thrown), `deinit` removes the temporary.
public final class AtomicOutput {
    /// Final destination.
    public let targetPath: String
    /// Where to write now: a temporary file, or folder when `directory` was set.
    public let workPath: String
    public let isDirectory: Bool
    private var committed = false

    /// Prepare an output at `path`.
    /// - Parameters:
    ///   - directory: true for a folder output (sharded checkpoints, TRT-LLM folders).
    ///   - overwrite: replace an existing file or non-empty folder at `path` (on ``commit()``).
    ///     Writers pass ``overwriteRequested(_:)`` of their options (`--overwrite`). An empty
    ///     folder is always replaced.
    /// - Throws: `KilnError(.io)` if the parent folder does not exist or is not writable;
    ///   `KilnError(.invalidInput)` if `path` exists (a file, or a non-empty folder) and
    ///   `overwrite` is false — checked before anything is written.
    public init(path: String, directory: Bool, overwrite: Bool) throws {
        targetPath = path
        isDirectory = directory
        let parent = AtomicOutput.parent(of: path)
        var st = stat()
        guard stat(parent, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw KilnError(.io, file: path, "output folder \(parent) does not exist")
        }
        if !overwrite { try AtomicOutput.refuseExisting(path) }
        let base = path.split(separator: "/").last.map(String.init) ?? "out"
        let tmp = parent + "/." + base + ".kiln-tmp-\(getpid())"
        AtomicOutput.removeTree(tmp)
        if directory {
            guard mkdir(tmp, 0o755) == 0 else {
                throw KilnError(.io, file: path, "cannot create \(tmp): \(String(cString: strerror(errno)))")
            }
        }
        workPath = tmp
    }

    deinit {
        if !committed { AtomicOutput.removeTree(workPath) }
    }

    /// Move the finished output into place (replacing an existing file or folder).
    /// - Throws: `KilnError(.io)` if the rename fails.
    public func commit() throws {
        var st = stat()
        if isDirectory, lstat(targetPath, &st) == 0 {
            let old = workPath + ".old"
            guard rename(targetPath, old) == 0 else {
                throw KilnError(.io, file: targetPath, "cannot replace existing output: \(String(cString: strerror(errno)))")
            }
            guard rename(workPath, targetPath) == 0 else {
                let reason = String(cString: strerror(errno))
                _ = rename(old, targetPath)
                throw KilnError(.io, file: targetPath, "cannot move output into place: \(reason)")
            }
            AtomicOutput.removeTree(old)
        } else {
            guard rename(workPath, targetPath) == 0 else {
                throw KilnError(.io, file: targetPath, "cannot move output into place: \(String(cString: strerror(errno)))")
            }
        }
        committed = true
    }

    /// The `overwrite` writer option (`--overwrite` on the CLI): present and not "false"/"no"/"0".
    public static func overwriteRequested(_ options: [String: String]) -> Bool {
        guard let v = options["overwrite"]?.lowercased() else { return false }
        return !["false", "no", "0"].contains(v)
    }

    /// Throw if `path` is an existing file or a non-empty folder (the check ``init(path:directory:overwrite:)``
    /// makes; commands that work long before writing call it up front too).
    public static func refuseExisting(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            if FileSystem.list(path) == [] { return }
            throw KilnError(.invalidInput, file: path, "output folder is not empty; pass --overwrite to replace it")
        }
        throw KilnError(.invalidInput, file: path, "output file already exists; pass --overwrite to replace it")
    }

    /// The folder containing `path` ("." for a bare name).
    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let p = String(path[..<slash])
        return p.isEmpty ? "/" : p
    }

    /// Remove a file or a folder tree (no error if absent).
    public static func removeTree(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            for name in FileSystem.list(path) ?? [] { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}

/// Sequential writes to a file descriptor with a buffer, for writers.
public final class FileSink {
    public let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private let capacity = 4 << 20
    /// Bytes written so far.
    public private(set) var offset = 0

    /// Create (truncate) `path` for writing.
    public init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw KilnError(.io, file: path, "cannot create: \(String(cString: strerror(errno)))")
        }
        buffer.reserveCapacity(capacity)
    }

    deinit { close(fd) }

    /// Append bytes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > capacity { try flush() }
        if bytes.count >= capacity {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
        offset += bytes.count
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    public func write(_ text: String) throws {
        try write(Array(text.utf8))
    }

    /// Write out buffered bytes.
    public func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flush and fsync-free close (the rename in ``AtomicOutput`` publishes the file).
    public func finish() throws { try flush() }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw KilnError(.io, file: path, offset: offset, "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }
}
