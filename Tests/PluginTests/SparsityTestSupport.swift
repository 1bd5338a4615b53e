import KilnCore
import KilnEngine
import KilnTestKit

/// A calibration service for the sparsity tests: per linear input group, deterministic activations
/// with correlated channels, and their Hessian H = XᵀX in f64.
///
/// ```
/// x[r, j] = s_j · (z[r, j] + 0.7·z[r, j−1] + 0.5·f_r),   s_j = 1 + 4·[j % 7 = 0]
/// ```
/// with z, f uniform in [-1, 1) from SplitMix64 seeded by the group's first weight name; `dead`
/// channels are zero. Each request is recorded with whether layer 0's q_proj was already 2:4 in the
/// model it came with (to see sequential calibration).
class HessianCalibration: CalibrationService {
    let rows: Int
    /// Input channels forced to zero (their Hessian row and column are 0).
    var dead: Set<Int> = []
    /// Replaces the Hessian of a weight (not checked for size).
    var hessianOverride: [String: [Double]] = [:]
    /// Return no Hessian at all (a service that ignores `hessian: true`).
    var omitHessian = false
    var requests: [CalibrationRequest] = []
    /// Per request: was `model.layers.0.self_attn.q_proj.weight` 2:4 in the model passed?
    var layer0Sparse: [Bool] = []

    init(rows: Int = 192) { self.rows = rows }

    /// The activations `[rows, cols]` of the group whose first weight is `first`.
    func activations(_ first: String, cols: Int) -> [Double] {
        var seed: UInt64 = 0x5350_4152_5345
        for b in first.utf8 { seed = (seed ^ UInt64(b)) &* 0x100_0000_01B3 }
        var rng = SplitMix64(seed: seed)
        var x = [Double](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            let f = Double(rng.nextSigned())
            var previous = Double(rng.nextSigned())
            for j in 0..<cols {
                let z = Double(rng.nextSigned())
                let s = j % 7 == 0 ? 5.0 : 1.0
                x[r * cols + j] = dead.contains(j) ? 0 : s * (z + 0.7 * previous + 0.5 * f)
                previous = z
            }
        }
        return x
    }

    /// XᵀX of `x` `[rows, cols]`, f64 row-major `[cols, cols]`.
    static func gram(_ x: [Double], cols: Int) -> [Double] {
        let rows = x.count / cols
        var h = [Double](repeating: 0, count: cols * cols)
        for r in 0..<rows {
            for i in 0..<cols where x[r * cols + i] != 0 {
                let xi = x[r * cols + i]
                for j in 0..<cols { h[i * cols + j] += xi * x[r * cols + j] }
            }
        }
        return h
    }

    /// The Hessian this service reports for `weight` of `model`.
    func hessian(_ weight: String, model: Model) throws -> [Double] {
        if let h = hessianOverride[weight] { return h }
        let first = try LinearTopology.llama(model).group(of: weight)!.weights[0]
        let cols = model[weight]!.shape[1]
        return HessianCalibration.gram(activations(first, cols: cols), cols: cols)
    }

    func calibrate(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> CalibrationStatistics {
        requests.append(request)
        layer0Sparse.append(try StructuredSparsity.twoFour(model["model.layers.0.self_attn.q_proj.weight"]!).isTwoFour)
        return try statistics(model, request: request, layer: nil)
    }

    /// Statistics of the linears `request` asks for (of one decoder layer, or all).
    func statistics(_ model: Model, request: CalibrationRequest, layer: Int?) throws -> CalibrationStatistics {
        let topology = try LinearTopology.llama(model)
        let stats = CalibrationStatistics(tokens: rows)
        for group in topology.groups where group.role != "lm_head" && (layer == nil || group.layer == layer) {
            for w in group.weights where request.only?.contains(w) ?? true {
                let cols = model[w]!.shape[1]
                let s = LinearStatistics(weightName: w, inputChannels: cols)
                s.tokens = rows
                if request.hessian && !omitHessian { s.hessian = try hessian(w, model: model) }
                stats.linears[w] = s
            }
        }
        return stats
    }
}

/// ``HessianCalibration`` as a ``LayerwiseCalibrationService``: one run, the tensors `update` returns
/// replace the layer's weights in the model the later layers see.
final class LayerwiseHessianCalibration: HessianCalibration, LayerwiseCalibrationService {
    /// Per layer visited: the tensor names `update` returned.
    private(set) var updates: [[String]] = []

    func calibrateLayerwise(_ model: Model, request: CalibrationRequest, progress: ProgressSink?,
                            update: (Int, CalibrationStatistics) throws -> [Tensor]) throws {
        requests.append(request)
        let working = try Model(tensors: model.tensors, config: model.config)
        for layer in 0..<(try LinearTopology.llama(model).layerCount) {
            layer0Sparse.append(try StructuredSparsity.twoFour(working["model.layers.0.self_attn.q_proj.weight"]!).isTwoFour)
            let returned = try update(layer, try statistics(working, request: request, layer: layer))
            updates.append(returned.map(\.name))
            for t in returned { working.set(t) }
        }
    }
}

/// Straightforward scalar re-implementations the pass is checked against.
enum SparsityReference {
    /// Keep the 2 largest of 4 scores, ties to the lower index: sort (score desc, index asc).
    static func kept(_ scores: [Double]) -> Set<Int> {
        Set((0..<4).sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(2))
    }

    /// Magnitude 2:4 of a row-major `[rows, cols]` matrix.
    static func magnitude(_ w: [Float]) -> [Float] {
        var out = w
        for g in stride(from: 0, to: w.count, by: 4) {
            let keep = kept((0..<4).map { Double(abs(w[g + $0])) })
            for t in 0..<4 where !keep.contains(t) { out[g + t] = 0 }
        }
        return out
    }

    /// sparsegpt.py `fasterprune(prunen: 2, prunem: 4)` without blocks or lazy batching, in f64:
    /// dead columns, damping, H⁻¹ by Gauss–Jordan, U = upper Cholesky of H⁻¹, then per column
    /// W[:, i:] −= ((w − q) / U[i,i]) · U[i, i:].
    static func sparseGPT(_ weights: [Float], cols: Int, hessian: [Double], damp: Double) -> [Double] {
        let n = cols, rows = weights.count / cols
        var w = weights.map(Double.init)
        var h = hessian
        for i in 0..<n where h[i * n + i] == 0 {
            h[i * n + i] = 1
            for r in 0..<rows { w[r * n + i] = 0 }
        }
        let lambda = damp * (0..<n).map { h[$0 * n + $0] }.reduce(0, +) / Double(n)
        for i in 0..<n { h[i * n + i] += lambda }
        let hinv = inverse(h, n: n)
        var u = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            var d = hinv[i * n + i]
            for k in 0..<i { d -= u[k * n + i] * u[k * n + i] }
            u[i * n + i] = d.squareRoot()
            for j in (i + 1)..<max(i + 1, n) {
                var s = hinv[i * n + j]
                for k in 0..<i { s -= u[k * n + i] * u[k * n + j] }
                u[i * n + j] = s / u[i * n + i]
            }
        }
        for r in 0..<rows {
            var keep = Set<Int>()
            for i in 0..<n {
                if i % 4 == 0 {
                    keep = Set(kept((0..<4).map { t in
                        let d = u[(i + t) * n + i + t]
                        return w[r * n + i + t] * w[r * n + i + t] / (d * d)
                    }).map { i + $0 })
                }
                let q = keep.contains(i) ? w[r * n + i] : 0
                let err = (w[r * n + i] - q) / u[i * n + i]
                for j in i..<n { w[r * n + j] -= err * u[i * n + j] }
                w[r * n + i] = q
            }
        }
        return w
    }

    /// Inverse by Gauss–Jordan elimination with partial pivoting.
    static func inverse(_ a: [Double], n: Int) -> [Double] {
        var m = a, inv = [Double](repeating: 0, count: n * n)
        for i in 0..<n { inv[i * n + i] = 1 }
        for c in 0..<n {
            let p = (c..<n).max { abs(m[$0 * n + c]) < abs(m[$1 * n + c]) }!
            if p != c {
                for j in 0..<n { m.swapAt(p * n + j, c * n + j); inv.swapAt(p * n + j, c * n + j) }
            }
            let d = m[c * n + c]
            for j in 0..<n { m[c * n + j] /= d; inv[c * n + j] /= d }
            for r in 0..<n where r != c && m[r * n + c] != 0 {
                let f = m[r * n + c]
                for j in 0..<n { m[r * n + j] -= f * m[c * n + j]; inv[r * n + j] -= f * inv[c * n + j] }
            }
        }
        return inv
    }

    /// Output reconstruction error Σ_o dₒᵀ H dₒ = ‖X Wᵀ − X Ŵᵀ‖²_F, d = W − Ŵ, H = XᵀX.
    static func reconstructionError(_ w: [Float], _ pruned: [Float], cols: Int, hessian h: [Double]) -> Double {
        var total = 0.0
        for r in 0..<(w.count / cols) {
            let d = (0..<cols).map { Double(w[r * cols + $0]) - Double(pruned[r * cols + $0]) }
            for i in 0..<cols where d[i] != 0 {
                var s = 0.0
                for j in 0..<cols { s += h[i * cols + j] * d[j] }
                total += d[i] * s
            }
        }
        return total
    }

    /// Does every group of 4 of `w` hold at most 2 non-zeros?
    static func isTwoFour(_ w: [Float]) -> Bool {
        stride(from: 0, to: w.count, by: 4).allSatisfy { g in (0..<4).filter { w[g + $0] != 0 }.count <= 2 }
    }
}
