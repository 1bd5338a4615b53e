#if canImport(Glibc)
import Glibc
#endif
import Dispatch

/// Dense f64 kernels for SparseGPT and its Hessian factorization. Plugins link only KilnCore (no BLAS),
/// so the hot loop is one register-blocked update
///
/// ```
/// C[r, c] −= Σ_{k0 ≤ k < k1} A[r, k] · B[k, c]        (4 rows × 4 columns per tile)
/// ```
/// with all three matrices row-major: a tile keeps 4 `SIMD4<Double>` accumulators (8 SSE registers),
/// loads one row segment of B per k and broadcasts the 4 scalars of A. Each element of C is summed
/// over k in increasing order whatever the tiling or thread count, so results are deterministic.
enum Kernels {
    /// Worker threads for large jobs: the online cores, at most 8.
    static let threads: Int = max(1, min(8, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))

    /// Run `body(t)` for t in 0..<n, on several threads when `work` (multiply-adds) is large enough to
    /// pay for it.
    static func parallel(_ n: Int, work: Int, _ body: (Int) -> Void) {
        if n <= 1 || work < 1 << 18 {
            for t in 0..<n { body(t) }
        } else {
            DispatchQueue.concurrentPerform(iterations: n, execute: body)
        }
    }

    /// The tile update `C[r, c..<c+4] −= Σ_k A[r, k]·B[k, c..<c+4]` for `rows` (1...4) rows.
    ///
    /// - Parameters:
    ///   - c: first element of the tile in C; rows `ldc` apart.
    ///   - a: `A[r0, 0]` (k is an absolute column index of A); rows `lda` apart.
    ///   - b: `B[0, c]` (k is an absolute row index of B); rows `ldb` apart.
    /// - Complexity: O(rows · 4 · (k1 − k0)).
    @inline(__always)
    static func tile(_ c: UnsafeMutablePointer<Double>, ldc: Int, rows: Int,
                     _ a: UnsafePointer<Double>, lda: Int, _ b: UnsafePointer<Double>, ldb: Int, k0: Int, k1: Int) {
        typealias V = SIMD4<Double>
        let a0 = a, a1 = a + lda * min(1, rows - 1), a2 = a + lda * min(2, rows - 1), a3 = a + lda * min(3, rows - 1)
        var s0 = V(), s1 = V(), s2 = V(), s3 = V()
        let raw = UnsafeRawPointer(b)
        var k = k0
        while k < k1 {
            let v = raw.loadUnaligned(fromByteOffset: k * ldb * 8, as: V.self)
            s0 += V(repeating: a0[k]) * v
            s1 += V(repeating: a1[k]) * v
            s2 += V(repeating: a2[k]) * v
            s3 += V(repeating: a3[k]) * v
            k += 1
        }
        @inline(__always) func store(_ p: UnsafeMutablePointer<Double>, _ s: V) {
            let raw = UnsafeMutableRawPointer(p)
            raw.storeBytes(of: raw.loadUnaligned(as: V.self) - s, as: V.self)
        }
        store(c, s0)
        if rows > 1 { store(c + ldc, s1) }
        if rows > 2 { store(c + 2 * ldc, s2) }
        if rows > 3 { store(c + 3 * ldc, s3) }
    }

    /// `C[r, c] −= Σ_{kStart(c) ≤ k < k1} A[r, k]·B[k, c]` for rows `0..<rows` and columns `0..<cols` of C
    /// (pointers at their element [0, 0]; A and B indexed by absolute k). `kStart(c)` (default `k0`) lets a
    /// caller skip the zero rows of a triangular B: it is evaluated per 4-column tile at the tile's first
    /// column. Columns are handled in panels of `panel` so the slice of B stays in cache while row tiles
    /// stream; with `pack` each panel of B is first copied to a contiguous buffer (B rows far apart in
    /// memory otherwise cost a TLB miss per k).
    /// - Complexity: O(rows · cols · (k1 − k0)), plus O(cols · (k1 − k0)) copies when packing.
    static func subtractProduct(_ c: UnsafeMutablePointer<Double>, ldc: Int, rows: Int, cols: Int,
                                _ a: UnsafePointer<Double>, lda: Int, _ b: UnsafePointer<Double>, ldb: Int,
                                k0: Int, k1: Int, kStart: ((Int) -> Int)? = nil, panel: Int = 64, pack: Bool = false) {
        guard rows > 0, cols > 0, k1 > k0 else { return }
        let depth = k1 - k0
        let buffer = pack ? UnsafeMutablePointer<Double>.allocate(capacity: depth * panel) : nil
        defer { buffer?.deallocate() }
        let ak = a + k0
        var p = 0
        while p < cols {
            let pe = min(cols, p + panel), width = pe - p
            // B[k0 + k, p + j] at bp[k · ldbp + j]
            let bp: UnsafePointer<Double>, ldbp: Int
            if let buffer {
                for k in 0..<depth { (buffer + k * width).update(from: b + (k0 + k) * ldb + p, count: width) }
                bp = UnsafePointer(buffer)
                ldbp = width
            } else {
                bp = b + k0 * ldb + p
                ldbp = ldb
            }
            var r = 0
            while r < rows {
                let rn = min(4, rows - r)
                var col = p
                while col < pe {
                    let ks = max(k0, kStart?(col) ?? k0) - k0
                    if col + 4 <= pe {
                        tile(c + r * ldc + col, ldc: ldc, rows: rn, ak + r * lda, lda: lda, bp + (col - p), ldb: ldbp, k0: ks, k1: depth)
                        col += 4
                    } else {  // column tail (widths that are not multiples of 4)
                        for rr in r..<(r + rn) {
                            var s = 0.0
                            for k in ks..<max(ks, depth) { s += ak[rr * lda + k] * bp[k * ldbp + col - p] }
                            c[rr * ldc + col] -= s
                        }
                        col += 1
                    }
                }
                r += 4
            }
            p = pe
        }
    }

    /// `y[0..<n] −= α · x[0..<n]` (SIMD, then a scalar tail).
    @inline(__always)
    static func axpy(_ y: UnsafeMutablePointer<Double>, _ alpha: Double, _ x: UnsafePointer<Double>, _ n: Int) {
        typealias V = SIMD4<Double>
        let av = V(repeating: alpha)
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        var j = 0
        while j + 4 <= n {
            let v = ry.loadUnaligned(fromByteOffset: j * 8, as: V.self) - av * rx.loadUnaligned(fromByteOffset: j * 8, as: V.self)
            ry.storeBytes(of: v, toByteOffset: j * 8, as: V.self)
            j += 4
        }
        while j < n { y[j] -= alpha * x[j]; j += 1 }
    }

    /// `Σ_{0 ≤ k < n} x[k]·y[k]`, in 4 lane partial sums then the lanes in order, then the tail.
    @inline(__always)
    static func dot(_ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, _ n: Int) -> Double {
        typealias V = SIMD4<Double>
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y)
        var s = V()
        var k = 0
        while k + 4 <= n {
            s += rx.loadUnaligned(fromByteOffset: k * 8, as: V.self) * ry.loadUnaligned(fromByteOffset: k * 8, as: V.self)
            k += 4
        }
        var total = ((s[0] + s[1]) + s[2]) + s[3]
        while k < n { total += x[k] * y[k]; k += 1 }
        return total
    }
}
