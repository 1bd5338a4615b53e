/// Structured (N:M) sparsity of weight tensors: measuring it, and how a model records it.
///
/// 2:4 sparsity (what sparse tensor cores accelerate) means: in every group of 4 consecutive
/// elements along the last (input) dimension of a `[out, in]` weight, at most 2 are non-zero.
///
/// ```
/// groups     = out · in / 4          (groups never straddle a row: in % 4 == 0)
/// conforming = #{ g : #{ j ∈ g : w_j ≠ 0 } ≤ 2 }
/// zeros      = #{ j : w_j = 0 }      (−0 counts as zero; NaN does not)
/// ```
/// A sparsified model keeps its weights dense, with the zeros stored, and says so in its
/// ``QuantizationRecord``: `sparsity: "2:4"`, with `algorithm: "NONE"` while the weights are still
/// floating point (``QuantizationRecord/sparseFloat(_:)``). Quantization passes run afterwards keep
/// the zeros (the quantization of 0 is 0) and carry `sparsity` into their own record
/// (``PassSupport/rebuilt(_:tensors:record:note:)``); the TensorRT-LLM and unified HF writers turn it
/// into their sparsity flags.
public enum StructuredSparsity {
    /// The record's spelling of 2:4 sparsity (``QuantizationRecord/sparsity``, `QuantSpec.Sparsity.twoFour`).
    public static let twoFourPattern = "2:4"

    /// What ``twoFour(_:)`` measured on one tensor.
    public struct Statistics: Sendable, Equatable, CustomStringConvertible {
        /// Groups of 4 consecutive elements along the last dimension.
        public var groups: Int
        /// Groups with at most 2 non-zero elements.
        public var conforming: Int
        /// Elements equal to zero.
        public var zeros: Int
        /// All elements (`4 · groups`).
        public var elements: Int { groups * 4 }
        /// Every group conforms: the tensor obeys 2:4 sparsity.
        public var isTwoFour: Bool { groups > 0 && conforming == groups }
        /// Fraction of elements that are zero, in 0...1 (0 for an empty tensor).
        public var zeroFraction: Double { elements == 0 ? 0 : Double(zeros) / Double(elements) }

        public init(groups: Int = 0, conforming: Int = 0, zeros: Int = 0) {
            self.groups = groups
            self.conforming = conforming
            self.zeros = zeros
        }

        /// `2:4 100.0% of 36864 groups, 50.0% zeros` (one cell of `kiln inspect`).
        public var description: String {
            let pct = groups == 0 ? 0 : Double(conforming) * 100 / Double(groups)
            return "2:4 \(Self.percent(pct))% of \(groups) groups, \(Self.percent(zeroFraction * 100))% zeros"
        }

        /// `x` with one decimal (no Foundation in KilnCore).
        static func percent(_ x: Double) -> String {
            let tenths = Int((x * 10).rounded())
            return "\(tenths / 10).\(tenths % 10)"
        }
    }

    /// Does `tensor` have the shape 2:4 sparsity applies to: rank 2, last dimension a multiple of 4?
    public static func appliesTo(_ tensor: Tensor) -> Bool {
        tensor.shape.rank == 2 && tensor.shape[1] > 0 && tensor.shape[1] % 4 == 0
    }

    /// Measured 2:4 pattern of a `[out, in]` weight. A quantized tensor is measured on its
    /// dequantized values (`(q − z)·s`; a zero point can make a zero payload a non-zero weight).
    ///
    /// - Parameters:
    ///   - tensor: rank 2, last dimension a multiple of 4; any float or integer dtype, or a quantized
    ///     payload with its ``QuantSpec``.
    ///   - chunkBytes: size of the streamed chunks (> 0; any value gives the same result).
    /// - Throws: `KilnError(.invalidInput)` naming the tensor when the shape does not allow groups of 4;
    ///   whatever reading or dequantizing the tensor throws.
    /// - Complexity: O(elements); streams a float tensor in chunks (memory: one chunk), holds a
    ///   quantized one dequantized.
    public static func twoFour(_ tensor: Tensor, chunkBytes: Int = 8 << 20) throws -> Statistics {
        guard tensor.shape.rank == 2 else {
            throw KilnError(.invalidInput, path: ["tensor \"\(tensor.name)\""],
                            "2:4 sparsity applies to [out, in] weights; this tensor has shape \(tensor.shape)")
        }
        guard tensor.shape[1] % 4 == 0 else {
            throw KilnError(.invalidInput, path: ["tensor \"\(tensor.name)\""],
                            "input width \(tensor.shape[1]) is not a multiple of 4: no groups of 4 along the input dimension")
        }
        let source = try tensor.quant.map { try $0.dequantize(tensor) } ?? tensor
        var stats = Statistics()
        var pending: [Float] = []
        var chunk: [Float] = []
        try source.streamBytes(chunkBytes: max(chunkBytes, 8)) { bytes in
            let size = source.dtype.bits / 8
            let n = bytes.count / size
            guard n > 0 else { return }
            if chunk.count < n { chunk = [Float](repeating: 0, count: n) }
            try chunk.withUnsafeMutableBytes { out in
                try DType.convert(n, from: source.dtype, bytes.baseAddress!, to: .f32, out.baseAddress!)
            }
            var start = 0
            if !pending.isEmpty {
                while pending.count < 4 && start < n { pending.append(chunk[start]); start += 1 }
                if pending.count == 4 { count(pending[0], pending[1], pending[2], pending[3], into: &stats); pending = [] }
            }
            chunk.withUnsafeBufferPointer { c in
                var i = start
                while i + 4 <= n {
                    count(c[i], c[i + 1], c[i + 2], c[i + 3], into: &stats)
                    i += 4
                }
                pending += c[i..<n]
            }
        }
        return stats
    }

    @inline(__always)
    static func count(_ a: Float, _ b: Float, _ c: Float, _ d: Float, into stats: inout Statistics) {
        let zeros = (a == 0 ? 1 : 0) + (b == 0 ? 1 : 0) + (c == 0 ? 1 : 0) + (d == 0 ? 1 : 0)
        stats.groups += 1
        stats.zeros += zeros
        if zeros >= 2 { stats.conforming += 1 }
    }
}

extension QuantizationRecord {
    /// The record of a sparsified model whose weights are still floating point:
    /// `algorithm "NONE"` (as the TensorRT-LLM and HF readers spell "no quantization"), `sparsity` = `pattern`.
    public static func sparseFloat(_ pattern: String = StructuredSparsity.twoFourPattern) -> QuantizationRecord {
        QuantizationRecord(algorithm: "NONE", sparsity: pattern)
    }

    /// True when the record quantizes nothing (algorithm `NONE`, no KV-cache quantization): the weights
    /// are floating point, possibly sparse. Quantization passes accept such a model without `--force`.
    public var quantizesNothing: Bool {
        algorithm == "NONE" && kvCacheAlgorithm == nil
    }
}
