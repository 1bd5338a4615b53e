import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// ``EngineCalibration`` as a ``LayerwiseCalibrationService`` and the executor's layer-by-layer run.
///
/// Criterion: exact. A layer run on kept hidden states performs the same kernels on the same
/// rows as a forward, so every statistic (absmax, mean |x|, XᵀX, captured rows, output and K/V
/// absmax) equals, bit for bit, that of ``EngineCalibration/calibrate(_:request:progress:)`` on the
/// model with the replacements of the earlier layers applied.
@Suite struct LayerwiseCalibrationTests {
    static let text = TestEnvironment.shared + "/data/tinystories_valid_calib.txt"

    /// Everything observed; 6 sequences in batches of 4 (a full and a partial batch).
    static func request(only: [String]? = nil) -> CalibrationRequest {
        CalibrationRequest(textPath: text, samples: 6, sequenceLength: 40, hessian: true, captureRows: 24,
                           outputStatistics: true, kvCache: true, only: only)
    }

    /// stories260K's folder (model and tokenizer), once the calibration text is known to be there.
    /// - Throws: cancels the current test when either is absent.
    static func stories() throws -> String {
        let dir = try TestEnvironment.sharedModel("stories260K")
        _ = try TestEnvironment.sharedFile("data/tinystories_valid_calib.txt")
        return dir
    }

    static func calibration(tokenizer: String) -> EngineCalibration {
        EngineCalibration(cacheDirectory: nil, tokenizerPath: tokenizer)
    }

    /// The statistics handed to `update`, by layer.
    static func layerwise(_ model: Model, request: CalibrationRequest, tokenizer: String, progress: ProgressSink? = nil,
                          update: (Int) throws -> [Tensor] = { _ in [] }) throws -> [CalibrationStatistics] {
        var seen: [CalibrationStatistics] = []
        try calibration(tokenizer: tokenizer).calibrateLayerwise(model, request: request, progress: progress) { layer, stats in
            #expect(layer == seen.count)
            seen.append(stats)
            return try update(layer)
        }
        return seen
    }

    /// `model` with `tensors` in place of its own (the model itself is unchanged).
    static func replacing(_ model: Model, _ tensors: [Tensor]) throws -> Model {
        let copy = try Model(tensors: model.tensors, config: model.config)
        for t in tensors { copy.set(t) }
        return copy
    }

    /// `tensor` with every value multiplied by `factor`.
    static func scaled(_ model: Model, _ name: String, by factor: Float) throws -> Tensor {
        let t = model[name]!
        return Tensor(name: name, dtype: .f32, shape: t.shape, values: try t.floats().map { $0 * factor })
    }

    /// Every field of two statistics of one linear is equal (an issue names the fields that differ).
    static func expectEqual(_ a: LinearStatistics?, _ b: LinearStatistics?, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard let a, let b else {
            Issue.record("\(name): missing statistics (layerwise \(a != nil), full \(b != nil))", sourceLocation: sourceLocation)
            return
        }
        let fields: [(String, String?)] = [
            ("tokens", a.tokens == b.tokens ? nil : "\(a.tokens) vs \(b.tokens)"),
            ("inputAbsMax", difference(a.inputAbsMax, b.inputAbsMax)),
            ("inputMeanAbs", difference(a.inputMeanAbs, b.inputMeanAbs)),
            ("outputAbsMax", difference(a.outputAbsMax, b.outputAbsMax)),
            ("hessian", difference(a.hessian, b.hessian)),
            ("capturedInputs", difference(a.capturedInputs, b.capturedInputs)),
        ]
        for case let (field, difference?) in fields {
            Issue.record("\(name): \(field) differs (layerwise vs full): \(difference)", sourceLocation: sourceLocation)
        }
    }

    /// Where two arrays first differ, or nil when equal.
    static func difference<T: Equatable>(_ a: [T]?, _ b: [T]?) -> String? {
        guard a != b else { return nil }
        guard let a, let b, a.count == b.count else { return "\(a?.count ?? 0) vs \(b?.count ?? 0) values" }
        let i = a.indices.first { a[$0] != b[$0] }!
        return "first at [\(i)]: \(a[i]) vs \(b[i])"
    }

    /// Layerwise statistics with no replacements equal one full calibration, for every linear.
    static func expectLayerwiseEqualsFull(_ model: Model, tokenizer: String) throws {
        let request = request()
        let full = try calibration(tokenizer: tokenizer).calibrate(model, request: request, progress: nil)
        let layers = try layerwise(model, request: request, tokenizer: tokenizer)
        #expect(layers.count == (try Executor(model: model).decoderLayers().count))
        var names = Set<String>()
        for (l, stats) in layers.enumerated() {
            #expect(stats.tokens == full.tokens)
            for (name, s) in stats.linears {
                #expect(name.hasPrefix("model.layers.\(l)."))
                names.insert(name)
                expectEqual(s, full.linears[name], name)
            }
            for (prefix, kv) in stats.kvAbsMax {
                #expect(full.kvAbsMax[prefix].map { $0.k == kv.k && $0.v == kv.v } == true, "\(prefix): K/V absmax")
            }
        }
        // Every linear but the head is observed, and by its own layer only.
        #expect(names == Set(full.linears.keys).subtracting(["model.embed_tokens.weight", "lm_head.weight"]))
        #expect(layers.reduce(0) { $0 + $1.kvAbsMax.count } == full.kvAbsMax.count)
    }

    @Test func stories260KStatisticsEqualAFullCalibration() throws {
        let dir = try Self.stories()
        try Self.expectLayerwiseEqualsFull(try EngineFixtures.load(dir), tokenizer: dir)
    }

    @Test func syntheticStatisticsEqualAFullCalibration() throws {
        // The synthetic model's vocabulary (512) is stories260K's: its tokenizer makes the ids.
        let dir = try Self.stories()
        var shape = SyntheticModel.LlamaShape()
        shape.layers = 3
        shape.tiedEmbeddings = false
        try Self.expectLayerwiseEqualsFull(try SyntheticModel.llama(shape), tokenizer: dir)
    }

    /// Replacements returned for layer L feed layers > L: each layer's statistics equal a full
    /// calibration of the model with the replacements of the layers before it.
    @Test func laterLayersSeeTheReplacedWeights() throws {
        let dir = try Self.stories()
        let model = try EngineFixtures.load(dir)
        let request = Self.request()
        let p0 = "model.layers.0.", p2 = "model.layers.2."
        // Layer 0 becomes the identity (all its linears zero); layer 2 is damped.
        let zeroed = try ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                          "mlp.up_proj", "mlp.down_proj"].map { try Self.scaled(model, p0 + $0 + ".weight", by: 0) }
        let damped = try [Self.scaled(model, p2 + "self_attn.o_proj.weight", by: 0.5), Self.scaled(model, p2 + "mlp.up_proj.weight", by: 0.25)]
        let updates = [0: zeroed, 2: damped]
        let layers = try Self.layerwise(model, request: request, tokenizer: dir) { updates[$0] ?? [] }
        #expect(layers.count == 5)
        let dense = try Self.calibration(tokenizer: dir).calibrate(model, request: request, progress: nil)
        var applied: [Tensor] = []
        for (l, stats) in layers.enumerated() {
            let reference = applied.isEmpty ? dense
                : try Self.calibration(tokenizer: dir).calibrate(try Self.replacing(model, applied), request: request, progress: nil)
            for (name, s) in stats.linears { Self.expectEqual(s, reference.linears[name], name) }
            applied += updates[l] ?? []
        }
        // With layer 0 the identity, layer 1's attention input is the embedding's RMSNorm: it changed.
        let q1 = "model.layers.1.self_attn.q_proj.weight"
        #expect(layers[1].linears[q1]!.inputAbsMax != dense.linears[q1]!.inputAbsMax)
        // Layer 0's own statistics were taken before its update.
        Self.expectEqual(layers[0].linears[p0 + "mlp.down_proj.weight"], dense.linears[p0 + "mlp.down_proj.weight"], "layer 0 down_proj")
    }

    /// With `only`, layers asked for nothing get empty statistics (and still see earlier replacements);
    /// layers after the last one asked for are not run.
    @Test func onlyRestrictsTheStatistics() throws {
        let dir = try Self.stories()
        var shape = SyntheticModel.LlamaShape()
        shape.layers = 4
        let model = try SyntheticModel.llama(shape)
        let target = "model.layers.2.mlp.down_proj.weight"
        var request = Self.request(only: [target])
        request.kvCache = false
        let zeroed = try Self.scaled(model, "model.layers.0.mlp.down_proj.weight", by: 0)
        let progress = RecordingProgress()
        let layers = try Self.layerwise(model, request: request, tokenizer: dir, progress: progress) { $0 == 0 ? [zeroed] : [] }
        #expect(layers.map { $0.linears.keys.sorted() } == [[], [], [target], []])
        #expect(layers.allSatisfy { $0.kvAbsMax.isEmpty })
        let reference = try Self.calibration(tokenizer: dir).calibrate(try Self.replacing(model, [zeroed]), request: request, progress: nil)
        Self.expectEqual(layers[2].linears[target], reference.linears[target], target)
        #expect(progress.updates == (1...4).map { ["calibrating layer by layer", "\($0)", "4"] })
    }

    @Test func badReplacementsAreRefused() throws {
        let dir = try Self.stories()
        let model = try SyntheticModel.llama()
        let request = Self.request()
        func error(_ update: @escaping (Int) throws -> [Tensor]) -> String {
            EngineFixtures.errorText { try Self.layerwise(model, request: request, tokenizer: dir, update: update) }
        }
        let other = try Self.scaled(model, "model.layers.1.mlp.up_proj.weight", by: 1)
        #expect(error { $0 == 0 ? [other] : [] }
            == "layer 0 › tensor \"model.layers.1.mlp.up_proj.weight\": is not a weight of this decoder layer (model.layers.0.…); update may only replace the layer's own weights")
        let name = "model.layers.0.mlp.up_proj.weight"
        let wrong = Tensor(name: name, dtype: .f32, shape: [4, 4], values: [Float](repeating: 0, count: 16))
        #expect(error { _ in [wrong] } == "layer 0 › tensor \"\(name)\" › shape: expected [172, 64], found [4, 4]")
        // The callback's own errors come back unchanged.
        struct Stop: Error {}
        #expect(throws: Stop.self) { try Self.layerwise(model, request: request, tokenizer: dir) { _ in throw Stop() } }
    }

    /// The executor's layer run on a ragged batch: the same linear inputs as a forward (padding rows
    /// skipped), and copies of hidden states keep their values.
    @Test func executorLayersMatchAForward() throws {
        var shape = SyntheticModel.LlamaShape()
        shape.layers = 3
        let exec = try Executor(model: try SyntheticModel.llama(shape))
        let layers = try exec.decoderLayers()
        #expect(layers.map(\.prefix) == ["model.layers.0.", "model.layers.1.", "model.layers.2."])
        #expect(layers.map(\.input) == ["model.embed_tokens", "model.layers.0.residual_mlp", "model.layers.1.residual_mlp"])
        #expect(layers[2].output == "model.layers.2.residual_mlp")
        #expect(layers[1].weights == ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                      "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"].map { "model.layers.1.\($0).weight" })

        let ids = [Array(1...9), Array(20...31), [5, 6, 7]]
        let full = LinearInputStats()
        exec.linearObserver = full.observer
        _ = try exec.logits(ids)
        let stepwise = LinearInputStats()
        exec.linearObserver = stepwise.observer
        var h = try exec.embed(ids, before: layers[0])
        #expect(h.rows == 3 * 12 && h.width == 64)
        for layer in layers {
            let before = h
            exec.linearObserver = stepwise.observer
            try exec.runLayer(layer, hidden: &h)
            #expect(before.values != h.values)
            // `before` kept the input; running it again gives the same output.
            exec.linearObserver = nil
            var again = before
            try exec.runLayer(layer, hidden: &again)
            #expect(again.values == h.values)
        }
        for (node, s) in full.layers where node != "lm_head" {
            let t = stepwise.layers[node]
            #expect(t?.absMax == s.absMax && t?.sumAbs == s.sumAbs && t?.count == s.count, "\(node)")
        }
        #expect(Set(stepwise.layers.keys) == Set(full.layers.keys).subtracting(["lm_head"]))
    }

    @Test func replacedWeightsAreUsed() throws {
        let model = try SyntheticModel.llama()
        let exec = try Executor(model: model)
        let ids = [[1, 2, 3, 4, 5]]
        let dense = try exec.logits(ids).values
        let zero = try Self.scaled(model, "model.layers.1.mlp.down_proj.weight", by: 0)
        try exec.replaceWeights([zero])
        let changed = try exec.logits(ids).values
        #expect(changed != dense)
        #expect(changed == (try Executor(model: try Self.replacing(model, [zero])).logits(ids).values))
        #expect(model["model.layers.1.mlp.down_proj.weight"]!.shape == [64, 172])  // the model is untouched
        #expect(EngineFixtures.errorText { try exec.replaceWeights([Tensor(name: "nope", dtype: .f32, shape: [1], values: [Float(0)])]) }
            == "tensor \"nope\": is not a weight of the model; cannot replace it")
    }

    @Test func graphsWithoutCleanLayersAreRefused() throws {
        let model = try SyntheticModel.llama()
        var graph = try Architectures.graph(for: model)
        // A skip connection from layer 0 into layer 1's attention residual.
        let i = graph.nodes.firstIndex { $0.name == "model.layers.1.residual_attn" }!
        graph.nodes[i].inputs[0] = "model.layers.0.residual_attn"
        #expect(EngineFixtures.errorText { try Executor(model: model, graph: graph).decoderLayers() }
            == "graph › node \"model.layers.0.input_layernorm\": layer-by-layer execution: layer 0 hands on 2 values (model.layers.0.residual_attn, model.layers.0.residual_mlp); expected 1")
        // No numbered nodes at all.
        var flat = try Architectures.graph(for: model)
        flat.nodes = flat.nodes.map { n in
            var n = n
            n.name = n.name.replacingOccurrences(of: "layers.", with: "layer_")
            return n
        }
        #expect(EngineFixtures.errorText { try Executor(model: model, graph: flat).decoderLayers() }
            == "graph: layer-by-layer execution: no decoder layers (expected nodes named <stack>.<N>.…, as model.layers.0.self_attn.q_proj)")
    }
}

/// A ``ProgressSink`` that records every update as `[label, done, total]`.
final class RecordingProgress: ProgressSink {
    private(set) var updates: [[String]] = []
    func update(label: String, done: Int, total: Int) { updates.append([label, "\(done)", "\(total)"]) }
}
