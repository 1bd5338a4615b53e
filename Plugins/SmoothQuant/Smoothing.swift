#if canImport(Glibc)
import Glibc
#endif
import KilnCore

/// SmoothQuant's per-input-channel factors and the INT8 arithmetic around them.
///
/// ```
/// w_j  = max(max over the group's quantized linears |W[:, j]|, 1e-5)        (smooth.py clamp)
/// s_j  = clamp(x_j^α / w_j^(1−α), 1e-4, 1e4),  x_j = max |X[:, j]| over calibration
///        s_j = 1 where x_j ≤ 2^-31 (a dead channel; ModelOpt's mask)
/// X' = X / s  (folded into the norm, or p = 1/s as pre-quant scale),  W' = W · diag(s)
/// so X' · W'ᵀ = X · Wᵀ
/// weights:      s_c = amax(|W'[c, :]|) / 127,  q = clamp(round_half_even(W' / s_c), −128, 127)   (s_c = 1 when 0)
/// static act.:  s_x = max_j(x_j / s_j) / 127,  x_q = clamp(round_half_even(x' / s_x), −128, 127) · s_x
/// dynamic act.: one s_x per token row: max |x'_row| / 127
/// ```
/// The powers are evaluated in f64 and rounded once to f32.
enum Smoothing {
    static let weightFloor: Float = 1e-5
    static let factorRange: ClosedRange<Float> = 1e-4...1e4
    static let deadChannel: Float = 1.0 / Float(1 << 31)

    /// Per input column, max |W[:, j]| over `weights` (each row-major `[rows_m, cols]`), floored at 1e-5.
    static func weightColumnMax(_ weights: [[Float]], cols: Int) -> [Float] {
        var m = [Float](repeating: 0, count: cols)
        for w in weights {
            for (i, v) in w.enumerated() { m[i % cols] = max(m[i % cols], abs(v)) }
        }
        return m.map { max($0, weightFloor) }
    }

    /// The smoothing factors s for activation maxima `xMax`, weight maxima `wMax` and `alpha` in 0...1.
    static func factors(xMax: [Float], wMax: [Float], alpha: Float) -> [Float] {
        zip(xMax, wMax).map { x, w in
            guard x > deadChannel else { return 1 }
            let s = Float(pow(Double(x), Double(alpha)) / pow(Double(w), 1 - Double(alpha)))
            return min(max(s, factorRange.lowerBound), factorRange.upperBound)
        }
    }

    /// `w[r, j] · s[j]` for a row-major matrix with `s.count` columns (f32 products).
    static func scaledColumns(_ w: [Float], by s: [Float]) -> [Float] {
        let cols = s.count
        var out = w
        for i in out.indices { out[i] *= s[i % cols] }
        return out
    }

    /// The static activation scale after smoothing: `max_j(x_j / s_j) / 127` (1 when that is 0).
    static func staticInputScale(xMax: [Float], factors s: [Float]) -> Float {
        var m: Float = 0
        for (x, f) in zip(xMax, s) { m = max(m, x / f) }
        return m > 0 && m.isFinite ? m / 127 : 1
    }
}

/// INT8 symmetric per-output-channel weights.
enum Int8Weights {
    /// Scales `amax_c / 127` (1 for an all-zero row) and payload `clamp(round_half_even(w / s_c), −128, 127)`.
    /// - Complexity: O(rows · cols).
    static func quantize(_ w: [Float], rows: Int, cols: Int) -> (q: [Int8], scales: [Float]) {
        var q = [Int8](repeating: 0, count: w.count)
        var scales = [Float](repeating: 1, count: rows)
        for r in 0..<rows {
            var amax: Float = 0
            for c in 0..<cols { amax = max(amax, abs(w[r * cols + c])) }
            let s: Float = amax > 0 && amax.isFinite ? amax / 127 : 1
            scales[r] = s
            for c in 0..<cols { q[r * cols + c] = Int8(clamp((w[r * cols + c] / s).rounded(.toNearestOrEven))) }
        }
        return (q, scales)
    }

    /// `dequant(int8_per_channel(W · diag(s)))` in one pass per row, without the intermediate arrays
    /// (the α search's inner step; same values as `q · s_c` of `quantize(scaledColumns(w, s))`).
    /// - Complexity: O(rows · cols).
    static func fakeQuantized(_ w: [Float], columnFactors s: [Float], rows: Int) -> [Float] {
        let cols = s.count
        var out = [Float](repeating: 0, count: w.count)
        for r in 0..<rows {
            let base = r * cols
            var amax: Float = 0
            for c in 0..<cols {
                let v = w[base + c] * s[c]
                out[base + c] = v
                amax = max(amax, abs(v))
            }
            let sc: Float = amax > 0 && amax.isFinite ? amax / 127 : 1
            for c in 0..<cols { out[base + c] = clamp((out[base + c] / sc).rounded(.toNearestOrEven)) * sc }
        }
        return out
    }

    @inline(__always)
    static func clamp(_ x: Float) -> Float { min(max(x, -128), 127) }
}

/// INT8 fake quantization of activations (what the executor applies to a quantized linear's input).
enum Int8Activations {
    /// `x ← clamp(round_half_even(x / s), −128, 127) · s` with one static scale.
    static func fakeQuantize(_ x: inout [Float], scale s: Float) {
        for i in x.indices { x[i] = Int8Weights.clamp((x[i] / s).rounded(.toNearestOrEven)) * s }
    }

    /// Per-token dynamic fake quantization: each row of `cols` values gets `s = max|row| / 127`.
    static func fakeQuantizePerToken(_ x: inout [Float], cols: Int) {
        var r = 0
        while r * cols < x.count {
            let base = r * cols
            var amax: Float = 0
            for c in 0..<cols { amax = max(amax, abs(x[base + c])) }
            if amax > 0 {
                let s = amax / 127
                for c in 0..<cols { x[base + c] = Int8Weights.clamp((x[base + c] / s).rounded(.toNearestOrEven)) * s }
            }
            r += 1
        }
    }
}
