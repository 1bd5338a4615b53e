import Foundation

/// Hand-made safetensors bytes, for tests of the reader's refusals.
public enum SafetensorsFixture {
    /// `[8-byte LE length][header][data]` with the header taken verbatim (no padding unless asked).
    public static func bytes(header: String, data: [UInt8], pad: Bool = true, lengthOverride: UInt64? = nil) -> [UInt8] {
        var h = Array(header.utf8)
        if pad { while h.count % 8 != 0 { h.append(0x20) } }
        var out = [UInt8]()
        let n = lengthOverride ?? UInt64(h.count)
        for i in 0..<8 { out.append(UInt8((n >> (8 * UInt64(i))) & 0xFF)) }
        return out + h + data
    }

    /// A valid file with one f32 tensor "w" of shape [2, 2].
    public static func valid() -> [UInt8] {
        let values: [Float] = [1, 2, 3, 4]
        let data = values.withUnsafeBytes { Array($0) }
        return bytes(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, data: data)
    }

    /// Write `bytes` to `path`.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}
