import Foundation

/// Kernels of the GPT-2 and BERT layers: LayerNorm, gelu, tanh.
extension Kernels {
    /// LayerNorm of each row (as torch.nn.LayerNorm, biased variance, f64 sums):
    /// ```
    /// y = (x − mean(x)) / sqrt(var(x) + eps) · w + b
    /// ```
    /// - Parameters: bias: `cols` values or nil (no bias).
    static func layerNorm(x: UnsafePointer<Float>, rows: Int, cols: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                          eps: Float, y: UnsafeMutablePointer<Float>) {
        parallelRanges(count: rows, minimumChunk: 16) { lo, hi in
            var r = lo
            while r < hi {
                let xr = x + r * cols, yr = y + r * cols
                var sum: Double = 0
                var i = 0
                while i < cols { sum += Double(xr[i]); i += 1 }
                let mean = sum / Double(cols)
                var squares: Double = 0
                i = 0
                while i < cols { let d = Double(xr[i]) - mean; squares += d * d; i += 1 }
                let inv = 1 / (Float(squares / Double(cols)) + eps).squareRoot()
                let m = Float(mean)
                i = 0
                if let bias {
                    while i < cols { yr[i] = (xr[i] - m) * inv * weight[i] + bias[i]; i += 1 }
                } else {
                    while i < cols { yr[i] = (xr[i] - m) * inv * weight[i]; i += 1 }
                }
                r += 1
            }
        }
    }

    /// gelu in place, exact or with transformers' tanh approximation (gelu_new):
    /// ```
    /// exact: 0.5 · x · (1 + erf(x / √2))
    /// tanh:  0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
    /// ```
    static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int, tanh: Bool) {
        let c: Float = (2 / Float.pi).squareRoot(), invSqrt2: Float = 1 / Float(2).squareRoot()
        parallelRanges(count: count, minimumChunk: 1 << 15) { lo, hi in
            var i = lo
            if tanh {
                while i < hi { let v = x[i]; x[i] = 0.5 * v * (1 + Foundation.tanh(c * (v + 0.044715 * v * v * v))); i += 1 }
            } else {
                while i < hi { let v = x[i]; x[i] = 0.5 * v * (1 + Foundation.erf(v * invSqrt2)); i += 1 }
            }
        }
    }

    /// tanh in place.
    static func tanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        parallelRanges(count: count, minimumChunk: 1 << 15) { lo, hi in
            var i = lo
            while i < hi { x[i] = Foundation.tanh(x[i]); i += 1 }
        }
    }
}
