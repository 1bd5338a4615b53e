#if canImport(Glibc)
import Glibc
#endif
import KilnCore

/// The 2-of-4 choice shared by both methods, and magnitude pruning.
///
/// ```
/// rank_i = #{ j ≠ i : s_j > s_i  or  (s_j = s_i and j < i) }     (NaN scores count as −∞)
/// keep i ⇔ rank_i < 2
/// ```
/// so exactly 2 of every 4 are kept, ties going to the lower index.
enum TwoFour {
    /// Bit t set ⇔ element t of the group is kept.
    @inline(__always)
    static func keepMask(_ s0: Double, _ s1: Double, _ s2: Double, _ s3: Double) -> UInt8 {
        let s = (s0.isNaN ? -.infinity : s0, s1.isNaN ? -.infinity : s1, s2.isNaN ? -.infinity : s2, s3.isNaN ? -.infinity : s3)
        @inline(__always) func beats(_ a: Double, _ ia: Int, _ b: Double, _ ib: Int) -> Int { a > b || (a == b && ia < ib) ? 1 : 0 }
        let r0 = beats(s.1, 1, s.0, 0) + beats(s.2, 2, s.0, 0) + beats(s.3, 3, s.0, 0)
        let r1 = beats(s.0, 0, s.1, 1) + beats(s.2, 2, s.1, 1) + beats(s.3, 3, s.1, 1)
        let r2 = beats(s.0, 0, s.2, 2) + beats(s.1, 1, s.2, 2) + beats(s.3, 3, s.2, 2)
        let r3 = beats(s.0, 0, s.3, 3) + beats(s.1, 1, s.3, 3) + beats(s.2, 2, s.3, 3)
        return (r0 < 2 ? 1 : 0) | (r1 < 2 ? 2 : 0) | (r2 < 2 ? 4 : 0) | (r3 < 2 ? 8 : 0)
    }

    /// Magnitude 2:4 pruning of a `[out, in]` weight: in each group of 4 consecutive elements along the
    /// input dimension keep the 2 largest |w| (ties: lower index), set the other 2 to zero.
    ///
    /// The kept elements are copied byte for byte (any non-packed dtype; ranking in f64, exact for
    /// every float dtype but f64 itself, where it is the value), so `prune(prune(W)) = prune(W)`.
    /// - Throws: `KilnError` naming the tensor for a packed dtype; whatever reading the tensor throws.
    /// - Complexity: O(elements); holds the tensor and an f64 copy.
    static func magnitude(_ t: Tensor) throws -> TensorBuffer {
        guard !t.dtype.isPacked else {
            throw KilnError(.unsupported, path: ["tensor \"\(t.name)\""], "magnitude pruning of packed \(t.dtype) weights is not supported")
        }
        let n = t.elementCount, size = t.dtype.bits / 8
        var v = [Double](repeating: 0, count: n)
        let out = try t.withBytes { bytes -> TensorBuffer in
            if n > 0 {
                try v.withUnsafeMutableBytes { try DType.convert(n, from: t.dtype, bytes.baseAddress!, to: .f64, $0.baseAddress!) }
            }
            return TensorBuffer(copying: UnsafeRawBufferPointer(rebasing: bytes[0..<t.byteCount]))
        }
        var g = 0
        while g + 4 <= n {
            let keep = keepMask(abs(v[g]), abs(v[g + 1]), abs(v[g + 2]), abs(v[g + 3]))
            for e in 0..<4 where keep & (1 << e) == 0 {
                memset(out.pointer + (g + e) * size, 0, size)
            }
            g += 4
        }
        return out
    }

    /// The magnitude-pruned weight, computed when it is read (the pass streams: one tensor in memory).
    static func magnitudePruned(_ t: Tensor) -> Tensor {
        Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: .deferred { try magnitude(t) })
    }
}
