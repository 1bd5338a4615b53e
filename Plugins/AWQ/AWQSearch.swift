#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import KilnCore

/// One group of linears reading the same input, as the AWQ search sees it.
struct AWQProblem {
    /// Weight names (q, k, v / gate, up / o / down ...).
    var names: [String]
    /// Row-major `[outs[m], cols]` f32 weights.
    var weights: [[Float]]
    var outs: [Int]
    var cols: Int
    var group: Int
    var scheme: Int4Scheme
    /// Per member: run the clipping search.
    var clip: [Bool]
    /// mean |x_j| per input channel over the calibration data.
    var meanAbs: [Float]
}

/// What the search chose for a group.
struct AWQSolution {
    /// Per-input-channel scale s (all ones: plain round-to-nearest won).
    var scales: [Float]
    /// Its reciprocal p = 1/s, the pre-quant scale the layer applies to its input.
    var preQuant: [Float]
    /// The winning exponent (nil: the s ≡ 1 candidate of duo scaling) and its family.
    var alpha: Float?
    var family: Scaling
    /// Per member: `[rows, blocks]` block maxima of the scaled weight (nil: no clipping kept).
    var clip: [[Float]?]
    /// Σ over members of ‖X·Δᵀ‖² for round-to-nearest, after scaling, and after clipping.
    var rtnError: Double
    var scaledError: Double
    var finalError: Double
    /// Rows × outputs behind the errors (their MSE denominator).
    var elements: Double
}

/// The AWQ search (llm-awq auto_scale + auto_clip) over one group.
///
/// ```
/// act scaling:  s(α) = clamp(mean|x|^α, 1e-4, 1e4)                           α = i / grid, i = 0 … grid−1
/// duo scaling:  s(α) = clamp(mean|x|^α / mean_o(|w|/blockmax)^(1−α), 1e-4, 1e4), plus s ≡ 1
/// normalized:   s ← s / sqrt(max(s)·min(s))
/// pick α minimizing Σ_members ‖X·Δ(s)ᵀ‖² (α = 0 of act scaling is round-to-nearest, so AWQ ≤ RTN),
/// then per (row, block) the clip value minimizing the block error; a member keeps its clipping
/// only when its whole-output error goes down.
/// ```
enum AWQSearch {
    /// Candidate scale vectors, in a fixed order (ties go to the earliest).
    static func candidates(_ p: AWQProblem, scaling: Scaling, grid: Int) -> [(alpha: Float?, family: Scaling)] {
        let alphas = (0..<grid).map { Float($0) / Float(grid) }
        var out: [(Float?, Scaling)] = []
        if scaling != .duo { out += alphas.map { ($0, .act) } }
        if scaling != .act { out += [(nil, .duo)] + alphas.map { ($0, .duo) } }
        return out
    }

    /// mean over rows of |w| / (max |w| of its block), per input channel, over all members (ModelOpt awq_lite `get_weight_scale`).
    static func weightMagnitude(_ p: AWQProblem) -> [Float] {
        var sum = [Double](repeating: 0, count: p.cols)
        var rows = 0
        for (w, out) in zip(p.weights, p.outs) {
            for r in 0..<out {
                var start = 0
                while start < p.cols {
                    let n = min(p.group, p.cols - start)
                    var m: Float = 0
                    for j in start..<(start + n) { m = max(m, abs(w[r * p.cols + j])) }
                    for j in start..<(start + n) { sum[j] += Double(abs(w[r * p.cols + j]) / (m + .leastNormalMagnitude)) }
                    start += n
                }
            }
            rows += out
        }
        return sum.map { Float($0 / Double(max(rows, 1))) }
    }

    /// The scale vector of one candidate.
    static func scales(meanAbs: [Float], weightMagnitude: [Float], alpha: Float?, family: Scaling) -> [Float] {
        guard let alpha else { return [Float](repeating: 1, count: meanAbs.count) }
        var s = meanAbs.indices.map { j -> Float in
            var v = powf(meanAbs[j], alpha)
            if family == .duo { v /= powf(weightMagnitude[j], 1 - alpha) + .leastNormalMagnitude }
            return min(max(v, Limits.scaleRange.lowerBound), Limits.scaleRange.upperBound)
        }
        let norm = (s.max()! * s.min()!).squareRoot()
        for j in s.indices { s[j] /= norm }
        return s
    }

    /// Δ = dequant(Q(W·s, clip))·p − W of one member, packed in panels of 16 rows into `panels`.
    static func packDelta(_ w: [Float], rows: Int, cols: Int, group: Int, scheme: Int4Scheme, s: [Float], p: [Float],
                          clip: [Float]?, into panels: UnsafeMutablePointer<Float>) {
        let blocks = (cols + group - 1) / group
        let panelCount = (rows + Kernels.panelWidth - 1) / Kernels.panelWidth
        panels.initialize(repeating: 0, count: panelCount * Kernels.panelWidth * cols)
        var scaled = [Float](repeating: 0, count: cols), deq = [Float](repeating: 0, count: cols)
        w.withUnsafeBufferPointer { wp in
            for r in 0..<rows {
                let row = wp.baseAddress! + r * cols
                for j in 0..<cols { scaled[j] = row[j] * s[j] }
                clip.withUnsafeBufferPointer(optional: true) { c in
                    Int4Quantizer.fakeQuantizeRow(scaled, &deq, cols: cols, group: group, scheme: scheme, clip: c.map { $0 + r * blocks })
                }
                let dst = panels + (r / Kernels.panelWidth) * Kernels.panelWidth * cols + r % Kernels.panelWidth
                for j in 0..<cols { dst[j * Kernels.panelWidth] = deq[j] * p[j] - row[j] }
            }
        }
    }

    /// E(Δ) of one member for scales `s` (and clip values).
    static func memberError(_ p: AWQProblem, _ m: Int, objective: GroupObjective, s: [Float], inv: [Float], clip: [Float]?, parallel: Bool) -> Double {
        let panelCount = (p.outs[m] + Kernels.panelWidth - 1) / Kernels.panelWidth
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(panelCount * Kernels.panelWidth * p.cols, 1))
        defer { buffer.deallocate() }
        packDelta(p.weights[m], rows: p.outs[m], cols: p.cols, group: p.group, scheme: p.scheme, s: s, p: inv, clip: clip, into: buffer)
        return objective.error(panels: buffer, panelCount: panelCount, parallel: parallel)
    }

    /// Search scales, then clipping, for one group.
    /// - Complexity: O(grid × Σ out × in × min(n, in/2)) for the scales, O(10 × Σ out × in × G) for clipping.
    static func solve(_ p: AWQProblem, objective: GroupObjective, scaling: Scaling, grid: Int) -> AWQSolution {
        let list = candidates(p, scaling: scaling, grid: grid)
        let wmag = scaling == .act ? [] : weightMagnitude(p)
        let members = p.weights.count
        var losses = [Double](repeating: 0, count: list.count * members)
        losses.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: list.count) { c in
                let s = scales(meanAbs: p.meanAbs, weightMagnitude: wmag, alpha: list[c].alpha, family: list[c].family)
                let inv = s.map { 1 / $0 }
                for m in 0..<members {
                    base[c * members + m] = memberError(p, m, objective: objective, s: s, inv: inv, clip: nil, parallel: false)
                }
            }
        }
        func total(_ c: Int) -> Double { (0..<members).reduce(0) { $0 + losses[c * members + $1] } }
        var best = 0
        for c in 1..<list.count where total(c) < total(best) { best = c }
        let rtn = list.firstIndex { $0.alpha == 0 && $0.family == .act } ?? list.firstIndex { $0.alpha == nil }!
        let s = scales(meanAbs: p.meanAbs, weightMagnitude: wmag, alpha: list[best].alpha, family: list[best].family)
        let inv = s.map { 1 / $0 }
        var clip = [[Float]?](repeating: nil, count: members)
        var final = total(best)
        if p.clip.contains(true) {
            let search = ClipSearch(objective: objective, p: inv, group: p.group, scheme: p.scheme)
            for m in 0..<members where p.clip[m] {
                let scaled = (0..<(p.outs[m] * p.cols)).map { p.weights[m][$0] * s[$0 % p.cols] }
                let c = search.search(scaled, rows: p.outs[m])
                let e = memberError(p, m, objective: objective, s: s, inv: inv, clip: c, parallel: true)
                if e < losses[best * members + m] {
                    clip[m] = c
                    final += e - losses[best * members + m]
                }
            }
        }
        let elements = Double(objective.tokens) * Double(p.outs.reduce(0, +))
        return AWQSolution(scales: s, preQuant: inv, alpha: list[best].alpha, family: list[best].family, clip: clip,
                           rtnError: total(rtn), scaledError: total(best), finalError: final, elements: elements)
    }
}

extension Optional where Wrapped == [Float] {
    /// Call `body` with a pointer to the array's elements, or nil.
    func withUnsafeBufferPointer<R>(optional: Bool, _ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .some(let a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        case .none: return body(nil)
        }
    }
}
