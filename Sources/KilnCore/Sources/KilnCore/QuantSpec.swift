/// How a quantized weight or activation is encoded. A quantized weight is its payload
/// tensor (fp8 / int8 / int4 ...) plus this spec; ``dequantize(_:)`` is the one
/// reference every writer and test uses.
///
/// ```
/// w = (q − z) · s                         s, z broadcast by granularity
/// FP8 per-tensor:    s = amax / 448,  q = fp8e4m3(w / s)
/// INT8 per-channel:  s_c = amax_c / 127,  q = clamp(round_half_even(w / s_c), −128, 127)
/// INT4 block (G):    s_b = amax_b / 7,    q = clamp(round_half_even(w / s_b), −8, 7)
/// pre-quant p:       the layer computes (x ⊙ p) · dequant(q)ᵀ
/// ```
public struct QuantSpec: @unchecked Sendable {
    /// Payload encoding. Raw values are stable identifiers.
    public enum Format: String, Sendable, CaseIterable {
        case fp8e4m3
        case int8
        case uint8
        case int4
        case uint4
        /// Reserved: NVFP4 (e2m1 payload, fp8 block scales).
        case nvfp4

        /// The payload dtype in the IR.
        public var payload: DType {
            switch self {
            case .fp8e4m3: return .f8e4m3fn
            case .int8: return .i8
            case .uint8: return .u8
            case .int4: return .i4
            case .uint4: return .u4
            case .nvfp4: return .fp4e2m1
            }
        }

        /// Largest magnitude the payload represents (448 for e4m3, 127 for int8, 7 for int4).
        public var maxMagnitude: Float {
            switch self {
            case .fp8e4m3: return 448
            case .int8: return 127
            case .uint8: return 255
            case .int4: return 7
            case .uint4: return 15
            case .nvfp4: return 6
            }
        }
    }

    /// Which elements share one scale.
    public enum Granularity: Hashable, Sendable {
        case perTensor
        /// One scale per index of `axis` (e.g. axis 0 = per output channel of a [out, in] weight).
        case perChannel(axis: Int)
        /// One scale per `size` consecutive elements along `axis` (per index of the other axes).
        case perBlock(axis: Int, size: Int)
    }

    /// A structured sparsity pattern the payload obeys.
    public enum Sparsity: String, Sendable {
        /// In every group of 4 consecutive elements along the input (last) dim, at most 2 are non-zero.
        case twoFour = "2:4"
    }

    public var format: Format
    public var granularity: Granularity
    /// Scale tensor (f32 or f16): shape [] or [1] per-tensor, [C] per-channel, blocks: weight shape with `axis` divided by `size`.
    public var scale: Tensor
    /// Optional zero point, same shape as `scale`, payload dtype.
    public var zeroPoint: Tensor?
    /// Optional per-input-channel pre-quantization scale (AWQ / SmoothQuant).
    public var preQuantScale: Tensor?
    /// Optional static activation (input) scale.
    public var inputScale: Tensor?
    public var sparsity: Sparsity?

    public init(
        format: Format, granularity: Granularity, scale: Tensor, zeroPoint: Tensor? = nil,
        preQuantScale: Tensor? = nil, inputScale: Tensor? = nil, sparsity: Sparsity? = nil
    ) {
        self.format = format
        self.granularity = granularity
        self.scale = scale
        self.zeroPoint = zeroPoint
        self.preQuantScale = preQuantScale
        self.inputScale = inputScale
        self.sparsity = sparsity
    }
}
