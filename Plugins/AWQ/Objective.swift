import Dispatch
import KilnCore

/// The AWQ objective of one group of linears sharing an input: the squared output error on the
/// calibration rows X (`[n, in]`) of an effective weight error Δ (`[out, in]`),
///
/// ```
/// E(Δ) = ‖X·Δᵀ‖²_F = Σ_o Δ_o (XᵀX) Δ_oᵀ,     Δ = dequant(Q(W·diag(s)))·diag(1/s) − W
/// ```
///
/// (the FP output is X·Wᵀ = (X/s)·(W·s)ᵀ, the quantized one (X/s)·Q(W·s)ᵀ). When n > 0.6·in the rows
/// are replaced by R, the Cholesky factor of XᵀX (RᵀR = XᵀX): ‖R·Δᵀ‖ = ‖X·Δᵀ‖ and R is triangular, so
/// an evaluation costs out·in²/2 instead of out·in·n — and more calibration rows cost nothing extra.
final class GroupObjective: @unchecked Sendable {
    /// Input width.
    let cols: Int
    /// Calibration rows behind the objective (the MSE denominator is tokens × outputs).
    let tokens: Int
    /// X (rows padded with zeros to a multiple of 6) or R, row-major `[factorRows, cols]`.
    private let factor: [Float]
    private let factorRows: Int
    /// Whether `factor` is R (upper triangular).
    let triangular: Bool
    /// The captured rows, for block Gram matrices.
    private let x: [Float]
    /// XᵀX (f64) when it was formed for R.
    private let fullGram: [Double]?

    private init(cols: Int, tokens: Int, factor: [Float], factorRows: Int, triangular: Bool, x: [Float], fullGram: [Double]?) {
        self.cols = cols
        self.tokens = tokens
        self.factor = factor
        self.factorRows = factorRows
        self.triangular = triangular
        self.x = x
        self.fullGram = fullGram
    }

    /// The objective of the rows `x` (row-major `[tokens, cols]`).
    /// - Complexity: O(n·in²) + O(in³/3) for the factored form, else O(n·in).
    convenience init(rows x: [Float], cols: Int) {
        let n = cols > 0 ? x.count / cols : 0
        if Double(n) > 0.6 * Double(cols), cols > 0 {
            let g = x.withUnsafeBufferPointer { Kernels.gram($0.baseAddress!, n: n, cols: cols, start: 0, count: cols) }
            if let (f, rows) = GroupObjective.factor(g, cols: cols) {
                self.init(cols: cols, tokens: n, factor: f, factorRows: rows, triangular: true, x: x, fullGram: g)
                return
            }
        }
        let padded = Kernels.roundUp(max(n, 1), Kernels.tileRows)
        var f = [Float](repeating: 0, count: padded * cols)
        for i in 0..<(n * cols) { f[i] = x[i] }
        self.init(cols: cols, tokens: n, factor: f, factorRows: padded, triangular: false, x: x, fullGram: nil)
    }

    /// The objective of all calibration tokens through their Gram matrix XᵀX (f64 `[in, in]`, as the
    /// calibration's `hessian` statistic holds it): the exact full-data objective of llm-awq / ModelOpt.
    /// - Returns: nil when XᵀX is not positive semi-definite enough to factor.
    /// - Complexity: O(in³/3).
    convenience init?(gram g: [Double], tokens: Int, cols: Int) {
        guard cols > 0, g.count == cols * cols, let (f, rows) = GroupObjective.factor(g, cols: cols) else { return nil }
        self.init(cols: cols, tokens: tokens, factor: f, factorRows: rows, triangular: true, x: [], fullGram: g)
    }

    /// R of XᵀX as f32 rows padded to a multiple of 6.
    private static func factor(_ g: [Double], cols: Int) -> ([Float], Int)? {
        guard let r = Kernels.cholesky(g, n: cols) else { return nil }
        let padded = Kernels.roundUp(cols, Kernels.tileRows)
        var f = [Float](repeating: 0, count: padded * cols)
        for i in 0..<(cols * cols) { f[i] = Float(r[i]) }
        return (f, padded)
    }

    /// E(Δ) for Δ packed in `panelCount` panels of 16 rows (``Kernels/packPanels(_:rows:k:into:)``).
    /// - Parameter parallel: split over both cores (use when the caller is not already parallel).
    func error(panels: UnsafePointer<Float>, panelCount: Int, parallel: Bool) -> Double {
        factor.withUnsafeBufferPointer { f in
            parallel
                ? Kernels.sumOfSquaresParallel(f.baseAddress!, aRows: factorRows, k: cols, upperTriangular: triangular,
                                               panels: panels, panelCount: panelCount)
                : Kernels.sumOfSquares(f.baseAddress!, aRows: factorRows, k: cols, upperTriangular: triangular,
                                       panels: panels, panelRange: 0..<panelCount)
        }
    }

    /// The Gram matrix `X_bᵀX_b` (f64, `[count, count]`) of the input columns `start ..< start + count`.
    /// - Complexity: O(count²) when XᵀX was formed, else O(n·count²).
    func blockGram(start: Int, count: Int) -> [Double] {
        if let g = fullGram {
            var out = [Double](repeating: 0, count: count * count)
            for i in 0..<count {
                for j in 0..<count { out[i * count + j] = g[(start + i) * cols + start + j] }
            }
            return out
        }
        return x.withUnsafeBufferPointer { Kernels.gram($0.baseAddress!, n: tokens, cols: cols, start: start, count: count) }
    }
}

/// Block-local output error for the clipping search (llm-awq auto_clip): for one output row and one
/// block b of the scaled weight w' = w·s, with X'_b = X_b/s_b the scaled input columns,
///
/// ```
/// err_b(m) = ‖X'_b·δ‖² = δᵀ H'_b δ,   δ = Q_m(w'_b) − w'_b,   H'_b = diag(1/s_b)·X_bᵀX_b·diag(1/s_b)
/// ```
/// minimized over the block max m ∈ {max|w'_b|·(1 − i/20) : i = 0 … 9}.
struct ClipSearch {
    /// Per block: H'_b as f32, padded with zeros to `[padded, padded]` (padded = ⌈count/8⌉·8).
    let grams: [[Float]]
    let group: Int
    let cols: Int
    let scheme: Int4Scheme

    /// Prepare the block matrices of `objective` for the scales `s` (p = 1/s).
    init(objective: GroupObjective, p: [Float], group: Int, scheme: Int4Scheme) {
        self.group = group
        cols = objective.cols
        self.scheme = scheme
        var grams: [[Float]] = []
        var start = 0
        while start < cols {
            let n = min(group, cols - start), padded = Kernels.roundUp(n, 8)
            let g = objective.blockGram(start: start, count: n)
            var h = [Float](repeating: 0, count: padded * padded)
            for i in 0..<n {
                for j in 0..<n { h[i * padded + j] = Float(g[i * n + j] * Double(p[start + i]) * Double(p[start + j])) }
            }
            grams.append(h)
            start += n
        }
        self.grams = grams
    }

    /// The chosen block max per (row, block), `[rows, blocks]`, for the scaled weight `ws` (`[rows, cols]`),
    /// both cores over rows.
    /// - Complexity: O(rows × cols × group × 10).
    func search(_ ws: [Float], rows: Int) -> [Float] {
        let blocks = grams.count
        var best = [Float](repeating: 0, count: rows * blocks)
        let chunks = min(rows, 32)
        ws.withUnsafeBufferPointer { w in
            best.withUnsafeMutableBufferPointer { out in
                let outBase = out.baseAddress!
                DispatchQueue.concurrentPerform(iterations: chunks) { c in
                    var delta = [Float](repeating: 0, count: Kernels.roundUp(group, 8))
                    var deq = [Float](repeating: 0, count: group)
                    for r in (rows * c / chunks)..<(rows * (c + 1) / chunks) {
                        for b in 0..<blocks {
                            outBase[r * blocks + b] = searchBlock(w.baseAddress! + r * cols + b * group, b, &delta, &deq)
                        }
                    }
                }
            }
        }
        return best
    }

    /// The best clip value of one block.
    private func searchBlock(_ w: UnsafePointer<Float>, _ b: Int, _ delta: inout [Float], _ deq: inout [Float]) -> Float {
        let n = min(group, cols - b * group), padded = Kernels.roundUp(n, 8)
        var amax: Float = 0
        for j in 0..<n { amax = max(amax, abs(w[j])) }
        guard amax > 0 else { return 0 }
        var bestErr = Float.infinity, bestMax = amax
        grams[b].withUnsafeBufferPointer { h in
            delta.withUnsafeMutableBufferPointer { d in
                deq.withUnsafeMutableBufferPointer { q in
                    for i in 0..<Limits.clipSteps {
                        var m = amax * (1 - Float(i) / Float(Limits.clipGrid))
                        Int4Quantizer.fakeQuantizeRow(w, q.baseAddress!, cols: n, group: n, scheme: scheme, clip: &m)
                        for j in 0..<n { d[j] = q[j] - w[j] }
                        let err = quadraticForm(h.baseAddress!, d.baseAddress!, n: n, padded: padded)
                        if err < bestErr { bestErr = err; bestMax = m }
                    }
                }
            }
        }
        return bestMax
    }

    /// δᵀHδ for H `[padded, padded]` (rows beyond n unused), δ zero beyond n.
    @inline(__always)
    private func quadraticForm(_ h: UnsafePointer<Float>, _ d: UnsafePointer<Float>, n: Int, padded: Int) -> Float {
        let raw = UnsafeRawPointer(d)
        var total: Float = 0
        for i in 0..<n {
            let row = UnsafeRawPointer(h + i * padded)
            var acc = SIMD8<Float>()
            var j = 0
            while j < padded {
                acc += row.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self) * raw.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Float>.self)
                j += 8
            }
            total += d[i] * acc.sum()
        }
        return total
    }
}
