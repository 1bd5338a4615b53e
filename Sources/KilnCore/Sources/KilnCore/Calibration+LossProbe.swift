/// A calibration service that can also measure how much replacing some weights changes the model's
/// loss on calibration text — the end-to-end sensitivity that passes use to decide which layers to keep
/// in high precision (``LossProbe``).
///
/// ```
/// probe ← lossProbe(model, request)            the request's text: its first `samples` sequences
/// probe.baseline = NLL(model)                  mean next-token loss (nats) of the unchanged model
/// probe.loss(R)  = NLL(model with R)           R: replacement weights, quantized ones fake-quantized
/// ```
/// The host offers it where the engine supports it; a pass checks with `as? LossProbeService`.
public protocol LossProbeService: CalibrationService {
    /// Prepare a probe of `model` on the request's sequences (`textPath`, `samples`, `sequenceLength`;
    /// the other request fields are ignored).
    /// - Throws: `KilnError` for unreadable or too short text, or an architecture the engine cannot run
    ///   layer by layer.
    /// - Complexity: one forward of the probe sequences; memory: their hidden states at every layer input.
    func lossProbe(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> any LossProbe
}

/// The loss of one model on fixed sequences, with and without replaced weights (see ``LossProbeService``).
public protocol LossProbe: AnyObject {
    /// Mean next-token negative log-likelihood (nats) of the unchanged model.
    var baseline: Double { get }
    /// Tokens scored per evaluation.
    var tokens: Int { get }

    /// Mean next-token negative log-likelihood (nats) with `replacements` used instead of the model's
    /// weights of the same names; the model is unchanged afterwards.
    ///
    /// A replacement with a ``QuantSpec`` computes what the quantized layer computes (dequantized weight,
    /// fake-quantized input when it has an `inputScale`). A float replacement of a weight that carries a
    /// ``QuantSpec`` with only an `inputScale` (its scale tensor is ignored) keeps the weight exact and
    /// fake-quantizes the input alone — the activation-only cost.
    /// - Parameter replacements: weights of decoder layers, each with the model's shape.
    /// - Throws: `KilnError(.invalidInput)` for a name that is not a decoder-layer weight or a wrong shape.
    /// - Complexity: one evaluation of the layers from the first one touched to the end, plus the head.
    func loss(replacing replacements: [Tensor]) throws -> Double
}
