import KilnCore
import KilnTestKit
import Testing

/// The `fp8` pass loaded through the host: payloads and scales bit for bit against a scalar reference,
/// dequantization error bounds, exclusions, KV-cache scales, activation-range methods, errors verbatim.
@Suite struct FP8PassTests {
    typealias T = PassTest

    /// Scalar reference: `e4m3_saturating(round_src(w / s))`, s = amax / 448.
    static func reference(_ w: [Float], source: DType) -> (q: [UInt8], s: Float) {
        let amax = w.map(abs).max()!
        let s = amax / 448
        let q = w.map { v -> UInt8 in
            var x = v / s
            if source == .bf16 { x = FloatBits.f32(fromBF16: FloatBits.bf16(fromF32: x)) }
            return FloatBits.f8e4m3fnSaturating(fromF32: x)
        }
        return (q, s)
    }

    @Test func loadsThroughTheHost() throws {
        let p = try T.pass("fp8")
        #expect(p.kind == .pass)
        #expect(p.capabilities.contains("--calib") && p.capabilities.contains("--kv-cache") && p.capabilities.contains("kv-cache-fp8"))
    }

    @Test(arguments: [DType.f32, .bf16])
    func payloadAndScalesAreBitExact(_ dtype: DType) throws {
        let model = try T.llama(dtype: dtype)
        let service = FakeCalibration()
        let out = try T.run("fp8", model, service: service)
        let request = try #require(service.requests.first)
        #expect(request.textPath == "calib.txt" && request.samples == 128 && request.sequenceLength == 512)
        #expect(request.captureRows == 0 && !request.kvCache)
        #expect(request.only == T.representatives())
        for name in T.linears() {
            let t = try #require(out[name])
            let q = try #require(t.quant)
            #expect(t.dtype == .f8e4m3fn && t.shape == model[name]!.shape)
            #expect(q.format == .fp8e4m3 && q.granularity == .perTensor && q.preQuantScale == nil)
            #expect(q.scale.dtype == .f32 && q.scale.shape == [1])
            let (ref, s) = Self.reference(try model[name]!.floats(), source: dtype)
            #expect(try q.scale.floats() == [s])
            #expect(try ModelDiff.bytes(t) == ref, "\(name)")
            // Static input scale = amax of the (shared) input / 448.
            let input = try #require(q.inputScale)
            #expect(input.dtype == .f32 && input.shape == [1])
            let group = try LinearTopology.llama(model).group(of: name)!
            let x = FakeCalibration.activations(group.weights[0], rows: 96, cols: t.shape[1])
            #expect(try input.floats() == [x.map(abs).max()! / 448])
        }
        #expect(out.quantization == QuantizationRecord(algorithm: "FP8", excludedModules: ["lm_head"]))
        #expect(out["model.embed_tokens.weight"]?.quant == nil, "the tied lm_head (the embedding) stays float")
        #expect(out["model.layers.0.input_layernorm.weight"]?.dtype == dtype)
    }

    @Test func bf16DivisionOrderMatters() throws {
        // The double rounding (bf16, then e4m3) differs from one f32 → e4m3 rounding on some elements;
        // the pass must produce the double-rounded bytes (checked above), so show the difference exists.
        let model = try T.llama(dtype: .bf16)
        var differing = 0, total = 0
        for name in T.linears() {
            let w = try model[name]!.floats()
            let (q, s) = Self.reference(w, source: .bf16)
            differing += zip(w, q).filter { FloatBits.f8e4m3fnSaturating(fromF32: $0 / s) != $1 }.count
            total += w.count
        }
        #expect(differing > 0 && differing < total / 20, "\(differing) of \(total)")
    }

    @Test func dequantizationErrorIsBounded() throws {
        let model = try T.llama()
        let out = try T.run("fp8", model)
        for name in T.linears() {
            let t = out[name]!, q = t.quant!
            let s = try q.scale.floats()[0]
            let w = try model[name]!.floats(), d = try q.dequantize(t).floats()
            for (a, b) in zip(w, d) {
                // e4m3: 3 mantissa bits → relative 2^-4 for normals; subnormal step s·2^-9 → half of it.
                #expect(abs(a - b) <= max(abs(a) * 0x1p-4, s * 0x1p-10) * 1.000001, "\(name): \(a) → \(b)")
            }
        }
    }

    @Test func lmHeadAndExcludePatternsStayInHighPrecision() throws {
        let model = try T.llama(tied: false)
        let out = try T.run("fp8", model, ["exclude": "*.mlp.down_proj, model.layers.1.self_attn.k_proj"])
        #expect(out["lm_head.weight"]?.quant == nil && out["lm_head.weight"]?.dtype == .f32)
        #expect(try ModelDiff.bytes(out["lm_head.weight"]!) == ModelDiff.bytes(model["lm_head.weight"]!))
        let kept = ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.k_proj", "model.layers.1.mlp.down_proj"]
        for m in kept { #expect(out[m + ".weight"]?.quant == nil, "\(m)") }
        #expect(out["model.layers.1.self_attn.q_proj.weight"]?.dtype == .f8e4m3fn)
        #expect(out.quantization?.excludedModules == kept + ["lm_head"])
    }

    @Test func kvCacheScalesFollowEachVProj() throws {
        let model = try T.llama()
        let service = FakeCalibration()
        let out = try T.run("fp8", model, ["kv-cache": "fp8"], service: service)
        #expect(service.requests.first?.kvCache == true)
        #expect(out.quantization?.kvCacheAlgorithm == "FP8")
        let names = out.tensorNames
        for layer in 0..<2 {
            let k = T.name(layer, "self_attn.k_proj.k_scale"), v = T.name(layer, "self_attn.v_proj.v_scale")
            let at = try #require(names.firstIndex(of: T.name(layer, "self_attn.v_proj.weight")))
            #expect(Array(names[(at + 1)...(at + 2)]) == [k, v])
            #expect(out[k]?.dtype == .f32 && out[k]?.shape == [] && out[v]?.shape == [])
            #expect(try out[k]!.floats() == [(3 + Float(layer)) / 448])
            #expect(try out[v]!.floats() == [(1.5 + Float(layer) / 2) / 448])
        }
    }

    @Test func percentileUsesTheCapturedRows() throws {
        let model = try T.llama()
        let service = FakeCalibration()
        let out = try T.run("fp8", model, ["activation-calibration": "percentile", "percentile": "99", "capture-rows": "64"], service: service)
        #expect(service.requests.first?.captureRows == 64)
        let name = T.name(0, "mlp.down_proj.weight")
        let x = FakeCalibration.activations(name, rows: 96, cols: 128)[0..<(64 * 128)].map(abs).sorted()
        let rank = Int((0.99 * Double(x.count)).rounded(.up))
        #expect(try out[name]!.quant!.inputScale!.floats() == [x[rank - 1] / 448])
        #expect(x[rank - 1] < x.last!, "the percentile clips the outliers")
    }

    @Test func mseSearchNeverExceedsTheMax() throws {
        let out = try T.run("fp8", try T.llama(), ["activation-calibration": "mse"])
        for name in T.linears() {
            let s = try out[name]!.quant!.inputScale!.floats()[0]
            #expect(s > 0 && s <= 11.0 / 448)
        }
    }

    @Test func perChannelWeightsWithDynamicActivationsNeedNoCalibration() throws {
        let model = try T.llama()
        let out = try T.pass("fp8").run(model, context: KilnContext(options: ["weight-granularity": "per-channel", "activation": "dynamic"]))
        let name = T.name(1, "mlp.gate_proj.weight")
        let t = out[name]!, q = t.quant!
        #expect(q.granularity == .perChannel(axis: 0) && q.scale.shape == [128] && q.inputScale == nil)
        let w = try model[name]!.floats()
        let row3 = Array(w[(3 * 64)..<(4 * 64)])
        #expect(try q.scale.floats()[3] == row3.map(abs).max()! / 448)
        #expect(try ModelDiff.bytes(t)[(3 * 64)..<(4 * 64)].elementsEqual(Self.reference(row3, source: .f32).q))
        #expect(out.quantization?.algorithm == "FP8_PER_CHANNEL_PER_TOKEN")
    }

    @Test func errorsAreVerbatim() throws {
        let model = try T.llama()
        let noCalib = T.error { _ = try T.pass("fp8").run(model, context: KilnContext(calibration: FakeCalibration())) }
        #expect(noCalib?.kind == .invalidInput && noCalib?.description == "fp8 needs --calib FILE")
        let gpt2 = T.error { _ = try T.run("fp8", try CheckpointFixture.gpt2()) }
        #expect(gpt2?.kind == .unsupported)
        #expect(gpt2?.message == "fp8 supports Llama-family models (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM); this model is GPT2LMHeadModel")
        let mixed = T.error { _ = try T.run("fp8", model, ["weight-granularity": "per-channel"]) }
        #expect(mixed?.description == "fp8 --weight-granularity: per-channel weights with static activations is not supported; use per-tensor + static (FP8) or per-channel + dynamic (FP8_PER_CHANNEL_PER_TOKEN)")
        let method = T.error { _ = try T.run("fp8", model, ["activation-calibration": "entropy"]) }
        #expect(method?.description == "fp8 --activation-calibration: expected one of max, percentile, mse, found \"entropy\"")
    }

    @Test func alreadyQuantizedIsRefusedUnlessForced() throws {
        let once = try T.run("fp8", try T.llama())
        let refused = T.error { _ = try T.run("fp8", once) }
        #expect(refused?.description == "model is already quantized (FP8); fp8 re-quantizes it only with --force")
        let again = try T.run("fp8", once, ["force": "true", "kv-cache": "fp8"])
        #expect(again.quantization?.kvCacheAlgorithm == "FP8")
        #expect(again[T.name(0, "self_attn.q_proj.weight")]?.dtype == .f8e4m3fn)
    }

    @Test func runsAreByteIdentical() throws {
        let model = try T.llama(tied: false)
        let options = ["kv-cache": "fp8", "activation-calibration": "percentile", "exclude": "*.o_proj"]
        let a = try T.fingerprint(try T.run("fp8", model, options))
        let b = try T.fingerprint(try T.run("fp8", model, options))
        #expect(a == b)
    }

    @Test func unifiedHFAndTensorRTLLMWritersTakeTheOutput() throws {
        let out = try T.run("fp8", try T.llama(), ["kv-cache": "fp8"])
        let dir = TemporaryDirectory()
        try CheckpointFixture.write(out, "hf-quant", to: dir.file("hf"))
        let t = try CheckpointFixture.tensors(dir.file("hf/model.safetensors"))
        #expect(t[T.name(0, "self_attn.q_proj.weight_scale")]?.shape == [])
        #expect(t[T.name(0, "self_attn.k_proj.k_scale")] != nil)
        try CheckpointFixture.write(out, "trtllm", to: dir.file("trt"))
        #expect(FileSystem.exists(dir.file("trt/rank0.safetensors")))
    }
}
