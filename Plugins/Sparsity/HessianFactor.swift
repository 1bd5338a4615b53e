#if canImport(Glibc)
import Glibc
#endif
import KilnCore

/// The factor SparseGPT prunes with: the upper Cholesky factor of the damped inverse Hessian of one
/// linear's input, in f64.
///
/// ```
/// dead  = { i : H[i,i] = 0 }            H[i,i] ← 1 for i ∈ dead   (their weights are zeroed)
/// λ     = d · mean(diag H)              H ← H + λ·I               (d: the `damp` option)
/// H⁻¹   = Uᵀ U,  U upper triangular with a positive diagonal
/// ```
/// as sparsegpt.py's `fasterprune` (cholesky → cholesky_inverse → cholesky(upper=True)). U is computed
/// without forming H⁻¹: with J the reversal permutation, JHJ = L Lᵀ (Cholesky), so H = V Vᵀ with
/// V = J L J upper triangular, and H⁻¹ = V⁻ᵀ V⁻¹ gives U = V⁻¹ = J L⁻¹ J. Both the Cholesky and the
/// triangular inverse are blocked (64) around ``Kernels/subtractProduct(_:ldc:rows:cols:_:lda:_:ldb:k0:k1:kStart:panel:)``.
struct HessianFactor {
    /// Block size of the factorizations.
    static let block = 64
    /// Damping retries when H + λI is not numerically positive definite (λ × 10 each time).
    static let maxRetries = 6
    /// Smallest accepted Cholesky pivot, relative to the matrix's own diagonal element: below it the
    /// matrix counts as singular (its inverse would be mostly rounding error).
    static let minRelativePivot = 1e-10

    /// Input width.
    let n: Int
    /// U, row-major `[n, n]`, zero below the diagonal.
    let u: [Double]
    /// Input channels whose Hessian diagonal is 0 (no signal): SparseGPT zeroes their weights.
    let dead: [Int]
    /// The relative damping d finally used (larger than asked after a retry).
    let damping: Double

    /// Factor `hessian` (row-major `[n, n]`, symmetric positive semi-definite) with relative damping
    /// `damping`, retrying with 10× the damping while the Cholesky factorization fails.
    /// - Throws: `KilnError(.invalidInput)` naming `tensor` when the Hessian has the wrong size, holds a
    ///   non-finite value, or stays indefinite after ``maxRetries`` retries.
    /// - Complexity: O(n³/3) multiply-adds per attempt (n³/6 Cholesky + n³/6 triangular inverse).
    static func make(_ hessian: [Double], n: Int, damping: Double, tensor: String) throws -> HessianFactor {
        let at = ["tensor \"\(tensor)\"", "Hessian"]
        guard hessian.count == n * n else {
            throw KilnError.mismatch(file: nil, path: at, expected: "\(n)×\(n) = \(n * n) values", found: "\(hessian.count)")
        }
        if !hessian.withUnsafeBufferPointer({ $0.reduce(0, +) }).isFinite, let bad = hessian.firstIndex(where: { !$0.isFinite }) {
            throw KilnError(.invalidInput, path: at, "element [\(bad / n), \(bad % n)] is \(hessian[bad]); calibration activations must be finite")
        }
        var d = damping
        for _ in 0...maxRetries {
            if let f = factor(hessian, n: n, damping: d) { return f }
            d = d == 0 ? 1e-4 : d * 10
        }
        throw KilnError(.invalidInput, path: at, "not positive definite even with damping \(d / 10) (asked \(damping)); the calibration data may be degenerate")
    }

    /// One attempt; nil when H + λI is not numerically positive definite.
    static func factor(_ h: [Double], n: Int, damping: Double) -> HessianFactor? {
        var dead: [Int] = []
        var diagSum = 0.0
        for i in 0..<n {
            let v = h[i * n + i]
            if v == 0 { dead.append(i) }
            diagSum += v == 0 ? 1 : v
        }
        let lambda = damping * diagSum / Double(max(n, 1))
        // a = J (H + λI) J, lower triangle (the upper one is never read).
        var a = [Double](repeating: 0, count: n * n)
        let ok = a.withUnsafeMutableBufferPointer { ab in
            h.withUnsafeBufferPointer { hb in
                let a = ab.baseAddress!, h = hb.baseAddress!
                for r in 0..<n {
                    let i = n - 1 - r, source = h + i * n + (n - 1)
                    for c in 0...r { a[r * n + c] = source[-c] }
                    let diag = h[i * n + i]
                    a[r * n + r] = (diag == 0 ? 1 : diag) + lambda
                }
            }
            return choleskyLower(ab.baseAddress!, n: n)
        }
        guard ok else { return nil }
        let m = a.withUnsafeBufferPointer { invertLower($0.baseAddress!, n: n) }
        // U[i, j] = M[n−1−i, n−1−j] for j ≥ i, zero below; reuse a's storage.
        a.withUnsafeMutableBufferPointer { ub in
            m.withUnsafeBufferPointer { mb in
                let u = ub.baseAddress!, m = mb.baseAddress!
                for i in 0..<n {
                    let source = m + (n - 1 - i) * n + (n - 1)
                    for j in 0..<i { u[i * n + j] = 0 }
                    for j in i..<n { u[i * n + j] = source[-j] }
                }
            }
        }
        return HessianFactor(n: n, u: a, dead: dead, damping: damping)
    }

    /// In-place lower Cholesky factor of the row-major `[n, n]` matrix `a` (lower triangle read,
    /// upper left undefined): blocked right-looking, panel rows and trailing bands over the cores.
    /// - Returns: false when a pivot is not finite or below ``minRelativePivot`` × its diagonal element.
    static func choleskyLower(_ a: UnsafeMutablePointer<Double>, n: Int) -> Bool {
        let nb = block
        let diagonal = (0..<n).map { a[$0 * n + $0] }
        var panel = [Double](repeating: 0, count: nb * n)
        var kb = 0
        while kb < n {
            let ke = min(n, kb + nb), w = ke - kb
            // 1. The diagonal block.
            for j in kb..<ke {
                let d = a[j * n + j] - Kernels.dot(a + j * n + kb, a + j * n + kb, j - kb)
                guard d > 0, d > minRelativePivot * diagonal[j], d.isFinite else { return false }
                let ljj = d.squareRoot()
                a[j * n + j] = ljj
                for i in (j + 1)..<max(j + 1, ke) {
                    a[i * n + j] = (a[i * n + j] - Kernels.dot(a + i * n + kb, a + j * n + kb, j - kb)) / ljj
                }
            }
            guard ke < n else { break }
            let m = n - ke
            // 2. The panel below it: each row solved against the diagonal block.
            let threads = Kernels.threads
            Kernels.parallel(threads, work: m * w * w / 2) { t in
                var i = ke + t
                while i < n {
                    for j in kb..<ke {
                        a[i * n + j] = (a[i * n + j] - Kernels.dot(a + i * n + kb, a + j * n + kb, j - kb)) / a[j * n + j]
                    }
                    i += threads
                }
            }
            // 3. Trailing update of the lower triangle: A[i, j] −= Σ_k L[i, k]·L[j, k], with the panel
            //    transposed (P[k, j] = L[ke + j, kb + k]) so the kernel reads rows of it.
            panel.withUnsafeMutableBufferPointer { pb in
                let p = pb.baseAddress!
                for i in 0..<m { for k in 0..<w { p[k * m + i] = a[(ke + i) * n + kb + k] } }
                let bands = (m + 3) / 4
                Kernels.parallel(threads, work: m * m * w / 2) { t in
                    var band = t
                    while band < bands {
                        let r = band * 4
                        Kernels.subtractProduct(a + (ke + r) * n + ke, ldc: n, rows: min(4, m - r), cols: min(m, r + 4),
                                                a + (ke + r) * n + kb, lda: n, UnsafePointer(p), ldb: m, k0: 0, k1: w)
                        band += threads
                    }
                }
            }
            kb = ke
        }
        return true
    }

    /// The inverse of the lower-triangular row-major `[n, n]` matrix `l` (positive diagonal), lower
    /// triangular, row-major. Row a of M = L⁻¹ is `(e_a − Σ_{k<a} L[a,k]·M[k,:]) / L[a,a]`; rows are
    /// produced in blocks: the part over earlier blocks as one product, the rest row by row.
    /// - Complexity: O(n³/6).
    static func invertLower(_ l: UnsafePointer<Double>, n: Int) -> [Double] {
        var out = [Double](repeating: 0, count: n * n)
        out.withUnsafeMutableBufferPointer { mb in
            let m = mb.baseAddress!
            let nb = block, threads = Kernels.threads
            var a1 = 0
            while a1 < n {
                let a2 = min(n, a1 + nb), rows = a2 - a1
                // M[a, b] = −Σ_{b ≤ k < a1} L[a, k]·M[k, b] for the block's rows, b < a1 (M[k, b] = 0 for k < b).
                let panels = (a1 + nb - 1) / nb
                Kernels.parallel(threads, work: rows * a1 * a1 / 2) { t in
                    var p = t
                    while p < panels {
                        let c0 = p * nb, c1 = min(a1, c0 + nb)
                        Kernels.subtractProduct(m + a1 * n + c0, ldc: n, rows: rows, cols: c1 - c0,
                                                l + a1 * n, lda: n, UnsafePointer(m) + c0, ldb: n,
                                                k0: 0, k1: a1, kStart: { c0 + $0 }, pack: true)
                        p += threads
                    }
                }
                // The block's own rows, in order; columns are independent, so chunks of 16 go to the cores.
                let chunks = (a2 + 15) / 16
                Kernels.parallel(threads, work: a2 * rows * rows / 2) { t in
                    var chunk = t
                    while chunk < chunks {
                        let c0 = chunk * 16, c1 = min(a2, c0 + 16)
                        for a in max(a1, c0)..<a2 {
                            let row = m + a * n
                            for k in max(a1, c0)..<a { Kernels.axpy(row + c0, l[a * n + k], m + k * n + c0, min(c1, k + 1) - c0) }
                            if a < c1 { row[a] += 1 }
                            let inv = 1 / l[a * n + a]
                            for b in c0..<min(c1, a + 1) { row[b] *= inv }
                        }
                        chunk += threads
                    }
                }
                a1 = a2
            }
        }
        return out
    }
}
