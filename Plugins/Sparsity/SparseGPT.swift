import KilnCore

/// SparseGPT 2:4 pruning of one linear (Frantar & Alistarh 2023, sparsegpt.py `fasterprune` with
/// prunen = 2, prunem = 4), in f64.
///
/// With U the upper Cholesky factor of the damped H⁻¹ (``HessianFactor``) and W `[out, in]`, columns
/// are taken in blocks [i1, i2) of `blockSize`; inside a block, column by column:
/// ```
/// at a group start i (i − i1 ≡ 0 mod 4):  score_j = W[r, j]² / U[j, j]²   for j = i … i+3
///                                          keep the 2 largest scores of each row (ties: lower j)
/// q      = W[r, i] if kept, else 0
/// err_r  = (W[r, i] − q) / U[i, i]
/// W[r, i] = q;   W[r, i+1 ..< i2] −= err_r · U[i, i+1 ..< i2]          (OBS update inside the block)
/// ```
/// and after the block, the lazy batch update of the columns to its right:
/// ```
/// W[:, i2 ..<] −= Err · U[i1 ..< i2, i2 ..<]                         (Err: [out, i2 − i1])
/// ```
/// Rows are independent, so they are split over the cores; each row's arithmetic (and so the result)
/// is the same whatever the split.
enum SparseGPT {
    /// Prune `w` (row-major `[rows, cols]`, f64, in place) to 2:4 along the columns.
    /// - Parameters:
    ///   - cols: a multiple of 4, equal to `factor.n`.
    ///   - blockSize: a positive multiple of 4 (groups never straddle a block).
    /// - Complexity: O(rows · cols² / 2) multiply-adds for the lazy updates, O(rows · cols · blockSize / 2)
    ///   inside the blocks.
    static func prune(_ w: UnsafeMutablePointer<Double>, rows: Int, cols: Int, factor: HessianFactor, blockSize: Int) {
        precondition(cols == factor.n && cols % 4 == 0 && blockSize > 0 && blockSize % 4 == 0, "SparseGPT.prune: bad shape")
        guard rows > 0 else { return }
        for r in 0..<rows { for j in factor.dead { w[r * cols + j] = 0 } }
        let threads = min(Kernels.threads, (rows + 3) / 4)
        let per = ((rows + threads - 1) / threads + 3) / 4 * 4
        factor.u.withUnsafeBufferPointer { ub in
            let u = ub.baseAddress!
            Kernels.parallel(threads, work: rows * cols * cols / 2) { t in
                let lo = t * per, hi = min(rows, lo + per)
                if lo < hi { pruneRows(w, lo..<hi, cols: cols, u: u, blockSize: blockSize) }
            }
        }
    }

    /// The whole algorithm for rows `range` of `w`.
    static func pruneRows(_ w: UnsafeMutablePointer<Double>, _ range: Range<Int>, cols: Int, u: UnsafePointer<Double>, blockSize: Int) {
        let count = range.count
        var errors = [Double](repeating: 0, count: count * blockSize)
        errors.withUnsafeMutableBufferPointer { eb in
            let e = eb.baseAddress!
            var i1 = 0
            while i1 < cols {
                let i2 = min(cols, i1 + blockSize)
                for r in 0..<count {
                    pruneBlock(w + (range.lowerBound + r) * cols, e + r * blockSize, i1: i1, i2: i2, cols: cols, u: u)
                }
                if i2 < cols {
                    Kernels.subtractProduct(w + range.lowerBound * cols + i2, ldc: cols, rows: count, cols: cols - i2,
                                            UnsafePointer(e), lda: blockSize, u + i1 * cols + i2, ldb: cols, k0: 0, k1: i2 - i1, pack: true)
                }
                i1 = i2
            }
        }
    }

    /// Columns i1 ..< i2 of one row `wr`: masks, quantization to 0, OBS updates inside the block; the
    /// errors go to `er[0 ..< i2 − i1]`.
    @inline(__always)
    static func pruneBlock(_ wr: UnsafeMutablePointer<Double>, _ er: UnsafeMutablePointer<Double>,
                           i1: Int, i2: Int, cols: Int, u: UnsafePointer<Double>) {
        var g = i1
        while g < i2 {
            @inline(__always) func score(_ j: Int) -> Double {
                let d = u[j * cols + j]
                return wr[j] * wr[j] / (d * d)
            }
            let keep = TwoFour.keepMask(score(g), score(g + 1), score(g + 2), score(g + 3))
            for t in 0..<4 {
                let i = g + t
                let wi = wr[i]
                let q = keep & (1 << t) != 0 ? wi : 0
                let err = (wi - q) / u[i * cols + i]
                wr[i] = q
                er[i - i1] = err
                if err != 0 { Kernels.axpy(wr + i + 1, err, u + i * cols + i + 1, i2 - i - 1) }
            }
            g += 4
        }
    }

    /// A `[out, in]` float weight pruned by SparseGPT with `factor`, in its own dtype (computed in f64).
    /// - Throws: `KilnError(.invalidInput)` naming the tensor for a non-float dtype, a shape that does not
    ///   match the Hessian, or a non-finite weight.
    static func pruned(_ t: Tensor, factor: HessianFactor, blockSize: Int) throws -> Tensor {
        let at = ["tensor \"\(t.name)\""]
        guard t.dtype.isFloat else {
            throw KilnError(.unsupported, path: at, "SparseGPT needs a floating-point weight; this one is \(t.dtype)")
        }
        guard t.shape.rank == 2, t.shape[1] == factor.n else {
            throw KilnError.mismatch(file: nil, path: at, expected: "[out, \(factor.n)] (the Hessian's width)", found: "\(t.shape)")
        }
        let rows = t.shape[0], n = t.elementCount
        var w = [Double](repeating: 0, count: n)
        try t.withBytes { bytes in
            try w.withUnsafeMutableBytes { out in
                if n > 0 { try DType.convert(n, from: t.dtype, bytes.baseAddress!, to: .f64, out.baseAddress!) }
            }
        }
        if let bad = w.firstIndex(where: { !$0.isFinite }) {
            throw KilnError(.invalidInput, path: at, "element [\(bad / factor.n), \(bad % factor.n)] is \(w[bad]); SparseGPT needs finite weights")
        }
        w.withUnsafeMutableBufferPointer { prune($0.baseAddress!, rows: rows, cols: factor.n, factor: factor, blockSize: blockSize) }
        let out = TensorBuffer(count: t.byteCount, zeroed: false)
        try w.withUnsafeBytes { bytes in
            if n > 0 { try DType.convert(n, from: .f64, bytes.baseAddress!, to: t.dtype, out.pointer) }
        }
        return Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: .owned(out))
    }
}
