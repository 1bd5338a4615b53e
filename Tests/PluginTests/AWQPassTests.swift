import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// The `int4-awq` pass loaded through the host, fed by ``FakeCalibration`` (synthetic activations with
/// outlier channels): never worse than round-to-nearest on the calibration rows, better on outliers,
/// exact norm folding, clipping, W4A8 input scales, bad input verbatim, determinism.
@Suite struct AWQPassTests {
    typealias T = PassTest

    /// Per-input-channel factor the layer applies to its input, relative to the source model: the
    /// QuantSpec pre-quant scale, or (folded) γ_out / γ_in of the norm, or ones.
    static func inputFactor(_ source: Model, _ out: Model, weight: String, norm: String?) throws -> [Float] {
        let t = out[weight]!
        if let p = t.quant?.preQuantScale { return try p.floats() }
        if let norm, let a = try? source[norm]!.floats(), let b = try? out[norm]!.floats(), a != b {
            return zip(b, a).map { $0 / $1 }
        }
        return [Float](repeating: 1, count: t.shape[1])
    }

    /// ‖X·(W_eff − W)ᵀ‖² in f64, W_eff = dequant(q)·diag(factor): the output error on rows X.
    static func outputError(_ x: [Float], source w: [Float], deq: [Float], factor: [Float], cols: Int) -> Double {
        let rows = x.count / cols, outs = w.count / cols
        var d = [Double](repeating: 0, count: w.count)
        for o in 0..<outs { for j in 0..<cols { d[o * cols + j] = Double(deq[o * cols + j]) * Double(factor[j]) - Double(w[o * cols + j]) } }
        var total = 0.0
        for r in 0..<rows {
            for o in 0..<outs {
                var acc = 0.0
                for j in 0..<cols { acc += Double(x[r * cols + j]) * d[o * cols + j] }
                total += acc * acc
            }
        }
        return total
    }

    /// Per topology group (role, error of `out`) on the fake calibration rows.
    static func groupErrors(_ source: Model, _ out: Model, rows: Int, inputs: [String: [Float]] = [:]) throws -> [(String, Double)] {
        try LinearTopology.llama(source).groups.filter { $0.role != "lm_head" }.map { g in
            let cols = source[g.weights[0]]!.shape[1]
            let x = inputs[g.weights[0]] ?? FakeCalibration.activations(g.weights[0], rows: rows, cols: cols)
            var e = 0.0
            for w in g.weights {
                let t = out[w]!
                let deq = try t.quant.map { try $0.dequantize(t).floats() } ?? t.floats()
                e += outputError(x, source: try source[w]!.floats(), deq: deq, factor: try inputFactor(source, out, weight: w, norm: g.norm), cols: cols)
            }
            return (g.weights[0], e)
        }
    }

    // MARK: - Accuracy

    /// Rows the fake calibration draws, the objective (XᵀX of all rows, or kept rows) and the scaling.
    struct Case: Sendable, CustomTestStringConvertible {
        var rows: Int, gram: Bool, scaling: String
        var testDescription: String { "\(rows) rows, \(gram ? "XᵀX" : "kept rows"), \(scaling) scaling" }
        static let all = [40, 96].flatMap { r in [true, false].flatMap { g in ["act", "duo"].map { Case(rows: r, gram: g, scaling: $0) } } }
    }

    @Test(arguments: Case.all)
    func neverWorseThanRoundToNearestAndBetterOnOutliers(_ c: Case) throws {
        let model = try T.llama()
        let rtn = try T.run("int4-rtn", model, ["group-size": "32"], service: nil)
        let awq = try T.run("int4-awq", model, ["group-size": "32", "grid": "10", "scaling": c.scaling, "calib-gram": String(c.gram)],
                            service: FakeCalibration(rows: c.rows))
        let a = try AWQPassTests.groupErrors(model, awq, rows: c.rows), r = try AWQPassTests.groupErrors(model, rtn, rows: c.rows)
        for (x, y) in zip(a, r) { #expect(x.1 <= y.1 * (1 + 1e-5), "\(x.0): AWQ \(x.1) vs RTN \(y.1)") }
        let ratio = a.map(\.1).reduce(0, +) / r.map(\.1).reduce(0, +)
        #expect(ratio < 0.8, "AWQ/RTN output error \(ratio)")
        #expect(awq.quantization == QuantizationRecord(algorithm: "W4A16_AWQ", groupSize: 32, excludedModules: ["lm_head"]))
    }

    @Test func alphaZeroIsRoundToNearest() throws {
        let model = try T.llama()
        let rtn = try T.run("int4-rtn", model, ["group-size": "64"], service: nil)
        let awq = try T.run("int4-awq", model, ["group-size": "64", "grid": "1", "scaling": "act", "clip": "false"])
        for name in T.linears() {
            #expect(try ModelDiff.bytes(awq[name]!) == ModelDiff.bytes(rtn[name]!), "\(name)")
            #expect(try awq[name]!.quant!.scale.floats() == rtn[name]!.quant!.scale.floats())
        }
        #expect(try awq["model.layers.0.input_layernorm.weight"]!.floats() == model["model.layers.0.input_layernorm.weight"]!.floats())
    }

    @Test func foldingIntoNormsIsExact() throws {
        let model = try T.llama()
        let folded = try T.run("int4-awq", model, ["group-size": "32", "grid": "4"])
        let kept = try T.run("int4-awq", model, ["group-size": "32", "grid": "4", "fold-norms": "false"])
        for layer in 0..<2 {
            for (norm, members) in [("input_layernorm", ["q_proj", "k_proj", "v_proj"].map { "self_attn.\($0)" }),
                                    ("post_attention_layernorm", ["mlp.gate_proj", "mlp.up_proj"])] {
                let n = T.name(layer, norm + ".weight")
                let p = try #require(kept[T.name(layer, members[0] + ".weight")]!.quant?.preQuantScale).floats()
                // γ' = γ ⊙ p, bit for bit; the payloads do not depend on where p lives.
                #expect(try folded[n]!.floats() == zip(model[n]!.floats(), p).map { $0 * $1 })
                #expect(try kept[n]!.floats() == model[n]!.floats())
                #expect(p.contains { $0 != 1 } && p.allSatisfy { $0.isFinite && $0 > 0 })
                for m in members {
                    let w = T.name(layer, m + ".weight")
                    #expect(folded[w]!.quant?.preQuantScale == nil)
                    #expect(try kept[w]!.quant!.preQuantScale!.floats() == p)
                    #expect(try ModelDiff.bytes(folded[w]!) == ModelDiff.bytes(kept[w]!))
                    // Before quantization the rescaling is exact: (x ⊙ p)·(W·s)ᵀ = x·Wᵀ.
                    let src = try model[w]!.floats(), cols = 64
                    let x = FakeCalibration.activations(w, rows: 4, cols: cols)
                    for r in 0..<4 { for o in 0..<8 {
                        var a = 0.0, b = 0.0
                        for j in 0..<cols {
                            a += Double(x[r * cols + j] * p[j]) * Double(src[o * cols + j] * (1 / p[j]))
                            b += Double(x[r * cols + j]) * Double(src[o * cols + j])
                        }
                        #expect(abs(a - b) <= 1e-5 * max(1, abs(b)))
                    } }
                }
            }
            for m in ["self_attn.o_proj", "mlp.down_proj"] {
                let q = try #require(folded[T.name(layer, m + ".weight")]!.quant)
                let p = try #require(q.preQuantScale)
                #expect(p.dtype == .f32 && p.shape == [folded[T.name(layer, m + ".weight")]!.shape[1]])
            }
        }
    }

    @Test func clippingLowersTheErrorOnAnOutlierWeight() throws {
        // down_proj rows with one large weight on a channel whose activation is ~0: unclipped, it
        // stretches its block's step and every other weight of the block loses precision.
        let model = try T.llama()
        let name = T.name(0, "mlp.down_proj.weight")
        var w = try model[name]!.floats()
        for o in 0..<64 { w[o * 128 + 5] = 0.25 }  // ≈ 3× the largest other weight (1/√128)
        model.set(Tensor(name: name, dtype: .f32, shape: [64, 128], values: w))
        let service = FakeCalibration(rows: 64), off = FakeCalibration(rows: 64)
        var x = FakeCalibration.activations(name, rows: 64, cols: 128)
        for r in 0..<64 { x[r * 128 + 5] *= 1e-4 }
        service.inputs[name] = x
        off.inputs[name] = x
        // act scaling, grid 1 (α = 0): no scaling, which would otherwise shrink the low-activation channel itself.
        let clipped = try T.run("int4-awq", model, ["group-size": "32", "grid": "1", "scaling": "act"], service: service)
        let plain = try T.run("int4-awq", model, ["group-size": "32", "grid": "1", "scaling": "act", "clip": "false"], service: off)
        let e1 = try AWQPassTests.groupErrors(model, clipped, rows: 64, inputs: [name: x]).first { $0.0 == name }!.1
        let e0 = try AWQPassTests.groupErrors(model, plain, rows: 64, inputs: [name: x]).first { $0.0 == name }!.1
        #expect(e1 < 0.7 * e0, "clipped \(e1) vs unclipped \(e0)")
        #expect(try clipped[name]!.quant!.scale.floats()[0] < plain[name]!.quant!.scale.floats()[0])
    }

    // MARK: - Options and outputs

    @Test func w4a8AddsStaticFP8InputScales() throws {
        let model = try T.llama()
        let service = FakeCalibration()
        let out = try T.run("int4-awq", model, ["group-size": "32", "grid": "4", "w4a8": "true"], service: service)
        #expect(out.quantization?.algorithm == "W4A8_AWQ")
        let request = try #require(service.requests.first)
        #expect(request.hessian && request.captureRows == 0 && request.only == (0..<2).flatMap { l in
            ["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"].map { T.name(l, $0 + ".weight") } })
        let rows = FakeCalibration()
        _ = try T.run("int4-awq", model, ["group-size": "32", "grid": "2", "calib-gram": "false", "calib-rows": "64"], service: rows)
        #expect(rows.requests.first.map { !$0.hessian && $0.captureRows == 64 } == true)
        for g in try LinearTopology.llama(model).groups where g.role != "lm_head" {
            let x = FakeCalibration.activations(g.weights[0], rows: 96, cols: model[g.weights[0]]!.shape[1])
            let cols = model[g.weights[0]]!.shape[1]
            let f = try AWQPassTests.inputFactor(model, out, weight: g.weights[0], norm: g.norm)
            var amax: Float = 0
            for j in 0..<cols { amax = max(amax, (0..<96).map { abs(x[$0 * cols + j]) }.max()! * f[j]) }
            for w in g.weights {
                let s = try #require(out[w]!.quant?.inputScale)
                #expect(s.shape == [] && s.dtype == .f32)
                #expect(abs(try s.floats()[0] - amax / 448) <= 1e-6 * amax / 448, "\(w)")
            }
        }
        #expect(try T.run("int4-awq", model, ["group-size": "32", "grid": "2", "activations": "fp8"]).quantization?.algorithm == "W4A8_AWQ")
    }

    @Test func zeroActivationsGiveNoNaNAndZeroPointWorks() throws {
        let model = try T.llama()
        let service = FakeCalibration()
        service.inputs[T.name(0, "mlp.gate_proj.weight")] = [Float](repeating: 0, count: 96 * 64)
        let out = try T.run("int4-awq", model, ["group-size": "32", "grid": "4", "zero-point": "true"], service: service)
        let n = T.name(0, "post_attention_layernorm.weight")
        #expect(try out[n]!.floats() == model[n]!.floats())  // s ≡ 1: nothing to fold
        for t in out.tensors { if let q = t.quant { #expect(try q.scale.floats().allSatisfy(\.isFinite)) } }
        let gate = out[T.name(0, "mlp.gate_proj.weight")]!
        #expect(gate.dtype == .u4 && gate.quant?.format == .uint4 && gate.quant?.zeroPoint?.shape == [128, 2])
    }

    @Test func excludedMembersStopFoldingAndLmHeadStaysFloat() throws {
        let model = try T.llama(tied: false)
        let out = try T.run("int4-awq", model, ["group-size": "32", "grid": "4", "exclude": "*.q_proj"])
        let n = T.name(0, "input_layernorm.weight")
        #expect(try out[n]!.floats() == model[n]!.floats())
        #expect(out[T.name(0, "self_attn.q_proj.weight")]!.dtype == .f32)
        #expect(out[T.name(0, "self_attn.k_proj.weight")]!.quant?.preQuantScale != nil)
        #expect(out["lm_head.weight"]!.dtype == .f32)
        #expect(out.quantization?.excludedModules == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "lm_head"])
    }

    @Test func badInputIsVerbatim() throws {
        let model = try T.llama()
        #expect(T.error { _ = try T.pass("int4-awq").run(model, context: KilnContext(options: ["group-size": "32", "calib": "c.txt"])) }?.description
            == "pass \"int4-awq\": needs calibration, and the host offers no calibration service")
        #expect(T.error { _ = try T.pass("int4-awq").run(model, context: KilnContext(options: ["group-size": "32"], calibration: FakeCalibration())) }?.description
            == "int4-awq option \"calib\": missing: int4-awq needs calibration text (a .txt or .jsonl file)")
        #expect(T.error { _ = try T.run("int4-awq", model, ["group-size": "32", "grid": "0"]) }?.description
            == "int4-awq option \"grid\": expected an integer in 1...1000, found \"0\"")
        #expect(T.error { _ = try T.run("int4-awq", model, ["group-size": "32", "scaling": "max"]) }?.description
            == "int4-awq option \"scaling\": expected act, duo or both, found \"max\"")
        let service = FakeCalibration()
        var x = FakeCalibration.activations(T.name(1, "self_attn.o_proj.weight"), rows: 96, cols: 64)
        x[70] = .nan
        service.inputs[T.name(1, "self_attn.o_proj.weight")] = x
        #expect(T.error { _ = try T.run("int4-awq", model, ["group-size": "32", "grid": "2"], service: service) }?.description
            == "tensor \"model.layers.1.self_attn.o_proj.weight\" › calibration statistics › channel 6: mean |x| is nan; activations must be finite")
    }

    @Test func deterministicAndPaddedGroups() throws {
        let model = try T.llama()
        let a = try T.run("int4-awq", model, ["group-size": "32", "grid": "4", "scaling": "both"])
        let b = try T.run("int4-awq", model, ["group-size": "32", "grid": "4", "scaling": "both"])
        #expect(try T.fingerprint(a) == T.fingerprint(b))
        let stories = try SyntheticModel.llama()  // down_proj input 172
        let padded = try T.run("int4-awq", stories, ["group-size": "64", "grid": "4", "indivisible": "pad"])
        #expect(padded[T.name(0, "mlp.down_proj.weight")]!.quant?.scale.shape == [64, 3])
        #expect(padded.provenance.last?.hasPrefix("int4-awq: 14 linears in 8 groups to W4A16_AWQ group 64") == true)
    }
}

/// The pass's output goes through the unified HF and TensorRT-LLM writers and reads back to the same
/// dequantized weights (pre-quant scales and folded norms included).
@Suite struct AWQExportTests {
    typealias T = PassTest

    /// Every weight as the layer applies it: dequant(q) ⊙ p (columns), or the float tensor.
    static func effective(_ m: Model) throws -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for t in m.tensors {
            guard let q = t.quant else { out[t.name] = try t.floats(); continue }
            var w = try q.dequantize(t).floats()
            if let p = try q.preQuantScale?.floats() {
                for i in w.indices { w[i] *= p[i % p.count] }
            }
            out[t.name] = w
        }
        return out
    }

    @Test(arguments: ["hf-quant", "trtllm"], [false, true])
    func roundTripsThroughTheWriters(format: String, w4a8: Bool) throws {
        let model = try T.llama()
        let out = try T.run("int4-awq", model, ["group-size": "32", "grid": "4", "w4a8": String(w4a8)])
        let dir = TemporaryDirectory("kiln-awq-export")
        let path = dir.file("out")
        try TestEnvironment.plugins.writer(named: format, for: path).write(out, to: path, context: KilnContext())
        let back = try TestEnvironment.plugins.reader(for: path, named: format).read(path: path, context: KilnContext())
        #expect(back.quantization?.algorithm == (w4a8 ? "W4A8_AWQ" : "W4A16_AWQ"))
        let a = try AWQExportTests.effective(out), b = try AWQExportTests.effective(back)
        for name in T.linears() + ["model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight"] {
            let x = try #require(a[name]), y = try #require(b[name], "\(name) missing after \(format)")
            #expect(x.count == y.count && zip(x, y).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($0)) }, "\(name)")
        }
    }

    /// Partial last groups (indivisible=pad) have no layout in the whole-group formats: the writer says
    /// which tensor, why, and what to do instead, and leaves no output behind.
    @Test(arguments: ["hf-quant", "trtllm"])
    func paddedGroupsAreRefusedWithTheWayOut(format: String) throws {
        let padded = try T.run("int4-rtn", try SyntheticModel.llama(), ["group-size": "64", "indivisible": "pad"])
        let dir = TemporaryDirectory("kiln-awq-pad")
        let path = dir.file("out")
        let message = T.error {
            try TestEnvironment.plugins.writer(named: format, for: path).write(padded, to: path, context: KilnContext())
        }?.description ?? ""
        #expect(message.contains("\"model.layers.0.mlp.down_proj.weight\""), "\(message)")
        #expect(message.contains("dim 1 (172) is not a multiple of the group size 64"), "\(message)")
        #expect(message.contains("indivisible=skip") && message.contains("--to onnx"), "\(message)")
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}

/// A layer-by-layer calibration service over ``FakeCalibration``: the statistics of layer L only, in order.
final class FakeLayerwiseCalibration: LayerwiseCalibrationService {
    let inner = FakeCalibration()
    private(set) var layers: [Int] = []

    func calibrate(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> CalibrationStatistics {
        try inner.calibrate(model, request: request, progress: progress)
    }

    func calibrateLayerwise(_ model: Model, request: CalibrationRequest, progress: ProgressSink?,
                            update: (Int, CalibrationStatistics) throws -> [Tensor]) throws {
        let all = try inner.calibrate(model, request: request, progress: progress)
        for layer in 0..<(try LinearTopology.llama(model).layerCount) {
            let mine = all.linears.filter { $0.key.hasPrefix("model.layers.\(layer).") }
            layers.append(layer)
            #expect(try update(layer, CalibrationStatistics(linears: mine, tokens: all.tokens)).isEmpty)
        }
    }
}

@Suite struct AWQLayerwiseTests {
    @Test func layerByLayerCalibrationGivesTheSameBytes() throws {
        let model = try PassTest.llama()
        let service = FakeLayerwiseCalibration()
        let options = ["group-size": "32", "grid": "4"]
        let a = try PassTest.run("int4-awq", model, options, service: service)
        let b = try PassTest.run("int4-awq", model, options, service: FakeCalibration())
        #expect(service.layers == [0, 1])
        #expect(try PassTest.fingerprint(a) == PassTest.fingerprint(b))
    }
}
