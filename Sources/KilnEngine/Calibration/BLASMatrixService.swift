import COpenBLAS
import Dispatch
import KilnCore

/// ``MatrixService`` on OpenBLAS: rows of A split over ``Executor/threads`` workers, each one
/// single-threaded `cblas_sgemm` call on a fixed partition, so results do not depend on timing.
public final class BLASMatrixService: MatrixService {
    public init() {}

    public func multiplyTransposed(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into c: UnsafeMutablePointer<Float>,
                                   m: Int, n: Int, k: Int) {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            c.initialize(repeating: 0, count: m * n)
            return
        }
        openblas_set_num_threads(1)
        let parts = m * n * k >= 1 << 22 ? max(1, min(Executor.threads, m)) : 1
        let per = (m + parts - 1) / parts
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = p * per, hi = min(m, lo + per)
            guard lo < hi else { return }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(hi - lo), Int32(n), Int32(k), 1,
                        a + lo * k, Int32(k), b, Int32(k), 0, c + lo * n, Int32(n))
        }
    }
}
