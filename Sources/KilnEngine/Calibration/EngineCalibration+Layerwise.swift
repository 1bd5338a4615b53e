import Foundation
import KilnCore

/// Sequential calibration: the hidden states of all calibration sequences are kept between decoder
/// layers, so a pass that changes layer L (SparseGPT, GPTQ-style) sees layer L + 1's inputs computed
/// with its changes after one evaluation of each layer, plus one more for each changed layer.
///
/// ```
/// h ← embed(tokens)                          groups of `batchSize` sequences, f32 [rows × hidden] each
/// for L in layers:
///     y ← layer_L(h), observed               statistics S_L of L's linears (request.only ∩ L)
///     W ← update(L, S_L)
///     h ← W.isEmpty ? y : layer_L(h) with W   (not observed)
/// ```
/// A layer whose statistics nobody asked for (`request.only` names none of its weights and K/V
/// statistics are off) gets empty statistics and runs once, after `update`; layers after the last
/// one asked for are not run at all. Statistics of a layer equal, bit for bit, those a full
/// ``calibrate(_:request:progress:)`` of the model with the earlier layers' replacements computes.
/// The executor's f32 copies of a layer's weights are dropped once the layer is done.
extension EngineCalibration: LayerwiseCalibrationService {
    /// Progress label, one unit per decoder layer.
    static let layerwiseLabel = "calibrating layer by layer"

    /// Run `model` over the request's data layer by layer (see ``LayerwiseCalibrationService``). Not cached.
    /// - Parameters:
    ///   - update: receives each decoder layer's index, in order, and the statistics of its linears
    ///     (those in `request.only`, when set); returns replacements for some of that layer's weights
    ///     (same names and shapes), used by the rest of the run, or `[]`.
    /// - Throws: what `update` throws, unchanged; `KilnError(.invalidInput)` for unreadable text or a
    ///   returned tensor that is not one of the layer's weights or has another shape;
    ///   `KilnError(.unsupported)` for a graph without recognizable decoder layers.
    /// - Complexity: one evaluation of every layer up to the last one asked for, plus one of each changed
    ///   layer; memory: the hidden states of all calibration tokens twice (input and output of a
    ///   layer), one layer's statistics and one layer's f32 weights.
    public func calibrateLayerwise(_ model: Model, request: CalibrationRequest, progress: ProgressSink?,
                                   update: (_ layer: Int, _ statistics: CalibrationStatistics) throws -> [Tensor]) throws {
        let started = Date()
        let tokenizer = try Tokenizer.load(path: tokenizerLocation(for: model))
        let data = try CalibrationData.load(path: request.textPath, tokenizer: tokenizer,
                                            samples: request.samples, sequenceLength: request.sequenceLength)
        let executor = try Executor(model: model)
        let layers = try executor.decoderLayers()
        let wanted = request.only.map(Set.init)
        func observed(_ layer: DecoderLayer) -> Bool {
            request.kvCache || wanted.map { w in layer.weights.contains(where: w.contains) } ?? true
        }
        // Hidden states are needed up to the input of the last observed layer.
        let lastObserved = layers.lastIndex(where: observed) ?? -1
        var hidden: [HiddenStates] = []
        if lastObserved >= 0 {
            for first in stride(from: 0, to: data.sequences.count, by: batchSize) {
                let batch = Array(data.sequences[first..<min(first + batchSize, data.sequences.count)])
                hidden.append(try executor.embed(batch, before: layers[0]))
            }
            executor.releaseCachedWeights()  // the embedding table's f32 copy
        }
        for layer in layers {
            let propagate = layer.index < lastObserved
            let replacements: [Tensor]
            if layer.index <= lastObserved && observed(layer) {
                let collector = StatisticsCollector(request: request, expectedRows: data.tokenCount)
                executor.linearObserver = { collector.observe($0) }
                defer { executor.linearObserver = nil }
                var outputs: [HiddenStates] = []
                for h in hidden {
                    var out = h
                    collector.startForward()
                    try executor.runLayer(layer, hidden: &out)
                    if propagate { outputs.append(out) }
                }
                executor.linearObserver = nil
                replacements = try update(layer.index, CalibrationStatistics(linears: collector.linears, kvAbsMax: collector.kv,
                                                                             tokens: data.tokenCount))
                try replace(replacements, in: layer, of: executor)
                if propagate {
                    if replacements.isEmpty {
                        hidden = outputs
                    } else {
                        outputs = []
                        for g in hidden.indices { try executor.runLayer(layer, hidden: &hidden[g]) }
                    }
                }
            } else {
                replacements = try update(layer.index, CalibrationStatistics(tokens: data.tokenCount))
                try replace(replacements, in: layer, of: executor)
                if propagate {
                    for g in hidden.indices { try executor.runLayer(layer, hidden: &hidden[g]) }
                }
            }
            if !propagate { hidden = [] }
            executor.releaseCachedWeights(layer.weights)  // done with this layer
            progress?.update(label: EngineCalibration.layerwiseLabel, done: layer.index + 1, total: layers.count)
        }
        lastReport = (nil, false, Date().timeIntervalSince(started))
    }

    /// Check that `tensors` are weights of `layer` with the model's shapes, then use them in `executor`.
    private func replace(_ tensors: [Tensor], in layer: DecoderLayer, of executor: Executor) throws {
        guard !tensors.isEmpty else { return }
        for t in tensors where !layer.weights.contains(t.name) {
            throw KilnError(.invalidInput, path: ["layer \(layer.index)", "tensor \"\(t.name)\""],
                            "is not a weight of this decoder layer (\(layer.prefix)…); update may only replace the layer's own weights")
        }
        do { try executor.replaceWeights(tensors) } catch let e as KilnError {
            throw e.adding(context: "layer \(layer.index)")
        }
    }
}
