import CZstd
import KilnCore

/// zstd compression for Kiln's own cache files (calibration statistics).
public enum Zstd {
    /// Largest decompressed size accepted from a frame header (guards allocations from a lying file).
    public static let maxDecompressedBytes = 4 << 30

    /// Compress `bytes` at `level` (1 fast ... 19 small).
    public static func compress(_ bytes: [UInt8], level: Int32 = 3) throws -> [UInt8] {
        let bound = ZSTD_compressBound(bytes.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { src in
                ZSTD_compress(dst.baseAddress, bound, src.baseAddress, bytes.count, level)
            }
        }
        guard ZSTD_isError(n) == 0 else {
            throw KilnError(.internal, "zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))")
        }
        out.removeSubrange(n...)
        return out
    }

    /// Decompress one zstd frame whose header records its size.
    /// - Parameter file: named in errors.
    /// - Throws: `KilnError(.invalidInput)` for a corrupt frame, an unknown or too large size, or a size
    ///   larger than the frame's blocks can hold.
    public static func decompress(_ bytes: [UInt8], file: String? = nil) throws -> [UInt8] {
        let size = bytes.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, bytes.count) }
        if size == ZSTD_CONTENTSIZE_ERROR {
            throw KilnError.mismatch(file: file, offset: 0, path: ["zstd frame"], expected: "a zstd frame header", found: "invalid bytes")
        }
        if size == ZSTD_CONTENTSIZE_UNKNOWN {
            throw KilnError(.invalidInput, file: file, offset: 0, path: ["zstd frame"], "frame does not record its decompressed size")
        }
        guard size <= UInt64(maxDecompressedBytes) else {
            throw KilnError.mismatch(file: file, offset: 0, path: ["zstd frame"], expected: "at most \(maxDecompressedBytes) decompressed bytes", found: "\(size)")
        }
        // The header's size is only a claim. A zstd block regenerates at most 128 KiB (ZSTD_BLOCKSIZE_MAX) and
        // takes at least 4 bytes (a 3-byte header and one RLE byte), so a frame expands at most 32768×: a
        // 13-byte file may not make us allocate gigabytes.
        let bound = UInt64(bytes.count) * 32768
        guard size <= bound else {
            throw KilnError.mismatch(file: file, offset: 0, path: ["zstd frame"],
                                     expected: "a decompressed size \(bytes.count) compressed bytes can hold (at most \(bound) bytes)",
                                     found: "\(size) bytes in the frame header")
        }
        var out = [UInt8](repeating: 0, count: Int(size))
        let n = out.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { src in ZSTD_decompress(dst.baseAddress, Int(size), src.baseAddress, bytes.count) }
        }
        guard ZSTD_isError(n) == 0 else {
            throw KilnError(.invalidInput, file: file, path: ["zstd frame"], "corrupt data: \(String(cString: ZSTD_getErrorName(n)))")
        }
        guard n == Int(size) else {
            throw KilnError.mismatch(file: file, path: ["zstd frame"], expected: "\(size) bytes", found: "\(n)")
        }
        return out
    }
}
