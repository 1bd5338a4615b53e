import CZlib
import KilnCore

/// Writes tensors as a numpy `.npz` archive the way `np.savez` does: one stored (uncompressed)
/// zip member `NAME.npy` per tensor, .npy format 1.0, C order, little-endian. Atomic: the file
/// appears complete or not at all. (Not a registered provider: `kiln run --output` uses it.)
public enum NPZWriter {
    /// - Throws: `KilnError(.unsupported)` for dtypes without a numpy name (packed, fp8, bf16),
    ///   `.invalidInput` for a name or archive that needs zip64; I/O errors.
    public static func write(_ tensors: [Tensor], to path: String, overwrite: Bool = false) throws {
        let output = try AtomicOutput(path: path, directory: false, overwrite: overwrite)
        var bytes: [UInt8] = [], central: [UInt8] = []
        for t in tensors {
            guard let descr = NPYLayout.dtypes.first(where: { $0.dtype == t.dtype })?.descr else {
                throw KilnError(.unsupported, file: path, path: ["tensor \"\(t.name)\""], "\(t.dtype) has no numpy dtype")
            }
            let shape = t.shape.dims.map(String.init).joined(separator: ", ") + (t.shape.rank == 1 ? "," : "")
            var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(shape)), }"
            let unpadded = NPYLayout.prelude1 + header.utf8.count + 1
            header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
            var member = NPYLayout.magic + [1, 0] + le16(header.utf8.count) + Array(header.utf8)
            try t.withBytes { member += $0 }
            let name = Array((t.name + NPYLayout.memberSuffix).utf8)
            guard member.count < Int(ZipLayout.saturated32), bytes.count < Int(ZipLayout.saturated32) else {
                throw KilnError(.invalidInput, file: path, path: ["tensor \"\(t.name)\""], "archives past 4 GB (zip64) are not written")
            }
            let crc = member.withUnsafeBufferPointer { UInt32(truncatingIfNeeded: CZlib.crc32(0, $0.baseAddress, uInt($0.count))) }
            // version, flags, method (stored), time, date, crc, sizes, name length, extra length
            let common = le16(20) + le16(0) + le16(Int(ZipLayout.Method.stored.rawValue)) + le16(0) + le16(0x21)
                + le32(Int(crc)) + le32(member.count) + le32(member.count) + le16(name.count) + le16(0)
            central += le32(Int(ZipLayout.centralSignature)) + le16(20) + common + le16(0) + le16(0) + le16(0) + le32(0)
                + le32(bytes.count) + name
            bytes += le32(Int(ZipLayout.localSignature)) + common + name + member
        }
        let directoryOffset = bytes.count
        bytes += central
        bytes += le32(Int(ZipLayout.endSignature)) + le16(0) + le16(0) + le16(tensors.count) + le16(tensors.count)
            + le32(central.count) + le32(directoryOffset) + le16(0)
        let sink = try FileSink(path: output.workPath)
        try sink.write(bytes)
        try sink.finish()
        try output.commit()
    }

    private static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    private static func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
}
