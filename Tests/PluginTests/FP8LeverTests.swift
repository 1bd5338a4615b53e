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
}
