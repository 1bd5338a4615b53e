import KilnCore
import KilnTestKit
import Testing

/// The `fp8` pass's accuracy levers: weights only, `exclude-worst`, and the MSE range search's guard
/// for outlier tokens the captured rows miss.
@Suite struct FP8LeverTests {
    typealias T = PassTest

    @Test func weightsOnlyLeavesActivationsUnscaled() throws {
        let out = try T.run("fp8", try T.llama(), ["activation": "none"])
        for name in T.linears() {
            #expect(out[name]?.dtype == .f8e4m3fn && out[name]?.quant?.inputScale == nil, "\(name)")
        }
        #expect(out.quantization?.algorithm == "FP8")
    }

    @Test func excludeWorstKeepsTheWidestInputRanges() throws {
        let model = try T.llama()
        let service = FakeCalibration()
        let down = T.name(1, "mlp.down_proj.weight")
        service.overrides[down] = [Float](repeating: 11, count: 127) + [5000]  // one massive channel
        let out = try T.run("fp8", model, ["exclude-worst": "1"], service: service)
        #expect(out[down]?.quant == nil && out[down]?.dtype == .f32)
        #expect(out.quantization?.excludedModules == ["model.layers.1.mlp.down_proj", "lm_head"])
        #expect(out[T.name(0, "mlp.down_proj.weight")]?.dtype == .f8e4m3fn)
    }

    @Test func mseSearchKeepsOutliersTheCapturedRowsMiss() throws {
        let model = try T.llama()
        let service = FakeCalibration()
        let down = T.name(0, "mlp.down_proj.weight")
        // The captured rows stay within ±11; one token (not captured) reached 200 in channel 5.
        var maxima = [Float](repeating: 11, count: 128)
        maxima[5] = 200
        service.overrides[down] = maxima
        let out = try T.run("fp8", model, ["activation-calibration": "mse"], service: service)
        let s = try out[down]!.quant!.inputScale!.floats()[0]
        #expect(s >= 0.9 * 200 / 448 && s <= 200 / 448, "the search must not clip the outlier token: \(s * 448)")
    }
    @Test func autoExcludeKeepsTheGroupsThatRaiseTheLossMost() throws {
        let model = try T.llama()
        let probe = FakeLossProbe(sensitive: [T.name(1, "mlp.gate_proj.weight"), T.name(0, "self_attn.o_proj.weight")])
        let out = try T.run("fp8", model, ["auto-exclude": "2", "sensitivity-samples": "3", "calib-samples": "16"], service: probe)
        #expect(out.quantization?.excludedModules == ["model.layers.0.self_attn.o_proj", "model.layers.1.mlp.gate_proj",
                                                     "model.layers.1.mlp.up_proj", "lm_head"])
        let kept: Set = [T.name(0, "self_attn.o_proj.weight"), T.name(1, "mlp.gate_proj.weight"), T.name(1, "mlp.up_proj.weight")]
        for name in T.linears() {
            #expect((out[name]?.dtype == .f8e4m3fn) == !kept.contains(name), "\(name)")
        }
        // One probe on the first 3 calibration sequences; each group measured alone, in FP8 with its input scale.
        #expect(probe.probeRequests.map(\.samples) == [3])
        #expect(probe.calls.count == 8)
        #expect(probe.calls.allSatisfy { call in call.allSatisfy { $0.dtype == .f8e4m3fn && $0.quant?.inputScale != nil } })
        #expect(Set(probe.calls.map { Set($0.map(\.name)) }).count == 8)
    }

    @Test func autoExcludeNeedsAHostThatMeasuresLosses() throws {
        let error = T.error { _ = try T.run("fp8", try T.llama(), ["auto-exclude": "1"]) }
        #expect(error?.description == "fp8 --auto-exclude needs a host that measures losses on calibration text (this calibration service does not)")
        let dynamic = T.error { _ = try T.run("fp8", try T.llama(), ["auto-exclude": "1", "weight-granularity": "per-channel", "activation": "dynamic"]) }
        #expect(dynamic?.description == "fp8 --auto-exclude: the loss probe measures static activation scales; use it with per-tensor weights and static activations")
    }
}

/// A ``LossProbeService`` for pass tests: calibration from ``FakeCalibration``; the loss of a replacement is
/// the baseline plus the squared dequantization error of its weights, 1000× for the `sensitive` ones.
final class FakeLossProbe: LossProbeService, LossProbe {
    let calibration = FakeCalibration()
    let sensitive: Set<String>
    private var model: Model?
    private(set) var probeRequests: [CalibrationRequest] = []
    private(set) var calls: [[Tensor]] = []
    let baseline = 2.0
    let tokens = 100

    init(sensitive: [String]) { self.sensitive = Set(sensitive) }

    func calibrate(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> CalibrationStatistics {
        try calibration.calibrate(model, request: request, progress: progress)
    }

    func lossProbe(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> any LossProbe {
        self.model = model
        probeRequests.append(request)
        return self
    }

    func loss(replacing replacements: [Tensor]) throws -> Double {
        calls.append(replacements)
        var error = 0.0
        for t in replacements {
            let q = try t.quant!.dequantize(t).floats(), w = try model![t.name]!.floats()
            let e = zip(q, w).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
            error += sensitive.contains(t.name) ? 1000 * e : e
        }
        return baseline + error
    }
}
