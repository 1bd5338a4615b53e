/// What a pass asks the engine to observe while running the floating-point model on calibration text.
///
/// Passes live in plugins and cannot link the engine; the host hands them a
/// ``CalibrationService`` on the ``KilnContext`` instead (DESIGN §3).
public struct CalibrationRequest: Sendable, Hashable {
    /// Plain text or jsonl file with the calibration data.
    public var textPath: String
    /// Number of sequences.
    public var samples: Int
    /// Tokens per sequence (BOS included).
    public var sequenceLength: Int
    /// Accumulate XᵀX (f64) per linear input, for SparseGPT / GPTQ-style passes. Memory: in² × 8 bytes per linear.
    public var hessian: Bool
    /// Keep up to this many input rows per linear (for AWQ / SmoothQuant searches); 0 = none.
    public var captureRows: Int
    /// Observe per-channel output absmax too.
    public var outputStatistics: Bool
    /// Observe K and V activations of attention (for KV-cache quantization scales).
    public var kvCache: Bool
    /// Only these linear weights (nil = all).
    public var only: [String]?

    public init(textPath: String, samples: Int = 128, sequenceLength: Int = 512, hessian: Bool = false,
                captureRows: Int = 0, outputStatistics: Bool = false, kvCache: Bool = false, only: [String]? = nil) {
        self.textPath = textPath
        self.samples = samples
        self.sequenceLength = sequenceLength
        self.hessian = hessian
        self.captureRows = captureRows
        self.outputStatistics = outputStatistics
        self.kvCache = kvCache
        self.only = only
    }
}

/// Statistics of one linear layer's input (and optionally output) over the calibration data.
public final class LinearStatistics: @unchecked Sendable {
    /// The weight this linear multiplies by (`model.layers.0.self_attn.q_proj.weight`).
    public let weightName: String
    /// Input width.
    public let inputChannels: Int
    /// max |x_j| per input channel j.
    public var inputAbsMax: [Float]
    /// mean |x_j| per input channel j.
    public var inputMeanAbs: [Float]
    /// max |y_i| per output channel, when requested.
    public var outputAbsMax: [Float]?
    /// Rows (tokens) observed.
    public var tokens: Int
    /// XᵀX accumulated in f64, row-major [in, in], when requested.
    public var hessian: [Double]?
    /// Up to `captureRows` input rows, row-major [rows, in], when requested.
    public var capturedInputs: [Float]?

    public init(weightName: String, inputChannels: Int) {
        self.weightName = weightName
        self.inputChannels = inputChannels
        inputAbsMax = [Float](repeating: 0, count: inputChannels)
        inputMeanAbs = [Float](repeating: 0, count: inputChannels)
        tokens = 0
    }

    /// Largest |x| over all channels: the per-tensor activation amax.
    public var absMax: Float { inputAbsMax.max() ?? 0 }
}

/// Everything one calibration run observed.
public final class CalibrationStatistics: @unchecked Sendable {
    /// By weight name.
    public var linears: [String: LinearStatistics]
    /// Per attention layer prefix (`model.layers.0.self_attn`): max |k| and max |v| (after RoPE for k).
    public var kvAbsMax: [String: (k: Float, v: Float)]
    /// Tokens run through the model.
    public var tokens: Int
    /// Whether these came from the cache instead of forward passes.
    public var fromCache: Bool

    public init(linears: [String: LinearStatistics] = [:], kvAbsMax: [String: (k: Float, v: Float)] = [:], tokens: Int = 0, fromCache: Bool = false) {
        self.linears = linears
        self.kvAbsMax = kvAbsMax
        self.tokens = tokens
        self.fromCache = fromCache
    }
}

/// The engine's calibration, offered to passes by the host.
public protocol CalibrationService: AnyObject {
    /// Run the floating-point `model` over the request's data and return the statistics.
    /// - Throws: `KilnError` for unreadable text, an unsupported architecture, ...
    func calibrate(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> CalibrationStatistics
}

/// Dense f32 matrix products offered to passes by the host (OpenBLAS in the engine), so plugins
/// need not carry their own GEMM. Results are deterministic for a given machine and thread count.
public protocol MatrixService: AnyObject {
    /// `C = A · Bᵀ`, all row-major: A `[m, k]`, B `[n, k]`, C `[m, n]` (overwritten).
    /// - Complexity: O(m · n · k).
    func multiplyTransposed(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into c: UnsafeMutablePointer<Float>,
                            m: Int, n: Int, k: Int)
}
