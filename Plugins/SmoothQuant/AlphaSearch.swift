import Dispatch
import KilnCore

/// `--alpha auto`: per group of linears sharing an input, the migration strength α on a fixed grid that
/// minimizes the output error of the fake-quantized group on captured calibration rows.
///
/// ```
/// α ∈ {0, 0.05, 0.10, …, 1.0}                    (option alpha-step; 0.05 by default)
/// for each α:  s = factors(α);  X_q = fakequant_int8(X / s);  W_q,m = dequant(int8_per_channel(W_m · diag(s)))
///              MSE(α) = Σ_m Σ (X_q · W_q,mᵀ − X · W_mᵀ)² / (rows · Σ_m out_m)
/// α* = the first α of the grid with the smallest MSE
/// ```
/// The activation fake quantization is the one the model will use: per-tensor static with
/// `s_x = max_j(x_j / s_j) / 127` from the full calibration maxima, or per-token dynamic.
struct AlphaSearch {
    /// The grid 0, 1/n, 2/n, …, 1 (n = 20: steps of 0.05, 21 values), each `Float(Double(i) / n)`.
    static func grid(intervals n: Int) -> [Float] { (0...n).map { Float(Double($0) / Double(n)) } }

    /// Captured input rows, row-major `[rows, cols]`.
    let x: [Float]
    let rows: Int
    let cols: Int
    /// Per-channel max |x| over all calibration tokens.
    let xMax: [Float]
    /// The group's quantized weights, row-major `[out_m, cols]`, with their row counts.
    let weights: [(values: [Float], rows: Int)]
    /// Per-channel max |W| over `weights` (floored).
    let wMax: [Float]
    let dynamic: Bool
    /// `X · W_mᵀ` per weight, the float outputs.
    let reference: [[Float]]

    /// - Complexity: O(rows · cols · Σ out_m) for the reference outputs.
    init(x: [Float], rows: Int, cols: Int, xMax: [Float], weights: [(values: [Float], rows: Int)], dynamic: Bool) {
        self.x = x
        self.rows = rows
        self.cols = cols
        self.xMax = xMax
        self.weights = weights
        self.dynamic = dynamic
        wMax = Smoothing.weightColumnMax(weights.map(\.values), cols: cols)
        reference = weights.map { MatMul.product(x, rows: rows, $0.values, outs: $0.rows, inner: cols) }
    }

    /// The mean squared output error at `alpha`.
    /// - Complexity: O(rows · cols · Σ out_m).
    func error(alpha: Float) -> Double {
        let s = Smoothing.factors(xMax: xMax, wMax: wMax, alpha: alpha)
        var xq = x
        for i in xq.indices { xq[i] /= s[i % cols] }
        if dynamic {
            Int8Activations.fakeQuantizePerToken(&xq, cols: cols)
        } else {
            Int8Activations.fakeQuantize(&xq, scale: Smoothing.staticInputScale(xMax: xMax, factors: s))
        }
        var sum = 0.0, count = 0
        for (m, w) in weights.enumerated() {
            let wq = Int8Weights.fakeQuantized(w.values, columnFactors: s, rows: w.rows)
            let y = MatMul.product(xq, rows: rows, wq, outs: w.rows, inner: cols)
            let ref = reference[m]
            for i in y.indices {
                let d = Double(y[i]) - Double(ref[i])
                sum += d * d
            }
            count += y.count
        }
        return count > 0 ? sum / Double(count) : 0
    }

    /// The value of `grid` with the smallest error (the first one on ties) and every α's error.
    /// - Complexity: O(grid.count · rows · cols · Σ out_m).
    func best(grid: [Float]) -> (alpha: Float, errors: [Double]) {
        let errors = grid.map { error(alpha: $0) }
        var bestIndex = 0
        for i in errors.indices where errors[i] < errors[bestIndex] { bestIndex = i }
        return (grid[bestIndex], errors)
    }
}


/// `C = A · Bᵀ` in f32 for the α search: A `[rows, inner]`, B `[outs, inner]`, C `[rows, outs]`, all
/// row-major. Passes cannot link the engine's BLAS, so this is a SIMD loop: 2 rows × 2 outputs of
/// 8-lane accumulators, rows split over the cores.
///
/// ```
/// C[r, o] = Σ_k A[r, k] · B[o, k]
/// ```
/// Every element is summed in the same order whatever the thread count (8 lane partial sums over
/// `k` in steps of 8, then the lanes in order, then the tail), so results are deterministic.
enum MatMul {
    /// Threads used for large products.
    static let threads = 2
    /// The host's matrix service (OpenBLAS) when the pass runs under one; nil = the SIMD loop below.
    nonisolated(unsafe) static var service: (any MatrixService)?

    /// - Complexity: O(rows · outs · inner).
    static func product(_ a: [Float], rows: Int, _ b: [Float], outs: Int, inner: Int) -> [Float] {
        precondition(a.count == rows * inner && b.count == outs * inner, "MatMul.product: shapes do not match")
        var c = [Float](repeating: 0, count: rows * outs)
        guard rows > 0, outs > 0 else { return c }
        if let service {
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        service.multiplyTransposed(pa.baseAddress!, pb.baseAddress!, into: pc.baseAddress!, m: rows, n: outs, k: inner)
                    }
                }
            }
            return c
        }
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    let A = pa.baseAddress!, B = pb.baseAddress!, C = pc.baseAddress!
                    let chunks = rows * outs * inner >= 1 << 20 ? threads : 1
                    let per = ((rows + chunks - 1) / chunks + 1) & ~1
                    DispatchQueue.concurrentPerform(iterations: chunks) { t in
                        let lo = t * per, hi = min(rows, lo + per)
                        if lo < hi { block(A, B, C, rowRange: lo..<hi, outs: outs, inner: inner) }
                    }
                }
            }
        }
        return c
    }

    static func block(_ A: UnsafePointer<Float>, _ B: UnsafePointer<Float>, _ C: UnsafeMutablePointer<Float>,
                      rowRange: Range<Int>, outs: Int, inner: Int) {
        var r = rowRange.lowerBound
        while r < rowRange.upperBound {
            let r1 = min(r + 1, rowRange.upperBound - 1)
            var o = 0
            while o < outs {
                let o1 = min(o + 1, outs - 1)
                let d = kernel(A + r * inner, A + r1 * inner, B + o * inner, B + o1 * inner, inner: inner)
                C[r * outs + o] = d.0
                C[r * outs + o1] = d.1
                C[r1 * outs + o] = d.2
                C[r1 * outs + o1] = d.3
                o += 2
            }
            r += 2
        }
    }

    /// Dot products of rows `a0`, `a1` with rows `b0`, `b1`: (a0·b0, a0·b1, a1·b0, a1·b1).
    /// 2 × 2 blocks of 8-lane accumulators keep everything in registers on plain x86-64 (SSE).
    @inline(__always)
    static func kernel(_ a0: UnsafePointer<Float>, _ a1: UnsafePointer<Float>, _ b0: UnsafePointer<Float>,
                       _ b1: UnsafePointer<Float>, inner: Int) -> (Float, Float, Float, Float) {
        typealias V = SIMD8<Float>
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        var s00 = V(), s01 = V(), s10 = V(), s11 = V()
        var k = 0
        while k + 8 <= inner {
            let x0 = load(a0 + k), x1 = load(a1 + k), w0 = load(b0 + k), w1 = load(b1 + k)
            s00 += x0 * w0
            s01 += x0 * w1
            s10 += x1 * w0
            s11 += x1 * w1
            k += 8
        }
        var d = (s00.sum(), s01.sum(), s10.sum(), s11.sum())
        while k < inner {
            d.0 += a0[k] * b0[k]
            d.1 += a0[k] * b1[k]
            d.2 += a1[k] * b0[k]
            d.3 += a1[k] * b1[k]
            k += 1
        }
        return d
    }
}
