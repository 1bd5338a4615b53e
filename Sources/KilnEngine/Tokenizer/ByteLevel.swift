/// GPT-2's byte ↔ character table: every byte gets a printable character so that a
/// byte-level vocabulary can be stored as JSON strings. `!`…`~`, `¡`…`¬` and `®`…`ÿ` map
/// to themselves; the other 68 bytes map to U+0100, U+0101, … in byte order.
enum ByteLevelMap {
    /// Byte → scalar value.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// Scalar value (0..<324) → byte, or −1.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (b, v) in byteToScalar.enumerated() { table[Int(v)] = Int16(b) }
        return table
    }()

    /// UTF-8 of the mapped characters, one per byte.
    static let mappedUTF8: [[UInt8]] = byteToScalar.map { v in
        var out: [UInt8] = []
        UTF8Bytes.append(v, to: &out)
        return out
    }

    /// The byte-level spelling of raw bytes (what the ByteLevel pre-tokenizer produces).
    static func map(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(contentsOf: mappedUTF8[Int(b)]) }
        return out
    }

    /// The raw bytes a byte-level token spells, or nil if a character is outside the table
    /// (the decoder then keeps the token's own UTF-8, as the reference does).
    static func unmap(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            let v = Int(s.value)
            guard v < scalarToByte.count, scalarToByte[v] >= 0 else { return nil }
            out.append(UInt8(scalarToByte[v]))
        }
        return out
    }
}
