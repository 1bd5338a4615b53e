import KilnCore

/// End-to-end sensitivity on calibration text (``LossProbeService``): the hidden states of the unchanged
/// model are kept at every decoder layer's input, so replacing the weights of layer L re-runs layers
/// L … end and the head only.
///
/// ```
/// h_0 ← embed(tokens);  h_{L+1} ← layer_L(h_L)                 kept for L = 0 … layers−1
/// loss(R) = NLL(head(layer_{n−1}(… layer_L(h_L) …)) with R),   L = first layer R touches
/// NLL     = Σ_b Σ_{t < len_b − 1} −log softmax(logits[b, t])[id_{b, t+1}] / tokens     (f64)
/// ```
extension EngineCalibration: LossProbeService {
    /// Progress label of preparing a probe.
    static let probeLabel = "sensitivity baseline"

    public func lossProbe(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> any LossProbe {
        let tokenizer = try Tokenizer.load(path: tokenizerLocation(for: model))
        let data = try CalibrationData.load(path: request.textPath, tokenizer: tokenizer,
                                            samples: request.samples, sequenceLength: request.sequenceLength)
        return try EngineLossProbe(model: model, sequences: data.sequences, batchSize: batchSize, progress: progress)
    }
}

/// The engine's ``LossProbe`` (see ``EngineCalibration``'s `lossProbe`).
final class EngineLossProbe: LossProbe {
    let executor: Executor
    let layers: [DecoderLayer]
    /// Hidden states entering each layer, per batch: `inputs[L][batch]`; `inputs[layers.count]` is the
    /// last layer's output.
    private var inputs: [[HiddenStates]] = []
    /// Layer index of every decoder-layer weight.
    private let layerOf: [String: Int]
    let baseline: Double
    let tokens: Int

    /// - Complexity: one forward of `sequences`; memory: (layers + 1) × tokens × hidden f32 values.
    init(model: Model, sequences: [[Int]], batchSize: Int, progress: ProgressSink?) throws {
        executor = try Executor(model: model)
        layers = try executor.decoderLayers()
        var map: [String: Int] = [:]
        for layer in layers { for w in layer.weights { map[w] = layer.index } }
        layerOf = map
        tokens = sequences.reduce(0) { $0 + max(0, $1.count - 1) }
        var batches: [HiddenStates] = []
        for first in stride(from: 0, to: sequences.count, by: batchSize) {
            batches.append(try executor.embed(Array(sequences[first..<min(first + batchSize, sequences.count)]), before: layers[0]))
        }
        inputs.append(batches)
        for layer in layers {
            for b in batches.indices { try executor.runLayer(layer, hidden: &batches[b]) }
            inputs.append(batches)
            progress?.update(label: EngineCalibration.probeLabel, done: layer.index + 1, total: layers.count)
        }
        var nll = 0.0
        for h in batches { nll += try EngineLossProbe.negativeLogLikelihood(try executor.logits(after: layers.last!, hidden: h), h.sequences) }
        baseline = nll / Double(max(tokens, 1))
    }

    func loss(replacing replacements: [Tensor]) throws -> Double {
        var first = layers.count
        for t in replacements {
            guard let l = layerOf[t.name] else {
                throw KilnError(.invalidInput, path: ["tensor \"\(t.name)\""], "is not a weight of a decoder layer; the loss probe replaces only those")
            }
            first = min(first, l)
        }
        guard first < layers.count else { return baseline }
        let originals = try replacements.map { t -> Tensor in
            guard let original = executor.model[t.name] else { throw KilnError(.invalidInput, path: ["tensor \"\(t.name)\""], "is not a weight of the model") }
            return original
        }
        try executor.replaceWeights(replacements)
        let measured: Result<Double, Error> = Result {
            var nll = 0.0
            for var h in inputs[first] {
                for layer in layers[first...] { try executor.runLayer(layer, hidden: &h) }
                nll += try EngineLossProbe.negativeLogLikelihood(try executor.logits(after: layers.last!, hidden: h), h.sequences)
            }
            return nll / Double(max(tokens, 1))
        }
        // Restored whatever happened: a probe that cannot put the originals back must fail loudly,
        // or every later probe would measure a changed model.
        try executor.replaceWeights(originals)
        return try measured.get()
    }

    /// Σ −log softmax(logits[b, t])[sequence_b[t + 1]] over every position but each sequence's last.
    static func negativeLogLikelihood(_ logits: Logits, _ sequences: [[Int]]) throws -> Double {
        var targets: [(row: Int, id: Int)] = []
        for (b, s) in sequences.enumerated() where s.count > 1 {
            for t in 0..<(s.count - 1) { targets.append((b * logits.seq + t, s[t + 1])) }
        }
        return try Perplexity.negativeLogLikelihood(logits, targets)
    }
}
