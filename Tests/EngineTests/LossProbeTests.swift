import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// ``EngineCalibration`` as a ``LossProbeService``: the loss with replaced weights, re-run from the first
/// replaced layer on kept hidden states, equals the loss of a full forward of the model with those weights.
///
/// Criterion: the reference is a plain forward (``Executor/logits(_:)``) of the replaced model over the same
/// sequences and batches, with −log softmax computed here in f64; agreement to 1e-9 relative (the layer run
/// performs the same kernels on the same rows, only the summation order of the NLL differs).
@Suite struct LossProbeTests {
    typealias L = LayerwiseCalibrationTests

    static func request() -> CalibrationRequest {
        CalibrationRequest(textPath: L.text, samples: 6, sequenceLength: 40)
    }

    /// Mean next-token NLL of `model` over `sequences` (batches of 4, as the engine), in f64.
    static func referenceLoss(_ model: Model, _ sequences: [[Int]]) throws -> Double {
        let exec = try Executor(model: model)
        var nll = 0.0, count = 0
        for first in stride(from: 0, to: sequences.count, by: 4) {
            let batch = Array(sequences[first..<min(first + 4, sequences.count)])
            let logits = try exec.logits(batch)
            for (b, s) in batch.enumerated() {
                for t in 0..<(s.count - 1) {
                    let row = logits.row(b, t).map(Double.init)
                    let m = row.max()!
                    let lse = m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
                    nll += lse - row[s[t + 1]]
                    count += 1
                }
            }
        }
        return nll / Double(count)
    }

    /// An FP8 copy of weight `name` (per-tensor, amax / 448) with a static input scale.
    static func fp8(_ model: Model, _ name: String, inputScale: Float) throws -> Tensor {
        let t = model[name]!
        let values = try t.floats()
        let s = (values.map(abs).max() ?? 1) / 448
        let q = Tensor(name: name + ".fp8", dtype: .f32, shape: t.shape, values: values.map { $0 / s }).converted(to: .f8e4m3fn)
        let spec = QuantSpec(format: .fp8e4m3, granularity: .perTensor, scale: Tensor(name: name + ".scale", dtype: .f32, shape: [1], values: [s]),
                             inputScale: Tensor(name: name + ".input_scale", dtype: .f32, shape: [1], values: [inputScale]))
        return Tensor(name: name, dtype: .f8e4m3fn, shape: t.shape, storage: q.storage, quant: spec)
    }

    @Test func lossWithReplacementsEqualsAFullForwardOfTheReplacedModel() throws {
        let dir = try L.stories()
        let model = try EngineFixtures.load(dir)
        let calibration = L.calibration(tokenizer: dir)
        let probe = try calibration.lossProbe(model, request: Self.request(), progress: nil)
        let sequences = try CalibrationData.load(path: L.text, tokenizer: try Tokenizer.load(path: dir), samples: 6, sequenceLength: 40).sequences
        #expect(probe.tokens == sequences.reduce(0) { $0 + $1.count - 1 })
        let base = try Self.referenceLoss(model, sequences)
        #expect(abs(probe.baseline - base) <= 1e-9 * base, "baseline \(probe.baseline) vs forward \(base)")

        // FP8 weights and a coarse input scale on layer 2's down_proj and layer 3's q_proj.
        let replaced = [try Self.fp8(model, "model.layers.2.mlp.down_proj.weight", inputScale: 0.05),
                        try Self.fp8(model, "model.layers.3.self_attn.q_proj.weight", inputScale: 0.02)]
        let loss = try probe.loss(replacing: replaced)
        let reference = try Self.referenceLoss(try L.replacing(model, replaced), sequences)
        #expect(abs(loss - reference) <= 1e-9 * reference, "probe \(loss) vs forward \(reference)")
        #expect(loss != probe.baseline)

        // The model is restored after each call.
        #expect(try probe.loss(replacing: []) == probe.baseline)
        let last = try Self.fp8(model, "model.layers.4.mlp.up_proj.weight", inputScale: 0.05)
        let alone = try probe.loss(replacing: [last])
        #expect(abs(alone - (try Self.referenceLoss(try L.replacing(model, [last]), sequences))) <= 1e-9 * alone)
    }

    @Test func aFloatWeightWithAnInputScaleQuantizesTheInputOnly() throws {
        let dir = try L.stories()
        let model = try EngineFixtures.load(dir)
        let probe = try L.calibration(tokenizer: dir).lossProbe(model, request: Self.request(), progress: nil)
        let name = "model.layers.1.mlp.down_proj.weight"
        let both = try Self.fp8(model, name, inputScale: 0.05)
        var inputOnly = model[name]!
        inputOnly.quant = both.quant
        var weightOnly = both
        weightOnly.quant?.inputScale = nil
        let a = try probe.loss(replacing: [inputOnly]), w = try probe.loss(replacing: [weightOnly]), aw = try probe.loss(replacing: [both])
        #expect(Set([a, w, aw, probe.baseline]).count == 4, "each side changes the loss differently: \(a) \(w) \(aw) \(probe.baseline)")
    }

    @Test func weightsOutsideTheDecoderLayersAreRefused() throws {
        let dir = try L.stories()
        let model = try EngineFixtures.load(dir)
        let probe = try L.calibration(tokenizer: dir).lossProbe(model, request: Self.request(), progress: nil)
        let embed = model["model.embed_tokens.weight"]!
        #expect(EngineFixtures.errorText { try probe.loss(replacing: [embed]) }
            == "tensor \"model.embed_tokens.weight\": is not a weight of a decoder layer; the loss probe replaces only those")
    }
}
