import KilnCore

/// FP8 E4M3 weight quantization: scales and payloads, bit for bit as ModelOpt exports them.
///
/// ```
/// per-tensor:   s   = amax(|W|) / 448                  (f32; s = 1 when amax = 0)
/// per-channel:  s_c = amax(|W[c, :]|) / 448            (one per output row c)
/// payload:      q   = e4m3_saturating(round_src(w / s))
/// ```
///
/// `w / s` is an f32 division. `round_src` rounds the quotient to the weight's own dtype when
/// that is bf16 or f16 (identity for f32): ModelOpt computes `(weight / scale).to(float8_e4m3fn)`
/// with a 0-d f32 scale, which PyTorch evaluates in f32 and rounds to the weight's dtype before the
/// cast, so a bf16 weight is rounded twice (bf16, then e4m3). Skipping that step changes about 1% of
/// the bytes (DESIGN §7). f64 weights are converted to f32 first. `e4m3_saturating` clamps to ±448
/// before rounding (``FloatBits/f8e4m3fnSaturating(fromF32:)``).
enum FP8Weights {
    /// Largest finite E4M3 magnitude.
    static let maxE4M3: Float = 448

    /// Per-tensor scale of `values`.
    static func tensorScale(_ values: [Float]) -> Float {
        var amax: Float = 0
        for v in values { amax = max(amax, abs(v)) }
        return scale(amax: amax)
    }

    /// One scale per row of a row-major `[rows, cols]` matrix.
    static func rowScales(_ values: [Float], rows: Int, cols: Int) -> [Float] {
        (0..<rows).map { r in
            var amax: Float = 0
            for c in 0..<cols { amax = max(amax, abs(values[r * cols + c])) }
            return scale(amax: amax)
        }
    }

    /// `amax / 448`, or 1 for an all-zero (or non-finite) amax so that the payload is zeros, never NaN.
    static func scale(amax: Float) -> Float {
        amax > 0 && amax.isFinite ? amax / maxE4M3 : 1
    }

    /// Rounds an f32 quotient to `dtype` and back (the "division in the weight's dtype" step).
    @inline(__always)
    static func roundToSource(_ x: Float, _ dtype: DType) -> Float {
        switch dtype {
        case .bf16: return FloatBits.f32(fromBF16: FloatBits.bf16(fromF32: x))
        case .f16: return FloatBits.f32(fromF16: FloatBits.f16(fromF32: x))
        default: return x
        }
    }

    /// The E4M3 payload of `values` (row-major, `cols` per row) with `scales` (one, or one per row).
    ///
    /// - Parameters:
    ///   - values: the weight as f32 (exact for bf16 / f16 sources).
    ///   - scales: count 1 (per-tensor) or `values.count / cols` (per-row).
    ///   - source: the weight's dtype, deciding the rounding of the quotient.
    /// - Complexity: O(values.count).
    static func payload(_ values: [Float], scales: [Float], cols: Int, source: DType) -> TensorBuffer {
        let out = TensorBuffer(count: values.count, zeroed: false)
        var quotient = [Float](repeating: 0, count: values.count)
        let perRow = scales.count > 1
        for i in values.indices {
            let s = perRow ? scales[i / cols] : scales[0]
            quotient[i] = roundToSource(values[i] / s, source)
        }
        quotient.withUnsafeBytes { FloatBits.f8e4m3fnSaturating(values.count, fromF32: $0.baseAddress!, to: out.pointer) }
        return out
    }

    /// The weight `t` as an FP8 tensor of the same name and shape, with its ``QuantSpec``.
    ///
    /// The scale is computed now (reading the weight once); the payload is `.deferred` and computed
    /// again from `t` each time a writer reads it, so a large model streams one tensor at a time.
    ///
    /// - Parameters:
    ///   - t: a 2-D float weight `[out, in]`.
    ///   - perChannel: one scale per output row instead of one per tensor.
    ///   - inputScale: the static activation scale (nil: dynamic activations).
    /// - Throws: `KilnError` from reading `t`, or `.invalidInput` when it is not a 2-D float tensor.
    static func quantize(_ t: Tensor, perChannel: Bool, inputScale: Float?) throws -> Tensor {
        guard t.shape.rank == 2, t.dtype.isFloat, !t.dtype.isPacked else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(t.name)\""], expected: "a 2-D float weight [out, in]",
                                     found: "\(t.dtype) \(t.shape)")
        }
        let rows = t.shape[0], cols = t.shape[1]
        let values = try t.floats()
        let scales = perChannel ? rowScales(values, rows: rows, cols: cols) : [tensorScale(values)]
        let source = t.dtype
        let scaleTensor = Tensor(name: t.name + ".scale", dtype: .f32, shape: Shape(perChannel ? [rows] : [1]), values: scales)
        let spec = QuantSpec(format: .fp8e4m3, granularity: perChannel ? .perChannel(axis: 0) : .perTensor,
                             scale: scaleTensor,
                             inputScale: inputScale.map { PassSupport.scalar(t.name + ".input_scale", $0) })
        return Tensor(name: t.name, dtype: .f8e4m3fn, shape: t.shape, storage: .deferred {
            payload(try t.floats(), scales: scales, cols: cols, source: source)
        }, quant: spec)
    }
}
