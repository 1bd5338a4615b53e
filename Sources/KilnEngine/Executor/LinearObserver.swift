/// What the executor reports for each `kiln.Linear` it runs (calibration hooks build on this).
///
/// The pointers are valid only during the callback; copy what you keep. Rows are
/// `(sequence, position)` pairs; rows of padding (shorter sequences in a batch) are flagged
/// by ``isPadding(row:)`` and should be skipped by statistics.
public struct LinearEvent {
    /// The node name (the Hugging Face module name, e.g. `model.layers.0.self_attn.q_proj`).
    public let node: String
    /// The weight tensor's name.
    public let weight: String
    /// The graph value feeding the node (`model.layers.0.input_layernorm` for q/k/v_proj): equal
    /// names mean the same activations. Compare names, not `input` addresses — activation buffers
    /// are recycled within a forward, so two different values can have the same address.
    public let inputName: String
    /// Number of rows in `input` and `output`.
    public let rows: Int
    /// The activations entering the node, `[rows × inFeatures]` (before any pre-quant scale or
    /// activation fake quantization of a quantized weight).
    public let input: UnsafeBufferPointer<Float>
    /// Columns of `input` (the layer's input width).
    public let inFeatures: Int
    /// The node's result, `[rows × outFeatures]`.
    public let output: UnsafeBufferPointer<Float>
    /// Columns of `output`.
    public let outFeatures: Int
    /// Per row: true for padding.
    let padding: [Bool]

    /// True when `row` is padding, not a real token.
    /// - Parameter row: 0 ..< rows.
    public func isPadding(row: Int) -> Bool { !padding.isEmpty && padding[row] }

    /// Number of rows holding real tokens.
    public var tokenCount: Int { padding.isEmpty ? rows : padding.lazy.filter { !$0 }.count }
}

/// A callback run after every `kiln.Linear` (on the executor's thread, in graph order).
public typealias LinearObserver = (LinearEvent) -> Void

/// Per-input-channel statistics of every linear layer's input: absmax, mean |x| and token count.
///
/// ```
/// absMax[c]  = max over tokens |x[t, c]|
/// meanAbs[c] = Σ_t |x[t, c]| / count      (f64 accumulation)
/// ```
/// Attach with `executor.linearObserver = stats.observer`. Padding rows are skipped.
public final class LinearInputStats: @unchecked Sendable {
    /// The statistics of one layer.
    public struct Channels: Sendable {
        /// Max |x| per input channel.
        public var absMax: [Float]
        /// Σ |x| per input channel.
        public var sumAbs: [Double]
        /// Tokens seen.
        public var count: Int

        /// Mean |x| per input channel (0 before any token).
        public var meanAbs: [Float] { sumAbs.map { count > 0 ? Float($0 / Double(count)) : 0 } }
        /// Max |x| over all channels.
        public var tensorAbsMax: Float { absMax.max() ?? 0 }
    }

    /// Statistics by node name.
    public private(set) var layers: [String: Channels] = [:]

    /// No statistics yet.
    public init() {}

    /// The callback to install as ``Executor/linearObserver``.
    public var observer: LinearObserver { { [unowned self] in self.observe($0) } }

    /// Fold one event into the statistics.
    /// - Complexity: O(rows × inFeatures).
    public func observe(_ event: LinearEvent) {
        let c = event.inFeatures
        var s = layers[event.node] ?? Channels(absMax: Array(repeating: 0, count: c), sumAbs: Array(repeating: 0, count: c), count: 0)
        precondition(s.absMax.count == c, "layer \(event.node) changed width")
        guard let x = event.input.baseAddress else { return }
        var tokens = 0
        s.absMax.withUnsafeMutableBufferPointer { amax in
            s.sumAbs.withUnsafeMutableBufferPointer { sum in
                var r = 0
                while r < event.rows {
                    if !event.isPadding(row: r) {
                        let row = x + r * c
                        var j = 0
                        while j < c {
                            let a = abs(row[j])
                            if a > amax[j] { amax[j] = a }
                            sum[j] += Double(a)
                            j += 1
                        }
                        tokens += 1
                    }
                    r += 1
                }
            }
        }
        s.count += tokens
        layers[event.node] = s
    }
}
