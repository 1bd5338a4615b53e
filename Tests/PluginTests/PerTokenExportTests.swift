import KilnCore
import KilnTestKit
import Testing

/// Per-token dynamic activation schemes (`fp8 --weight-granularity per-channel --activation dynamic`,
/// `int8-sq --activation dynamic`) and 2:4 sparse float models in the TensorRT-LLM and unified HF
/// checkpoints: the fields their consumers read, pinned byte by byte, and exact read-back.
///
/// Layouts: TensorRT-LLM `quantization/layers.py` Fp8RowwiseLinear (`weight` fp8 [out, in],
/// `per_channel_scale` f32 [out]); vLLM's ModelOptFp8PcPtLinearMethod (`weight` F8_E4M3 [out, in],
/// `weight_scale` F32 [out], no `input_scale`, quant_algo `FP8_PER_CHANNEL_PER_TOKEN`).
@Suite struct PerTokenExportTests {
    typealias T = PassTest
    typealias F = CheckpointFixture

    static func fp8PerChannel() throws -> Model {
        try T.pass("fp8").run(try T.llama(), context: KilnContext(options: ["weight-granularity": "per-channel", "activation": "dynamic"]))
    }

    /// The written model reads back to the same tensors, specs and record.
    static func expectReadBack(_ model: Model, _ path: String, _ format: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let back = try F.read(path, format)
        let d = try ModelDiff.differences(model, back)
        #expect(d.isEmpty, "\(d)", sourceLocation: sourceLocation)
        #expect(back.quantization?.algorithm == model.quantization?.algorithm, sourceLocation: sourceLocation)
    }

    @Test func fp8PerChannelInTheUnifiedHFCheckpoint() throws {
        let model = try Self.fp8PerChannel()
        let dir = TemporaryDirectory()
        try F.write(model, "hf-quant", to: dir.file("hf"))
        let t = try F.tensors(dir.file("hf/model.safetensors"))
        let name = T.name(1, "mlp.gate_proj.weight"), module = T.name(1, "mlp.gate_proj")
        #expect(t[name]?.dtype == .f8e4m3fn && t[name]?.shape == [128, 64])
        #expect(try ModelDiff.bytes(t[name]!) == ModelDiff.bytes(model[name]!))
        #expect(t[module + ".weight_scale"]?.dtype == .f32 && t[module + ".weight_scale"]?.shape == [128])
        #expect(try t[module + ".weight_scale"]!.floats() == model[name]!.quant!.scale.floats())
        #expect(!t.keys.contains { $0.hasSuffix(".input_scale") })
        #expect(try JSONValue.parse(FileSystem.readBytes(dir.file("hf/hf_quant_config.json"))).serialized() ==
                #"{"producer":{"name":"kiln","version":"0.1.0"},"quantization":{"quant_algo":"FP8_PER_CHANNEL_PER_TOKEN","kv_cache_quant_algo":null,"exclude_modules":["lm_head"]}}"#)
        #expect(try JSONValue.parse(FileSystem.readBytes(dir.file("hf/config.json")))["quantization_config"]?["quant_algo"] == "FP8_PER_CHANNEL_PER_TOKEN")
        try Self.expectReadBack(model, dir.file("hf"), "hf-quant")
    }

    @Test(arguments: [1, 2])
    func fp8PerChannelInTheTensorRTLLMCheckpoint(_ tp: Int) throws {
        let model = try Self.fp8PerChannel()
        let dir = TemporaryDirectory()
        try F.write(model, "trtllm", to: dir.file("trt"), ["tp": String(tp)])
        let config = try JSONValue.parse(FileSystem.readBytes(dir.file("trt/config.json")))
        #expect(config["quantization"]?["quant_algo"] == "FP8_PER_CHANNEL_PER_TOKEN")
        let rank0 = try F.tensors(dir.file("trt/rank0.safetensors"))
        let qkv = "transformer.layers.0.attention.qkv."
        #expect(rank0[qkv + "weight"]?.dtype == .f8e4m3fn)
        #expect(rank0[qkv + "per_channel_scale"]?.dtype == .f32)
        #expect(!rank0.keys.contains { $0.hasSuffix("weights_scaling_factor") || $0.hasSuffix("activation_scaling_factor") })
        let scales = { (n: String) in try model[T.name(0, "self_attn.\(n).weight")]!.quant!.scale.floats() }
        let q = try scales("q_proj"), k = try scales("k_proj"), v = try scales("v_proj")
        if tp == 1 {
            #expect(try rank0[qkv + "per_channel_scale"]!.floats() == q + k + v)
        } else {
            // Rank 0 holds its half of the q heads and of the k / v heads, in that order.
            #expect(try rank0[qkv + "per_channel_scale"]!.floats() == Array(q.prefix(q.count / 2)) + Array(k.prefix(k.count / 2)) + Array(v.prefix(v.count / 2)))
            // Row-parallel dense: every rank holds all output rows' scales.
            let dense = try model[T.name(0, "self_attn.o_proj.weight")]!.quant!.scale.floats()
            #expect(try rank0["transformer.layers.0.attention.dense.per_channel_scale"]!.floats() == dense)
        }
        try Self.expectReadBack(model, dir.file("trt"), "trtllm")
    }

    @Test func int8SmoothQuantPerTokenInBothCheckpoints() throws {
        let model = try T.run("int8-sq", try T.llama(), ["activation": "dynamic"])
        let dir = TemporaryDirectory()
        try F.write(model, "hf-quant", to: dir.file("hf"))
        let hf = try F.tensors(dir.file("hf/model.safetensors"))
        #expect(hf[T.name(0, "self_attn.q_proj.weight")]?.dtype == .i8)
        #expect(!hf.keys.contains { $0.hasSuffix(".input_scale") })
        #expect(try JSONValue.parse(FileSystem.readBytes(dir.file("hf/hf_quant_config.json")))["quantization"]?["quant_algo"] == "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN")
        try Self.expectReadBack(model, dir.file("hf"), "hf-quant")

        try F.write(model, "trtllm", to: dir.file("trt"))
        #expect(try JSONValue.parse(FileSystem.readBytes(dir.file("trt/config.json")))["quantization"]?["quant_algo"] == "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN")
        let trt = try F.tensors(dir.file("trt/rank0.safetensors"))
        #expect(trt["transformer.layers.0.attention.qkv.weights_scaling_factor"]?.shape == [T.llamaQKVRows])
        #expect(!trt.keys.contains { $0.hasSuffix("activation_scaling_factor") })
        try Self.expectReadBack(model, dir.file("trt"), "trtllm")
    }

    @Test func aSparseFloatModelDeclaresItsPatternInTheUnifiedHFCheckpoint() throws {
        let model = try T.run("sparse-2:4", try T.llama(), ["method": "magnitude"])
        #expect(model.quantization?.sparsity == "2:4" && model.tensors.allSatisfy { $0.quant == nil })
        let dir = TemporaryDirectory()
        try F.write(model, "hf-quant", to: dir.file("hf"))
        #expect(try JSONValue.parse(FileSystem.readBytes(dir.file("hf/hf_quant_config.json"))).serialized() ==
                #"{"producer":{"name":"kiln","version":"0.1.0"},"quantization":{"quant_algo":null,"kv_cache_quant_algo":null,"exclude_modules":[],"sparsity":"2:4"}}"#)
        #expect(try JSONValue.parse(FileSystem.readBytes(dir.file("hf/config.json")))["quantization_config"] == nil,
                "the weights are plain floats: config.json stays loadable as a dense model")
        let back = try F.read(dir.file("hf"), "hf-quant")
        #expect(back.quantization == model.quantization)
        #expect(try ModelDiff.differences(model, back).isEmpty)
    }
}

extension PassTest {
    /// Output rows of layer 0's fused q/k/v in ``llama(tied:dtype:)`` (64 + 2 · 32).
    static let llamaQKVRows = 128
}
