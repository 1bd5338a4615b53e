import Foundation

/// Per-tensor activation range from calibration statistics: the largest |x| (`max`), a
/// percentile of |x|, or the clipping value that minimizes the quantization MSE (`mse`),
/// the latter two from a histogram of |x| over [0, max].
public enum RangeMethod: String, Sendable, CaseIterable {
    case max, percentile, mse
}

/// Statistics of one activation over the calibration set: its absolute maximum (pass 1), then a
/// histogram of |x| with ``bins`` bins over [0, amax] (pass 2, only for percentile / mse).
/// NaN and ±Inf elements are skipped and counted in ``nonFinite``.
struct RangeStatistics {
    static let bins = 2048
    var amax: Float = 0
    var histogram: [Double] = []
    /// Finite and non-finite (NaN, ±Inf) elements seen by ``observeMax``.
    var finite = 0, nonFinite = 0

    mutating func observeMax(_ p: UnsafePointer<Float>, _ n: Int) {
        var m = amax, i = 0, skipped = 0
        while i < n {
            let v = Swift.abs(p[i])
            if !v.isFinite { skipped += 1 } else if v > m { m = v }
            i += 1
        }
        amax = m
        finite += n - skipped
        nonFinite += skipped
    }

    mutating func observeHistogram(_ p: UnsafePointer<Float>, _ n: Int) {
        if histogram.isEmpty { histogram = Array(repeating: 0, count: Self.bins) }
        guard amax > 0 else { return }
        let scale = Float(Self.bins) / amax
        histogram.withUnsafeMutableBufferPointer { h in
            var i = 0
            while i < n {
                let v = Swift.abs(p[i])
                if v.isFinite { h[Swift.min(Self.bins - 1, Int(v * scale))] += 1 }
                i += 1
            }
        }
    }

    /// The clipping range for `method`; `levels` is the largest quantized magnitude (127 for int8).
    /// `fp8` changes the rounding-error model of the MSE search to relative (floating-point) steps.
    func range(_ method: RangeMethod, percentile: Double, levels: Float, fp8: Bool) -> Float {
        guard amax > 0, !histogram.isEmpty, method != .max else { return amax }
        let width = Double(amax) / Double(Self.bins)
        let total = histogram.reduce(0, +)
        switch method {
        case .max:
            return amax
        case .percentile:
            var seen = 0.0
            for (b, c) in histogram.enumerated() {
                seen += c
                if seen >= total * percentile / 100 { return Float(Double(b + 1) * width) }
            }
            return amax
        case .mse:
            var best = (error: Double.infinity, range: amax)
            // Candidate ranges: bin edges from 1/8 of amax to amax.
            for edge in stride(from: Self.bins / 8, through: Self.bins, by: 8) {
                let r = Double(edge) * width
                let step = r / Double(levels)
                var error = 0.0
                for (b, c) in histogram.enumerated() where c > 0 {
                    let x = (Double(b) + 0.5) * width
                    if x > r {
                        error += c * (x - r) * (x - r)
                    } else if fp8 {
                        let e = step * pow(2, Swift.max(-9, log2(Swift.max(x, 1e-30) / step).rounded(.down) - 3))  // e4m3 spacing
                        error += c * e * e / 12
                    } else {
                        error += c * step * step / 12
                    }
                }
                if error < best.error { best = (error, Float(r)) }
            }
            return best.range
        }
    }
}
