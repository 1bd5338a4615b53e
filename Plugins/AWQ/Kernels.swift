#if canImport(Glibc)
import Glibc
#endif
import CKilnAWQKernels
import Dispatch
import KilnCore

/// Dense f32 kernels for the AWQ search. Plugins link only KilnCore (no BLAS), so this is a small
/// register-blocked "A·Bᵀ" kernel: B is packed in panels of 16 rows, element (o, k) of panel p at
/// `p·16·K + k·16 + (o − 16p)`, and a tile of the product stays in registers while k runs over
/// the whole inner dimension: 6×8 per half panel here (12 of the 16 SSE registers of baseline
/// x86-64), 6×16 with AVX2 + FMA in CKilnAWQKernels when the CPU has them (``fma``).
enum Kernels {
    /// Rows of A per register tile.
    static let tileRows = 6
    /// Rows of B per panel.
    static let panelWidth = 16
    /// Whether the AVX2 + FMA kernels run on this CPU (`KILN_AWQ_NO_FMA=1` turns them off).
    static let fma: Bool = kiln_awq_has_fma() != 0 && getenv("KILN_AWQ_NO_FMA") == nil

    /// `n` rounded up to a multiple of `m`.
    @inline(__always)
    static func roundUp(_ n: Int, _ m: Int) -> Int { (n + m - 1) / m * m }

    /// The 6×8 tile `C[i, o] = Σ_{k0 ≤ k < k1} A[i, k]·B[o, k]` for 6 rows of A starting at `a` and the
    /// 8 rows of B starting at `panel` (a half panel: consecutive k are `panelWidth` floats apart).
    @inline(__always)
    static func tile(_ a: UnsafePointer<Float>, lda: Int, _ panel: UnsafePointer<Float>, _ k0: Int, _ k1: Int)
        -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        var c0 = SIMD8<Float>(), c1 = SIMD8<Float>(), c2 = SIMD8<Float>()
        var c3 = SIMD8<Float>(), c4 = SIMD8<Float>(), c5 = SIMD8<Float>()
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda
        let raw = UnsafeRawPointer(panel)
        var k = k0
        while k < k1 {
            let b = raw.loadUnaligned(fromByteOffset: k * 64, as: SIMD8<Float>.self)
            c0 += SIMD8(repeating: a0[k]) * b
            c1 += SIMD8(repeating: a1[k]) * b
            c2 += SIMD8(repeating: a2[k]) * b
            c3 += SIMD8(repeating: a3[k]) * b
            c4 += SIMD8(repeating: a4[k]) * b
            c5 += SIMD8(repeating: a5[k]) * b
            k += 1
        }
        return (c0, c1, c2, c3, c4, c5)
    }

    /// Pack rows `0 ..< rows` of a row-major `[rows, k]` matrix into panels of 16 (the last one zero-padded).
    /// - Complexity: O(rows × k).
    static func packPanels(_ b: UnsafePointer<Float>, rows: Int, k: Int, into out: UnsafeMutablePointer<Float>) {
        let panels = (rows + panelWidth - 1) / panelWidth
        out.initialize(repeating: 0, count: panels * panelWidth * k)
        for o in 0..<rows {
            let dst = out + (o / panelWidth) * panelWidth * k + o % panelWidth
            let src = b + o * k
            for j in 0..<k { dst[j * panelWidth] = src[j] }
        }
    }

    /// `Σ_{i, o} (A·Bᵀ)[i, o]²` for A `[aRows, k]` (aRows a multiple of 6, zero rows allowed) and B in
    /// panels. With `upperTriangular`, row i of A is zero before column i (a Cholesky factor), so each
    /// tile starts at its first row's diagonal: half the work.
    /// - Complexity: O(aRows × panels × 16 × k), halved when triangular.
    static func sumOfSquares(_ a: UnsafePointer<Float>, aRows: Int, k: Int, upperTriangular: Bool,
                             panels: UnsafePointer<Float>, panelRange: Range<Int>) -> Double {
        if fma {
            return kiln_awq_sum_of_squares_fma(a, aRows, k, upperTriangular ? 1 : 0, panels, panelRange.lowerBound, panelRange.upperBound)
        }
        // Keep a block of A rows (≈ 192 KB) hot in L2 while the panels stream through L1.
        let blockRows = max(tileRows, min(aRows, (192 << 10) / max(k * 4, 1) / tileRows * tileRows))
        var total = 0.0
        var r0 = 0
        while r0 < aRows {
            let r1 = min(aRows, r0 + blockRows)
            for p in panelRange {
                for half in 0..<2 {
                    let panel = panels + p * panelWidth * k + half * 8
                    var acc = SIMD8<Float>()
                    var i = r0
                    while i < r1 {
                        let (c0, c1, c2, c3, c4, c5) = tile(a + i * k, lda: k, panel, upperTriangular ? min(i, k) : 0, k)
                        acc += c0 * c0 + c1 * c1 + c2 * c2
                        acc += c3 * c3 + c4 * c4 + c5 * c5
                        i += tileRows
                    }
                    total += Double(acc.sum())
                }
            }
            r0 = r1
        }
        return total
    }

    /// `sumOfSquares` split over both cores by panels, summed in a fixed order (deterministic).
    static func sumOfSquaresParallel(_ a: UnsafePointer<Float>, aRows: Int, k: Int, upperTriangular: Bool,
                                     panels: UnsafePointer<Float>, panelCount: Int, workers: Int = 2) -> Double {
        let chunks = min(workers, max(panelCount, 1))
        guard chunks > 1 else {
            return sumOfSquares(a, aRows: aRows, k: k, upperTriangular: upperTriangular, panels: panels, panelRange: 0..<panelCount)
        }
        var parts = [Double](repeating: 0, count: chunks)
        parts.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = panelCount * c / chunks, hi = panelCount * (c + 1) / chunks
                base[c] = sumOfSquares(a, aRows: aRows, k: k, upperTriangular: upperTriangular, panels: panels, panelRange: lo..<hi)
            }
        }
        return parts.reduce(0, +)
    }

    /// The Gram matrix `G = X_Bᵀ X_B` (f64, row-major `[count, count]`) of columns `start ..< start + count`
    /// of a row-major `[n, cols]` matrix X. Products are f32 tiles over 32 rows, accumulated in f64.
    /// - Complexity: O(n × count²).
    static func gram(_ x: UnsafePointer<Float>, n: Int, cols: Int, start: Int, count: Int) -> [Double] {
        let aRows = roundUp(count, tileRows), panelCount = (count + panelWidth - 1) / panelWidth
        // A = X_Bᵀ ([count, n], zero rows to a multiple of 6); B = the same columns, packed in panels.
        var at = [Float](repeating: 0, count: aRows * n)
        var panels = [Float](repeating: 0, count: panelCount * panelWidth * n)
        for t in 0..<n {
            let row = x + t * cols + start
            for c in 0..<count {
                at[c * n + t] = row[c]
                panels[(c / panelWidth) * panelWidth * n + t * panelWidth + c % panelWidth] = row[c]
            }
        }
        var g = [Double](repeating: 0, count: count * count)
        let chunk = 32
        at.withUnsafeBufferPointer { a in
            panels.withUnsafeBufferPointer { b in
                for i in stride(from: 0, to: aRows, by: tileRows) {
                    for p in 0..<panelCount {
                        for half in 0..<2 where p * panelWidth + half * 8 < count {
                            let first = p * panelWidth + half * 8
                            var k0 = 0
                            while k0 < n {
                                let k1 = min(n, k0 + chunk)
                                let c = tile(a.baseAddress! + i * n, lda: n, b.baseAddress! + p * panelWidth * n + half * 8, k0, k1)
                                withUnsafeBytes(of: c) { raw in
                                    let v = raw.bindMemory(to: Float.self)
                                    for r in 0..<tileRows where i + r < count {
                                        for o in 0..<8 where first + o < count {
                                            g[(i + r) * count + first + o] += Double(v[r * 8 + o])
                                        }
                                    }
                                }
                                k0 = k1
                            }
                        }
                    }
                }
            }
        }
        return g
    }

    /// The upper-triangular R with `RᵀR = G + λI` (f64 Cholesky, row-major `[n, n]`), λ the smallest of
    /// 0, 1e-9, 1e-8 … 1e-3 times the mean diagonal that makes the factorization succeed.
    /// - Returns: nil when even the largest λ fails (G not close to positive semi-definite).
    /// - Complexity: O(n³ / 3) per attempt.
    static func cholesky(_ g: [Double], n: Int) -> [Double]? {
        let meanDiag = max((0..<n).reduce(0.0) { $0 + g[$1 * n + $1] } / Double(max(n, 1)), .leastNormalMagnitude)
        for jitter in [0, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3] {
            var r = g
            let lambda = jitter * meanDiag
            let ok = r.withUnsafeMutableBufferPointer { a in
                fma ? kiln_awq_cholesky_fma(a.baseAddress!, n, lambda) != 0 : choleskyInPlace(a.baseAddress!, n: n, lambda: lambda)
            }
            if ok {
                for i in 0..<n { for j in 0..<i { r[i * n + j] = 0 } }
                return r
            }
        }
        return nil
    }

    /// Right-looking Cholesky of the upper triangle of `a` (`[n, n]`, row-major) in place, λ added to
    /// each pivot. The same loop as `kiln_awq_cholesky_fma`, without FMA.
    /// - Returns: false when a pivot is not positive.
    static func choleskyInPlace(_ a: UnsafeMutablePointer<Double>, n: Int, lambda: Double) -> Bool {
        for k in 0..<n {
            let d = a[k * n + k] + lambda
            guard d > 0, d.isFinite else { return false }
            let root = d.squareRoot()
            a[k * n + k] = root
            let inv = 1 / root
            for j in (k + 1)..<n { a[k * n + j] *= inv }
            // Trailing update of the upper triangle, row by row (contiguous).
            for i in (k + 1)..<n {
                let f = a[k * n + i]
                if f == 0 { continue }
                let dst = a + i * n, src = a + k * n
                for j in i..<n { dst[j] -= f * src[j] }
            }
        }
        return true
    }
}
