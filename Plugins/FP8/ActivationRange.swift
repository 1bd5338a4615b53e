import KilnCore

/// How a static activation range is chosen (option `activation-calibration`).
enum ActivationCalibration: String, CaseIterable {
    /// amax = max |x| over every calibration token (ModelOpt's default `max` calibrator).
    case max
    /// amax = the `percentile`-th percentile of |x| over the captured input rows (nearest rank).
    case percentile
    /// amax = the candidate minimizing the fake-quantization MSE on the captured input rows.
    case mse
}

/// The activation amax of one linear input from calibration statistics, and its FP8 scale.
///
/// ```
/// max:         A = max_j inputAbsMax[j]
/// percentile:  A = |x|_(k),  k = ⌈p/100 · n⌉           (k-th smallest of the n captured |x| values)
/// mse:         A = argmin over A_m = max·m/100, m = 100, 99, …, 30 of
///              Σ_captured e(x) + Σ_j e(max|x_j|),   e(x) = (x − f32(e4m3_saturating(x / s_m)) · s_m)²,
///              s_m = A_m / 448
///              (over at most 65 536 captured values, taken with a fixed stride; ties keep the larger A)
///
/// The captured rows are a sample (positions 15, 31, … of each sequence with 512 of 32 × 256 tokens),
/// which never holds the few tokens with massive activations (the first position's attention sink,
/// up to ~100× the typical row maximum in down_proj inputs). An MSE over the sample alone clips those
/// tokens (SmolLM2-135M: ppl 9.19 vs 7.78 with max; percentile 99.99: 30.95). The per-channel maxima
/// over every token stand for them as one more row: clipping them costs far more than the finer step
/// gains on the sample, so the search stays at or near the max. `percentile` has no such guard and
/// is only safe on models without massive activations. For FP8 the max is the better default anyway: e4m3's error is relative, so a smaller
/// range only helps values below A / 2^15 (subnormals).
/// scale        s = A / 448    (A = 0: the max is used; max = 0: s = 1)
/// ```
enum ActivationRange {
    /// Largest number of captured values the MSE search evaluates per input.
    static let mseSampleLimit = 1 << 16

    /// The amax for the input shared by the linears with statistics `stats` (they read the same input).
    ///
    /// - Parameters:
    ///   - method: how to choose the amax.
    ///   - stats: statistics of every linear reading this input (at least one).
    ///   - percentile: for `.percentile`, in (0, 100].
    /// - Throws: `KilnError(.internal)` when a percentile / MSE search finds no captured rows.
    /// - Complexity: O(captured values) for percentile (quickselect), O(71 · min(n, 65 536)) for MSE.
    static func amax(_ method: ActivationCalibration, stats: [LinearStatistics], percentile: Double) throws -> Float {
        let absMax = stats.map(\.absMax).max() ?? 0
        guard method != .max else { return absMax }
        guard let captured = stats.lazy.compactMap(\.capturedInputs).first else {
            throw KilnError(.internal, path: ["tensor \"\(stats.first?.weightName ?? "?")\""],
                            "calibration returned no captured input rows, needed by --activation-calibration \(method.rawValue)")
        }
        guard !captured.isEmpty else { return absMax }
        let candidate: Float
        switch method {
        case .max: candidate = absMax
        case .percentile: candidate = percentileAbs(captured, percentile)
        case .mse:
            let channelMax = stats.count == 1 ? stats[0].inputAbsMax : (0..<stats[0].inputChannels).map { j in stats.map { $0.inputAbsMax[j] }.max() ?? 0 }
            candidate = mseAmax(captured, absMax: absMax, channelMax: channelMax)
        }
        return candidate > 0 ? min(candidate, absMax) : absMax
    }

    /// The FP8 scale of an amax: `A / 448`, or 1 when A is 0.
    static func scale(amax: Float) -> Float {
        amax > 0 && amax.isFinite ? amax / FP8Weights.maxE4M3 : 1
    }

    /// The nearest-rank `p`-th percentile of |x| over `values`.
    /// - Complexity: O(n) expected (quickselect with a median-of-three pivot; deterministic).
    static func percentileAbs(_ values: [Float], _ p: Double) -> Float {
        var a = values.map { abs($0) }
        let n = a.count
        let rank = Swift.min(n, Swift.max(1, Int((p / 100 * Double(n)).rounded(.up))))
        return select(&a, rank - 1)
    }

    /// The element that would be at `k` (0-based) if `a` were sorted ascending; reorders `a`.
    static func select(_ a: inout [Float], _ k: Int) -> Float {
        var lo = 0, hi = a.count - 1
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            // Median of three as pivot value.
            let x = a[lo], y = a[mid], z = a[hi]
            let pivot = Swift.max(Swift.min(x, y), Swift.min(Swift.max(x, y), z))
            var i = lo, j = hi
            while i <= j {
                while a[i] < pivot { i += 1 }
                while a[j] > pivot { j -= 1 }
                if i <= j {
                    a.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if k <= j { hi = j } else if k >= i { lo = i } else { return a[k] }
        }
        return a[k]
    }

    /// The amax among `absMax · m/100` (m = 100 … 30) with the smallest FP8 fake-quantization error.
    static func mseAmax(_ values: [Float], absMax: Float, channelMax: [Float] = []) -> Float {
        guard absMax > 0 else { return 0 }
        let stride = Swift.max(1, values.count / mseSampleLimit)
        var sample: [Float] = []
        sample.reserveCapacity(values.count / stride + 1)
        var i = 0
        while i < values.count { sample.append(values[i]); i += stride }
        var best = absMax, bestError = Double.infinity
        for m in Swift.stride(from: 100, through: 30, by: -1) {
            let a = absMax * Float(m) / 100
            let s = a / FP8Weights.maxE4M3
            var error = 0.0, extremes = 0.0
            for x in sample {
                let d = x - FloatBits.f32(fromF8E4M3FN: FloatBits.f8e4m3fnSaturating(fromF32: x / s)) * s
                error += Double(d) * Double(d)
            }
            for x in channelMax {
                let d = x - FloatBits.f32(fromF8E4M3FN: FloatBits.f8e4m3fnSaturating(fromF32: x / s)) * s
                extremes += Double(d) * Double(d)
            }
            error += extremes / Double(stride)  // one row among the captured, in sample units
            if error < bestError {
                bestError = error
                best = a
            }
        }
        return best
    }
}
