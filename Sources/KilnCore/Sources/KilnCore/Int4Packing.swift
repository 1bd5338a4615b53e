/// INT4 payload layouts: Kiln's IR layout and ModelOpt's checkpoint layout.
///
/// IR (``Tensor``, dtype `i4` / `u4`): row-major, two elements per byte, element `i` in byte
/// `i / 2`, even `i` in the low nibble (ONNX's convention).
///
/// ModelOpt (`pack_int4_in_uint8` in modelopt/torch/export/quant_utils.py; used for both the
/// TensorRT-LLM checkpoint, viewed as I8, and the unified HF checkpoint, U8): a `[out, in]`
/// weight is packed along the **output** dim into `[out / 2, in]` bytes,
///
/// ```
/// byte[k, j] = (q[2k, j] & 0xF) | (q[2k + 1, j] << 4)      two's-complement nibbles
/// ```
public enum Int4Packing {
    /// One value per element, sign-extended for `i4` (-8...7), zero-extended for `u4` (0...15).
    /// - Throws: `KilnError(.unsupported)` when `t` is not `i4` / `u4`; whatever reading it throws.
    /// - Complexity: O(elements).
    public static func unpackIR(_ t: Tensor) throws -> [Int8] {
        guard t.dtype == .i4 || t.dtype == .u4 else {
            throw KilnError(.unsupported, path: ["tensor \"\(t.name)\""], "expected an i4/u4 payload, found \(t.dtype)")
        }
        let n = t.elementCount
        let signed = t.dtype == .i4
        var out = [Int8](repeating: 0, count: n)
        try t.withBytes { bytes in
            for i in 0..<n {
                let byte = bytes[i / 2]
                let nibble = (i % 2 == 0) ? byte & 0x0F : byte >> 4
                out[i] = signed ? Int8(bitPattern: nibble << 4) >> 4 : Int8(bitPattern: nibble)
            }
        }
        return out
    }

    /// Pack values (one per element, low 4 bits used) into the IR layout: element `i` in byte
    /// `i / 2`, even `i` in the low nibble; an odd count leaves the last high nibble 0.
    public static func packIR(_ values: [Int8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: (values.count + 1) / 2)
        for (i, v) in values.enumerated() {
            let nibble = UInt8(bitPattern: v) & 0x0F
            out[i / 2] |= (i % 2 == 0) ? nibble : nibble << 4
        }
        return out
    }

    /// ModelOpt packing of a `[rows, cols]` matrix of int4 values (one per byte) into
    /// `[rows / 2, cols]` bytes: `byte[k, j] = (q[2k, j] & 0xF) | (q[2k + 1, j] << 4)`.
    /// - Precondition: `rows` is even and `values.count == rows * cols`.
    public static func packRowPairs(_ values: UnsafeBufferPointer<Int8>, rows: Int, cols: Int) -> [UInt8] {
        precondition(rows % 2 == 0 && values.count == rows * cols, "packRowPairs: \(rows)×\(cols) with \(values.count) values")
        var out = [UInt8](repeating: 0, count: rows / 2 * cols)
        for k in 0..<(rows / 2) {
            let even = (2 * k) * cols, odd = (2 * k + 1) * cols, dst = k * cols
            for j in 0..<cols {
                out[dst + j] = (UInt8(bitPattern: values[even + j]) & 0x0F) | (UInt8(bitPattern: values[odd + j]) << 4)
            }
        }
        return out
    }

    /// Inverse of ``packRowPairs(_:rows:cols:)``: `[packedRows, cols]` bytes → `[2·packedRows, cols]`
    /// values, sign-extended when `signed` (i4), else 0...15 (u4).
    public static func unpackRowPairs(_ bytes: UnsafeRawBufferPointer, packedRows: Int, cols: Int, signed: Bool = true) -> [Int8] {
        precondition(bytes.count >= packedRows * cols, "unpackRowPairs: \(bytes.count) bytes for \(packedRows)×\(cols)")
        var out = [Int8](repeating: 0, count: 2 * packedRows * cols)
        for k in 0..<packedRows {
            for j in 0..<cols {
                let b = bytes[k * cols + j]
                let lo = b & 0x0F, hi = b >> 4
                out[(2 * k) * cols + j] = signed ? Int8(bitPattern: lo << 4) >> 4 : Int8(bitPattern: lo)
                out[(2 * k + 1) * cols + j] = signed ? Int8(bitPattern: hi << 4) >> 4 : Int8(bitPattern: hi)
            }
        }
        return out
    }
}
