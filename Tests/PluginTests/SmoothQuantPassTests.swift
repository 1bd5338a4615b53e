import Foundation
import KilnCore
import KilnTestKit
import Testing

/// The `int8-sq` pass loaded through the host: smoothing factors, norm folding, pre-quant scales and
/// INT8 payloads against a scalar reference; the α search against a reference grid; errors verbatim.
@Suite struct SmoothQuantPassTests {
    typealias T = PassTest

    // MARK: - Scalar reference

    /// s_j = clamp(x_j^α / max(w_j, 1e-5)^(1−α), 1e-4, 1e4); 1 for dead channels.
    static func factors(xMax: [Float], weights: [[Float]], cols: Int, alpha: Float) -> [Float] {
        (0..<cols).map { j in
            var w: Float = 0
            for m in weights { for r in 0..<(m.count / cols) { w = max(w, abs(m[r * cols + j])) } }
            w = max(w, 1e-5)
            guard xMax[j] > 1.0 / Float(1 << 31) else { return 1 }
            let s = Float(pow(Double(xMax[j]), Double(alpha)) / pow(Double(w), 1 - Double(alpha)))
            return min(max(s, 1e-4), 1e4)
        }
    }

    /// Per-row INT8: s_c = amax/127, q = clamp(round_half_even(w/s_c)).
    static func int8(_ w: [Float], cols: Int) -> (q: [Int8], s: [Float]) {
        var q: [Int8] = [], s: [Float] = []
        for r in 0..<(w.count / cols) {
            let row = w[(r * cols)..<((r + 1) * cols)]
            let sc = row.map(abs).max()! / 127
            s.append(sc)
            q += row.map { Int8(min(max(($0 / sc).rounded(.toNearestOrEven), -128), 127)) }
        }
        return (q, s)
    }

    static func colMax(_ x: [Float], cols: Int) -> [Float] {
        (0..<cols).map { j in stride(from: j, to: x.count, by: cols).map { abs(x[$0]) }.max()! }
    }

    /// Row-major `a [rows, k] · b [outs, k]ᵀ` in f64.
    static func matmul(_ a: [Float], _ b: [Float], k: Int) -> [Double] {
        let rows = a.count / k, outs = b.count / k
        var c = [Double](repeating: 0, count: rows * outs)
        for r in 0..<rows { for o in 0..<outs {
            var acc = 0.0
            for i in 0..<k { acc += Double(a[r * k + i]) * Double(b[o * k + i]) }
            c[r * outs + o] = acc
        } }
        return c
    }

    // MARK: - Tests

    @Test func smoothingFoldingAndPayloadsMatchTheReference() throws {
        let model = try T.llama()
        let service = FakeCalibration()
        let out = try T.run("int8-sq", model, ["alpha": "0.5"], service: service)
        #expect(service.requests.first?.captureRows == 0 && service.requests.first?.only == T.representatives())
        let topology = try LinearTopology.llama(model)
        for group in topology.groups where group.role != "lm_head" {
            let cols = model[group.weights[0]]!.shape[1]
            let x = FakeCalibration.activations(group.weights[0], rows: 96, cols: cols)
            let xMax = Self.colMax(x, cols: cols)
            let w = try group.weights.map { try model[$0]!.floats() }
            let s = Self.factors(xMax: xMax, weights: w, cols: cols, alpha: 0.5)
            if let norm = group.norm {
                // Folded: norm' = norm / s exactly (f32), no pre-quant scale on the members.
                let folded = try out[norm]!.floats(), original = try model[norm]!.floats()
                #expect(folded == zip(original, s).map { $0 / $1 }, "\(norm)")
            }
            let inputScale = zip(xMax, s).map { $0 / $1 }.max()! / 127
            for (name, values) in zip(group.weights, w) {
                let t = out[name]!, q = try #require(t.quant)
                #expect(t.dtype == .i8 && q.format == .int8 && q.granularity == .perChannel(axis: 0))
                if group.norm == nil {
                    #expect(try q.preQuantScale?.floats() == s.map { 1 / $0 }, "\(name)")
                    #expect(q.preQuantScale?.shape == [cols])
                } else {
                    #expect(q.preQuantScale == nil, "\(name)")
                }
                #expect(try q.inputScale?.floats() == [inputScale] && q.inputScale?.shape == [1])
                let (refQ, refS) = Self.int8(values.enumerated().map { $0.element * s[$0.offset % cols] }, cols: cols)
                #expect(try q.scale.floats() == refS && q.scale.shape == [refS.count])
                #expect(try t.withBytes { Array($0.bindMemory(to: Int8.self)) } == refQ, "\(name)")
            }
        }
        #expect(out.quantization == QuantizationRecord(algorithm: "W8A8_SQ_PER_CHANNEL", excludedModules: ["lm_head"]))
    }

    @Test func smoothingLeavesTheLayerOutputUnchanged() throws {
        // (X / s) · (W · diag(s))ᵀ == X · Wᵀ, with X / s taken from the folded norm (X' = X · norm'/norm).
        let model = try T.llama()
        let out = try T.run("int8-sq", model, ["alpha": "0.8"])
        let norm = T.name(1, "post_attention_layernorm.weight")
        let ratio = zip(try out[norm]!.floats(), try model[norm]!.floats()).map { $0 / $1 }
        let x = FakeCalibration.activations(T.name(1, "mlp.gate_proj.weight"), rows: 16, cols: 64)
        let smoothed = x.enumerated().map { $0.element * ratio[$0.offset % 64] }
        let w = try model[T.name(1, "mlp.up_proj.weight")]!.floats()
        let ws = w.enumerated().map { $0.element / ratio[$0.offset % 64] }
        for (a, b) in zip(Self.matmul(smoothed, ws, k: 64), Self.matmul(x, w, k: 64)) {
            #expect(abs(a - b) <= 1e-5 * max(1, abs(b)))
        }
        // And the quantized layer stays close: |dequant(q)/s − W| within half an INT8 step per element.
        let t = out[T.name(1, "mlp.up_proj.weight")]!, q = t.quant!
        let d = try q.dequantize(t).floats(), scales = try q.scale.floats()
        for i in w.indices {
            let step = scales[i / 64] / (1 / ratio[i % 64])
            #expect(abs(d[i] * ratio[i % 64] - w[i]) <= step * 0.5001 + 1e-6 * abs(w[i]))
        }
    }

    @Test func int8RoundsHalfToEven() throws {
        // o_proj of layer 0 with designed values: s_j = 1 (x_j = w_j at α = 0.5), row amax 15.875 → s_c = 1/8,
        // so w / s_c hits ±0.5, 1.5, 2.5, 3.5 exactly.
        let base = try T.llama()
        let name = T.name(0, "self_attn.o_proj.weight")
        let pattern: [Float] = [0.0625, 0.1875, 0.3125, -0.3125, 0.4375, -0.0625, 15.875, -0.1875]
        let w = (0..<(64 * 64)).map { pattern[$0 % 8] }
        var tensors = base.tensors.filter { $0.name != name }
        tensors.append(Tensor(name: name, dtype: .f32, shape: [64, 64], values: w))
        let model = try Model(tensors: tensors, config: base.config)
        let service = FakeCalibration()
        service.overrides[name] = Self.colMax(w, cols: 64)
        let out = try T.run("int8-sq", model, service: service)
        let t = out[name]!
        #expect(try t.quant!.preQuantScale!.floats().allSatisfy { $0 == 1 })
        #expect(try t.quant!.scale.floats().allSatisfy { $0 == 0.125 })
        let q = try t.withBytes { Array($0.bindMemory(to: Int8.self)) }
        #expect(Array(q[0..<8]) == [0, 2, 2, -2, 4, 0, 127, -2])
    }

    /// The reference α search: MSE of the fake-quantized group output per grid value.
    static func referenceErrors(x: [Float], xMax: [Float], weights: [[Float]], cols: Int) -> [Double] {
        (0...20).map { i in
            let alpha = Float(Double(i) / 20)
            let s = factors(xMax: xMax, weights: weights, cols: cols, alpha: alpha)
            let sx = zip(xMax, s).map { $0 / $1 }.max()! / 127
            let xq = x.enumerated().map { e -> Float in
                min(max((e.element / s[e.offset % cols] / sx).rounded(.toNearestOrEven), -128), 127) * sx
            }
            var sum = 0.0, n = 0
            for w in weights {
                let (q, sc) = int8(w.enumerated().map { $0.element * s[$0.offset % cols] }, cols: cols)
                let wq = q.enumerated().map { Float($0.element) * sc[$0.offset / cols] }
                for (a, b) in zip(matmul(xq, wq, k: cols), matmul(x, w, k: cols)) { sum += (a - b) * (a - b) }
                n += w.count / cols * (x.count / cols)
            }
            return sum / Double(n)
        }
    }

    @Test func alphaAutoPicksTheGridMinimum() throws {
        let model = try T.llama()
        let service = FakeCalibration(rows: 48)
        let out = try T.run("int8-sq", model, ["alpha": "auto", "capture-rows": "48"], service: service)
        #expect(service.requests.first?.captureRows == 48)
        for (layer, role, weights) in [(0, "o", ["self_attn.o_proj"]), (1, "gate_up", ["mlp.gate_proj", "mlp.up_proj"])] {
            let names = weights.map { T.name(layer, $0 + ".weight") }
            let cols = model[names[0]]!.shape[1]
            let x = FakeCalibration.activations(names[0], rows: 48, cols: cols)
            let w = try names.map { try model[$0]!.floats() }
            let errors = Self.referenceErrors(x: x, xMax: Self.colMax(x, cols: cols), weights: w, cols: cols)
            let best = errors.indices.min { errors[$0] < errors[$1] }!
            let runnerUp = errors.indices.filter { $0 != best }.map { errors[$0] }.min()!
            #expect(runnerUp > errors[best] * 1.001, "the constructed example has a clear minimum")
            #expect(best > 0 && best < 20, "an interior minimum: \(errors)")
            let alpha = Float(Double(best) / 20)
            #expect(out.provenance.last?.contains(" \(layer).\(role)=\(alpha)") == true, "\(out.provenance.last ?? "")")
            let s = Self.factors(xMax: Self.colMax(x, cols: cols), weights: w, cols: cols, alpha: alpha)
            if role == "o" {
                #expect(try out[names[0]]!.quant!.preQuantScale!.floats() == s.map { 1 / $0 })
            } else {
                let norm = T.name(layer, "post_attention_layernorm.weight")
                #expect(try out[norm]!.floats() == zip(try model[norm]!.floats(), s).map { $0 / $1 })
            }
        }
    }

    @Test func perTokenActivationsHaveNoStaticScale() throws {
        let out = try T.run("int8-sq", try T.llama(), ["activation": "dynamic"])
        for name in T.linears() { #expect(out[name]!.quant!.inputScale == nil) }
        #expect(out.quantization?.algorithm == "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN")
    }

    @Test func excludedMemberOfAFoldedGroupIsScaledButNotQuantized() throws {
        let model = try T.llama(tied: false)
        let out = try T.run("int8-sq", model, ["exclude": "*layers.0.self_attn.k_proj,nothing.matches"])
        let k = T.name(0, "self_attn.k_proj.weight")
        #expect(out[k]!.quant == nil && out[k]!.dtype == .f32)
        let norm = T.name(0, "input_layernorm.weight")
        let ratio = zip(try model[norm]!.floats(), try out[norm]!.floats()).map { $0 / $1 }   // = s
        let expected = try model[k]!.floats().enumerated().map { $0.element * ratio[$0.offset % 64] }
        for (a, b) in zip(try out[k]!.floats(), expected) { #expect(abs(a - b) <= 1e-6 * max(1, abs(b))) }
        #expect(out.quantization?.excludedModules == ["model.layers.0.self_attn.k_proj", "lm_head"])
        #expect(out["lm_head.weight"]!.quant == nil)
    }

    @Test func errorsAreVerbatim() throws {
        let model = try T.llama()
        let noCalib = T.error { _ = try T.pass("int8-sq").run(model, context: KilnContext(calibration: FakeCalibration())) }
        #expect(noCalib?.kind == .invalidInput && noCalib?.description == "int8-sq needs --calib FILE")
        let noService = T.error { _ = try T.run("int8-sq", model, service: nil) }
        #expect(noService?.description == "int8-sq needs --calib FILE and a host that runs calibration (this one provides no calibration service)")
        let alpha = T.error { _ = try T.run("int8-sq", model, ["alpha": "1.5"]) }
        #expect(alpha?.description == "int8-sq --alpha: expected a number in 0...1 or \"auto\", found \"1.5\"")
        let step = T.error { _ = try T.run("int8-sq", model, ["alpha": "auto", "alpha-step": "0.3"]) }
        #expect(step?.description == "int8-sq --alpha-step: expected a step dividing 1 (0.05, 0.1, 0.125, 0.25, ...), found \"0.3\"")
        let gpt2 = T.error { _ = try T.run("int8-sq", try CheckpointFixture.gpt2()) }
        #expect(gpt2?.message == "int8-sq supports Llama-family models (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM); this model is GPT2LMHeadModel")
    }

    @Test func runsAreByteIdentical() throws {
        let model = try T.llama(tied: false, dtype: .bf16)
        let a = try T.fingerprint(try T.run("int8-sq", model, ["alpha": "auto"], service: FakeCalibration(rows: 32)))
        let b = try T.fingerprint(try T.run("int8-sq", model, ["alpha": "auto"], service: FakeCalibration(rows: 32)))
        #expect(a == b)
    }

    @Test func unfoldedNormsCarryOneSharedPreQuantScalePerGroup() throws {
        let model = try T.llama()
        let out = try T.run("int8-sq", model, ["fold-norms": "false"])
        let norm = T.name(0, "input_layernorm.weight")
        #expect(try ModelDiff.bytes(out[norm]!) == ModelDiff.bytes(model[norm]!))
        let p = try ["q_proj", "k_proj", "v_proj"].map { try out[T.name(0, "self_attn.\($0).weight")]!.quant!.preQuantScale!.floats() }
        #expect(p[0] == p[1] && p[1] == p[2])
        let dir = TemporaryDirectory()
        try CheckpointFixture.write(out, "hf-quant", to: dir.file("hf"))
        let t = try CheckpointFixture.tensors(dir.file("hf/model.safetensors"))
        #expect(t[T.name(0, "self_attn.q_proj.pre_quant_scale")]?.shape == [64])
    }

    @Test func writersTakeTheOutput() throws {
        let out = try T.run("int8-sq", try T.llama())
        let dir = TemporaryDirectory()
        try CheckpointFixture.write(out, "hf-quant", to: dir.file("hf"))
        let t = try CheckpointFixture.tensors(dir.file("hf/model.safetensors"))
        #expect(t[T.name(0, "self_attn.o_proj.pre_quant_scale")]?.shape == [64])
        #expect(t[T.name(0, "self_attn.q_proj.pre_quant_scale")] == nil)
        try CheckpointFixture.write(out, "trtllm", to: dir.file("trt"))
        #expect(FileSystem.exists(dir.file("trt/rank0.safetensors")))
    }
}
