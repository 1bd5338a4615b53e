import KilnCore

/// The two INT4 encodings of a block.
///
/// ```
/// symmetric  (int4):   s = m / 7,                 q = clamp(round_half_even(w / s), −8, 7),      w ≈ q·s
/// asymmetric (uint4):  lo = min(0, min w), hi = max(0, max w)   (clipped to [−m, m] when clipping)
///                      s = (hi − lo) / 15,  z = round_half_even(−lo / s),
///                      q = clamp(round_half_even(w / s) + z, 0, 15),                          w ≈ (q − z)·s
/// m = max |w| over the block, or the clip value the AWQ search chose; a block of zeros gets s = 1.
/// ```
/// The asymmetric range always contains 0 (as onnxruntime's MatMulNBits quantizer does), so zero
/// is exact and z needs no clamping.
enum Int4Scheme: Sendable {
    case symmetric
    case asymmetric

    /// The QuantSpec format of the payload.
    var format: QuantSpec.Format { self == .symmetric ? .int4 : .uint4 }
}

/// A `[rows, cols]` matrix quantized in blocks of `group` along the columns (the last block may be partial).
struct QuantizedMatrix {
    var rows: Int
    var cols: Int
    var group: Int
    /// One value per element, −8…7 (symmetric) or 0…15 (asymmetric), row-major.
    var q: [Int8]
    /// Per (row, block), row-major `[rows, blocks]`.
    var scales: [Float]
    /// Per (row, block), 0…15, asymmetric only.
    var zeros: [Int8]?

    /// Blocks per row, ⌈cols / group⌉.
    var blocks: Int { (cols + group - 1) / group }
}

/// Round-to-nearest INT4 block quantization: the one implementation the RTN pass, the AWQ search
/// and the AWQ output share.
enum Int4Quantizer {
    /// 1.5·2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to an integer, half to even
    /// (the FPU's default rounding), without a library call on baseline x86-64.
    @usableFromInline static let roundingMagic: Float = 12_582_912

    /// The scale and zero point of one block of `count` values at `w`; `clip` replaces max |w|.
    /// - Complexity: O(count).
    @inline(__always)
    static func parameters(_ w: UnsafePointer<Float>, count: Int, scheme: Int4Scheme, clip: Float?) -> (scale: Float, zero: Float) {
        switch scheme {
        case .symmetric:
            var m = clip ?? 0
            if clip == nil {
                let (lo, hi) = range(w, count: count)
                m = max(-lo, hi)
            }
            let s = m / 7
            return (s > 0 ? s : 1, 0)
        case .asymmetric:
            var (lo, hi) = range(w, count: count)
            if let c = clip {
                lo = max(lo, -c)
                hi = min(hi, c)
            }
            var s = (hi - lo) / 15
            if !(s > 0) { s = 1 }
            let z = round(-lo / s)
            return (s, min(max(z, 0), 15))
        }
    }

    /// (min(0, min w), max(0, max w)) of `count` values, eight at a time.
    @inline(__always)
    static func range(_ w: UnsafePointer<Float>, count: Int) -> (lo: Float, hi: Float) {
        var lo: Float = 0, hi: Float = 0, j = 0
        if count >= 8 {
            let raw = UnsafeRawPointer(w)
            var vlo = SIMD8<Float>(), vhi = SIMD8<Float>()
            while j + 8 <= count {
                let v = raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
                vlo = vlo.replacing(with: v, where: v .< vlo)
                vhi = vhi.replacing(with: v, where: v .> vhi)
                j += 8
            }
            // Lane by lane: the generic SIMD min()/max() reductions are not inlined.
            for l in 0..<8 {
                lo = min(lo, vlo[l])
                hi = max(hi, vhi[l])
            }
        }
        while j < count {
            lo = min(lo, w[j])
            hi = max(hi, w[j])
            j += 1
        }
        return (lo, hi)
    }

    /// `round_half_even(v)` for |v| < 2²².
    @inline(__always)
    static func round(_ v: Float) -> Float { (v + roundingMagic) - roundingMagic }

    /// The integer code of `w` in a block with scale `s` and zero `z`: clamp(round(w/s) + z, lo, hi).
    @inline(__always)
    static func code(_ w: Float, scale s: Float, zero z: Float, scheme: Int4Scheme) -> Float {
        let lower: Float = scheme == .symmetric ? -8 : 0
        let upper: Float = scheme == .symmetric ? 7 : 15
        // Clamp before rounding: rounding is monotone and the bounds are integers, so this equals
        // clamp(round(w/s) + z) and keeps the magic-number rounding in range. z is added after
        // rounding (w/s + z could round away a tie-deciding bit).
        return round(min(max(w / s, lower - z), upper - z)) + z
    }

    /// Quantize and dequantize one row of `cols` values in place into `dst`: `dst[j] = (q − z)·s`.
    /// - Parameter clip: per block of this row, the max magnitude to use instead of max |w| (nil: none).
    /// - Complexity: O(cols).
    static func fakeQuantizeRow(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, cols: Int, group: Int,
                                scheme: Int4Scheme, clip: UnsafePointer<Float>? = nil) {
        var b = 0, start = 0
        while start < cols {
            let n = min(group, cols - start)
            let (s, z) = parameters(src + start, count: n, scheme: scheme, clip: clip.map { $0[b] })
            // (q − z)·s = round(clamp(w/s, lower − z, upper − z))·s, eight at a time.
            let lower = (scheme == .symmetric ? -8 : 0) - z, upper = (scheme == .symmetric ? 7 : 15) - z
            var j = start
            let vs = SIMD8<Float>(repeating: s), magic = SIMD8<Float>(repeating: roundingMagic)
            let vlo = SIMD8<Float>(repeating: lower), vhi = SIMD8<Float>(repeating: upper)
            let from = UnsafeRawPointer(src), to = UnsafeMutableRawPointer(dst)
            while j + 8 <= start + n {
                // clamp with replacing(with:where:): pointwiseMin/Max are generic calls, not inlined.
                var v = from.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) / vs
                v.replace(with: vlo, where: v .< vlo)
                v.replace(with: vhi, where: v .> vhi)
                to.storeBytes(of: ((v + magic) - magic) * vs, toByteOffset: j * 4, as: SIMD8<Float>.self)
                j += 8
            }
            while j < start + n {
                dst[j] = round(min(max(src[j] / s, lower), upper)) * s
                j += 1
            }
            start += n
            b += 1
        }
    }

    /// Quantize a row-major `[rows, cols]` matrix in blocks of `group` columns.
    /// - Parameter clip: `[rows, blocks]` max magnitudes replacing max |w| (nil: none).
    /// - Complexity: O(rows × cols).
    static func quantize(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, group: Int, scheme: Int4Scheme,
                         clip: [Float]? = nil) -> QuantizedMatrix {
        precondition(w.count == rows * cols && group > 0)
        let blocks = (cols + group - 1) / group
        var q = [Int8](repeating: 0, count: rows * cols)
        var scales = [Float](repeating: 0, count: rows * blocks)
        var zeros = scheme == .asymmetric ? [Int8](repeating: 0, count: rows * blocks) : nil
        let base = w.baseAddress!
        for r in 0..<rows {
            for b in 0..<blocks {
                let start = r * cols + b * group, n = min(group, cols - b * group)
                let (s, z) = parameters(base + start, count: n, scheme: scheme, clip: clip?[r * blocks + b])
                scales[r * blocks + b] = s
                zeros?[r * blocks + b] = Int8(z)
                for j in start..<(start + n) { q[j] = Int8(code(base[j], scale: s, zero: z, scheme: scheme)) }
            }
        }
        return QuantizedMatrix(rows: rows, cols: cols, group: group, q: q, scales: scales, zeros: zeros)
    }

    /// The IR tensor of a quantized linear weight `name` (`….weight`): payload `i4`/`u4` `[rows, cols]`
    /// packed two per byte, low nibble first, with its ``QuantSpec``:
    ///
    /// ```
    /// scale           f32 [rows, ⌈cols/G⌉]   MODULE.weight_scale
    /// zero point      u4  [rows, ⌈cols/G⌉]   MODULE.weight_zero_point     (asymmetric only)
    /// pre-quant p     f32 [cols]              MODULE.pre_quant_scale      (AWQ, when not folded)
    /// input scale     f32 []                  MODULE.input_scale          (W4A8: amax(x ⊙ p) / 448)
    /// ```
    static func tensor(name: String, _ m: QuantizedMatrix, scheme: Int4Scheme, preQuantScale: [Float]? = nil, inputScale: Float? = nil) -> Tensor {
        let module = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
        let scale = Tensor(name: module + ".weight_scale", dtype: .f32, shape: [m.rows, m.blocks], values: m.scales)
        let zero = m.zeros.map {
            Tensor(name: module + ".weight_zero_point", dtype: .u4, shape: [m.rows, m.blocks], storage: .owned(TensorBuffer(values: Int4Packing.packIR($0))))
        }
        let p = preQuantScale.map { Tensor(name: module + ".pre_quant_scale", dtype: .f32, shape: [m.cols], values: $0) }
        let input = inputScale.map { Tensor(name: module + ".input_scale", dtype: .f32, shape: [], values: [$0]) }
        let spec = QuantSpec(format: scheme.format, granularity: .perBlock(axis: 1, size: m.group), scale: scale,
                             zeroPoint: zero, preQuantScale: p, inputScale: input)
        return Tensor(name: name, dtype: scheme.format.payload, shape: [m.rows, m.cols],
                      storage: .owned(TensorBuffer(values: Int4Packing.packIR(m.q))), quant: spec)
    }

    /// The weight's values as f32, refusing non-finite values.
    /// - Throws: `KilnError(.invalidInput)` naming the tensor and the first bad element.
    static func finiteFloats(_ t: Tensor) throws -> [Float] {
        let w = try t.floats()
        if let i = w.firstIndex(where: { !$0.isFinite }) {
            throw KilnError(.invalidInput, path: ["tensor \"\(t.name)\""], "element \(i) is \(w[i]); only finite weights can be quantized")
        }
        return w
    }
}
