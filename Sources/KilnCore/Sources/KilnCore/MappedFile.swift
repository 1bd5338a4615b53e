#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A read-only memory map of a whole file. Regions of it back lazy tensors.
///
/// The map lives as long as any tensor that references it. Reading a tensor
/// touches only its own pages; ``releasePages(offset:count:)`` drops them again
/// so streaming a model keeps the resident set near one tensor.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened from (for error messages).
    public let path: String
    /// Length of the file in bytes.
    public let count: Int
    /// Base address (nil for an empty file).
    public let base: UnsafeRawPointer?

    /// Map `path` read-only.
    /// - Throws: `KilnError(.io)` naming the file if it cannot be opened or mapped.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw KilnError(.io, file: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw KilnError(.io, file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw KilnError(.io, file: path, "not a regular file")
        }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw KilnError(.io, file: path, "cannot map \(count) bytes: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// The bytes `offset ..< offset + length`.
    /// - Precondition: the range lies inside the file (callers validate first).
    public func bytes(offset: Int, count length: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset <= count && length <= count - offset)
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }

    /// Tell the kernel the pages of this range are not needed now (they are re-read on access).
    public func releasePages(offset: Int, count length: Int) {
        guard let base, length > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset / page) * page
        let end = min(count, offset + length)
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }
}
