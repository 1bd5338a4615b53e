import COpenBLAS
import Foundation

/// The executor's numeric kernels over contiguous f32 buffers.
///
/// Loops are `while` loops over unsafe pointers so that debug builds (which `make test`
/// runs) stay tolerable; matmuls go to OpenBLAS `cblas_sgemm`, always single-threaded inside
/// OpenBLAS (the executor splits the work itself), which keeps results independent of
/// scheduling and thread count.
enum Kernels {
    /// `c[m×n] = alpha · a[m×k] · b + beta · c`, row-major; `b` is `[n×k]` when `transB`
    /// (a Hugging Face `[out, in]` weight), else `[k×n]`.
    @inline(__always)
    static func gemm(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int, transB: Bool, beta: Float = 0,
                     c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// `y = x · wᵀ + bias` for `x [rows × k]`, `w [n × k]`, `bias [n]`.
    ///
    /// A large product is cut into tiles (``LinearTiling``), each a single-threaded sgemm, spread
    /// over the threads. OpenBLAS's result bits depend on the shape of each call; the tiles depend
    /// only on the problem's shape, so results are identical for any thread count.
    static func linear(x: UnsafePointer<Float>, rows: Int, k: Int, w: UnsafePointer<Float>, n: Int,
                       bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
        if let bias {
            var r = 0
            while r < rows { (y + r * n).update(from: bias, count: n); r += 1 }
        }
        let beta: Float = bias == nil ? 0 : 1
        let tiling = LinearTiling(rows: rows, n: n, k: k)
        if tiling.count == 1 {
            gemm(m: rows, n: n, k: k, a: x, lda: k, b: w, ldb: k, transB: true, beta: beta, c: y, ldc: n)
            return
        }
        let workers = min(Executor.threads, tiling.count)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var t = worker
            while t < tiling.count {
                let (r0, r1, c0, c1) = tiling.tile(t)
                gemm(m: r1 - r0, n: c1 - c0, k: k, a: x + r0 * k, lda: k, b: w + c0 * k, ldb: k, transB: true, beta: beta,
                     c: y + r0 * n + c0, ldc: n)
                t += workers
            }
        }
    }

    /// Root-mean-square norm of each row: `y = x / sqrt(mean(x²) + eps) · w` (as transformers' LlamaRMSNorm).
    static func rmsNorm(x: UnsafePointer<Float>, rows: Int, cols: Int, weight: UnsafePointer<Float>, eps: Float,
                        y: UnsafeMutablePointer<Float>) {
        var r = 0
        while r < rows {
            let xr = x + r * cols, yr = y + r * cols
            var (s0, s1, s2, s3): (Double, Double, Double, Double) = (0, 0, 0, 0)
            var i = 0
            while i + 4 <= cols {
                let p = xr + i
                let (a, b, c, d) = (Double(p[0]), Double(p[1]), Double(p[2]), Double(p[3]))
                s0 += a * a; s1 += b * b; s2 += c * c; s3 += d * d
                i += 4
            }
            while i < cols { let v = Double(xr[i]); s0 += v * v; i += 1 }
            let sum = (s0 + s1) + (s2 + s3)
            let inv = 1 / (Float(sum / Double(cols)) + eps).squareRoot()
            i = 0
            while i < cols { yr[i] = weight[i] * (xr[i] * inv); i += 1 }
            r += 1
        }
    }

    /// `y[i] = a[i] + b[i % bCount]` (bCount = count for same shape, cols for a broadcast row).
    static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, bCount: Int, count: Int, _ y: UnsafeMutablePointer<Float>) {
        if bCount == count {
            var i = 0
            while i < count { y[i] = a[i] + b[i]; i += 1 }
        } else {
            var base = 0
            while base < count {
                var j = 0
                while j < bCount { y[base + j] = a[base + j] + b[j]; j += 1 }
                base += bCount
            }
        }
    }

    /// `y[i] = a[i] · b[i % bCount]`.
    static func mul(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, bCount: Int, count: Int, _ y: UnsafeMutablePointer<Float>) {
        if bCount == count {
            var i = 0
            while i < count { y[i] = a[i] * b[i]; i += 1 }
        } else {
            var base = 0
            while base < count {
                var j = 0
                while j < bCount { y[base + j] = a[base + j] * b[j]; j += 1 }
                base += bCount
            }
        }
    }

    /// `y = 1 / (1 + exp(−x))`, on both cores for large inputs.
    static func sigmoid(_ x: UnsafePointer<Float>, count: Int, _ y: UnsafeMutablePointer<Float>) {
        parallelRanges(count: count, minimumChunk: 1 << 15) { lo, hi in
            var i = lo
            while i < hi { y[i] = 1 / (1 + Foundation.exp(-x[i])); i += 1 }
        }
    }

    /// In-place softmax of `x[lo..<hi]`; entries outside the range are set to 0.
    @inline(__always)
    static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int, lo: Int, hi: Int) {
        let inv = unnormalizedSoftmax(x, count: count, lo: lo, hi: hi)
        var i = lo
        while i < hi { x[i] *= inv; i += 1 }
    }

    /// `x[i] = exp(x[i] − max)` on `lo..<hi`, 0 elsewhere; returns `1 / Σ exp` (the caller normalizes,
    /// e.g. after multiplying by V, which touches fewer values).
    @inline(__always)
    static func unnormalizedSoftmax(_ x: UnsafeMutablePointer<Float>, count: Int, lo: Int, hi: Int) -> Float {
        // Unrolled by 4 with independent accumulators: short dependency chains even in debug builds.
        var (m0, m1, m2, m3) = (-Float.infinity, -Float.infinity, -Float.infinity, -Float.infinity)
        var i = lo
        while i + 4 <= hi {
            let p = x + i
            if p[0] > m0 { m0 = p[0] }
            if p[1] > m1 { m1 = p[1] }
            if p[2] > m2 { m2 = p[2] }
            if p[3] > m3 { m3 = p[3] }
            i += 4
        }
        while i < hi { if x[i] > m0 { m0 = x[i] }; i += 1 }
        if m1 > m0 { m0 = m1 }
        if m3 > m2 { m2 = m3 }
        let m = m2 > m0 ? m2 : m0
        var (s0, s1, s2, s3): (Float, Float, Float, Float) = (0, 0, 0, 0)
        i = lo
        while i + 4 <= hi {
            let p = x + i
            let e0 = Foundation.exp(p[0] - m), e1 = Foundation.exp(p[1] - m), e2 = Foundation.exp(p[2] - m), e3 = Foundation.exp(p[3] - m)
            p[0] = e0; p[1] = e1; p[2] = e2; p[3] = e3
            s0 += e0; s1 += e1; s2 += e2; s3 += e3
            i += 4
        }
        while i < hi { let e = Foundation.exp(x[i] - m); x[i] = e; s0 += e; i += 1 }
        let sum = (s0 + s1) + (s2 + s3)
        if lo > 0 { memset(x, 0, lo * 4) }
        if hi < count { memset(x + hi, 0, (count - hi) * 4) }
        return 1 / sum
    }

    /// Rotary embedding in place on `rows` rows of `heads × headDim` values (half-split layout).
    /// - Parameters:
    ///   - positions: the position of each row.
    ///   - table: cos/sin for every position in `positions`.
    static func rope(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, positions: UnsafePointer<Int>,
                     table: RopeTable) {
        let half = headDim / 2, cols = heads * headDim
        table.cos.withUnsafeBufferPointer { cosBuf in
            table.sin.withUnsafeBufferPointer { sinBuf in
                var r = 0
                while r < rows {
                    let c = cosBuf.baseAddress! + positions[r] * half, s = sinBuf.baseAddress! + positions[r] * half
                    var h = 0
                    while h < heads {
                        let base = x + r * cols + h * headDim
                        var i = 0
                        while i < half {
                            let x1 = base[i], x2 = base[i + half]
                            base[i] = x1 * c[i] - x2 * s[i]
                            base[i + half] = x2 * c[i] + x1 * s[i]
                            i += 1
                        }
                        h += 1
                    }
                    r += 1
                }
            }
        }
    }

    /// Split `0..<count` into up to `Executor.threads` ranges of at least `minimumChunk` and run them concurrently.
    static func parallelRanges(count: Int, minimumChunk: Int, _ body: (Int, Int) -> Void) {
        let parts = min(Executor.threads, max(1, count / max(minimumChunk, 1)))
        if parts <= 1 { body(0, count); return }
        let step = (count + parts - 1) / parts
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            body(p * step, min(count, (p + 1) * step))
        }
    }
}

/// cos/sin of `inv_freq[i] · pos` for positions `0 ..< positions`, `[positions × headDim/2]`.
final class RopeTable: @unchecked Sendable {
    let inverseFrequencies: [Float]
    private(set) var cos: [Float] = []
    private(set) var sin: [Float] = []
    private(set) var positions = 0

    init(parameters: RopeParameters, headDim: Int) {
        inverseFrequencies = parameters.inverseFrequencies(headDim: headDim)
    }

    /// Extend the table to cover positions `0 ..< count` (doubling, so growth is amortized).
    func reserve(_ count: Int) {
        guard count > positions else { return }
        let target = max(count, positions * 2, 64)
        let half = inverseFrequencies.count
        cos.reserveCapacity(target * half)
        sin.reserveCapacity(target * half)
        for p in positions..<target {
            for f in inverseFrequencies {
                let angle = f * Float(p)  // f32 product, as transformers' inv_freq @ position_ids
                cos.append(Float(Foundation.cos(Double(angle))))
                sin.append(Float(Foundation.sin(Double(angle))))
            }
        }
        positions = target
    }
}

/// How a linear `[rows × k] · [n × k]ᵀ` is cut into sgemm calls: row blocks of at most
/// ``maxRows``, and per block at least 4 equal column tiles in total (balanced on 2 or 4 threads)
/// of at most `max(256, rows per block)` columns, each a multiple of 16.
///
/// ```
/// 1 × 512 tokens:  576 → 4 × 144,  192 → 4 × 48,  1536 → 8 × 192,  49152 → 192 × 256
/// 8 × 511 tokens:  4 row blocks × (576 → 1 × 576, 1536 → 2 × 768, 49152 → 48 × 1024)
/// ```
/// Wider tiles for taller blocks keep the re-packing of the activations (once per column tile)
/// and of the weights (once per row block) in proportion.
struct LinearTiling {
    /// Largest row block.
    static let maxRows = 1024
    /// Below this many multiply-adds one call does it all.
    static let minimumWork = 1 << 18

    let rows: Int
    let n: Int
    let rowBlock: Int
    let rowBlocks: Int
    let width: Int
    let columns: Int

    init(rows: Int, n: Int, k: Int) {
        self.rows = rows
        self.n = n
        guard rows * n * k >= LinearTiling.minimumWork else {
            (rowBlock, rowBlocks, width, columns) = (rows, 1, n, 1)
            return
        }
        rowBlocks = (rows + LinearTiling.maxRows - 1) / LinearTiling.maxRows
        rowBlock = (rows + rowBlocks - 1) / rowBlocks
        let step = max(1, 4 / rowBlocks)  // column tiles per block: a multiple of this
        let maxWidth = max(256, rowBlock)
        var t = step, chosen: Int?
        while n / t >= 16 {
            if n % t == 0, (n / t) % 16 == 0, n / t <= maxWidth { chosen = n / t; break }
            t += step
        }
        width = min(n, chosen ?? maxWidth)
        columns = (n + width - 1) / width
    }

    /// Number of tiles.
    var count: Int { rowBlocks * columns }

    /// Rows `r0..<r1` and columns `c0..<c1` of tile `t`.
    func tile(_ t: Int) -> (Int, Int, Int, Int) {
        let (r, c) = (t / columns, t % columns)
        return (r * rowBlock, min(rows, (r + 1) * rowBlock), c * width, min(n, (c + 1) * width))
    }
}
