/// A calibration service that runs a decoder-only model one layer at a time and lets the caller replace
/// each layer's weights before that layer's outputs feed the next one.
///
/// Sequential passes (SparseGPT, GPTQ-style) need the statistics of layer L computed with layers < L
/// already changed. With plain ``CalibrationService/calibrate(_:request:progress:)`` that is one full
/// forward pass per layer (O(layers²) layer evaluations); a layerwise service keeps the calibration
/// hidden states between layers and evaluates every layer twice at most, as sparsegpt's `llama.py` does:
/// ```
/// h ← embed(tokens)                                   (all calibration sequences)
/// for L in 0 ..< layers:
///     S_L ← statistics of layer L's linears on input h   (as `request` asks, for `request.only` ∩ layer L)
///     W_L ← update(L, S_L)                             (tensors returned replace layer L's weights)
///     h   ← layer_L(h) with W_L
/// ```
/// The host offers it where the engine supports it; a pass checks with `as? LayerwiseCalibrationService`
/// and falls back to one ``CalibrationService/calibrate(_:request:progress:)`` per layer otherwise.
public protocol LayerwiseCalibrationService: CalibrationService {
    /// Run `model` over the request's data layer by layer, calling `update` once per decoder layer, in
    /// order, with the statistics of that layer's linears (only those in `request.only`, when set; a layer
    /// with none requested may be skipped by the callback returning `[]`).
    ///
    /// - Parameters:
    ///   - update: receives the layer index and its statistics; returns replacement tensors (same names,
    ///     shapes as the model's) for that layer, used for the rest of the run. `[]` keeps the layer as is.
    /// - Throws: what `update` throws (unchanged); `KilnError` for unreadable text, an unsupported
    ///   architecture, or a returned tensor that is not one of the layer's weights.
    /// - Complexity: one evaluation of the model's layers plus one re-evaluation of each changed layer;
    ///   memory: the hidden states of all calibration tokens plus one layer's statistics.
    func calibrateLayerwise(_ model: Model, request: CalibrationRequest, progress: ProgressSink?,
                            update: (_ layer: Int, _ statistics: CalibrationStatistics) throws -> [Tensor]) throws
}
