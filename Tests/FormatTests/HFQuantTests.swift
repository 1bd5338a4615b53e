import Foundation
import KilnCore
import KilnTestKit
import Testing

/// The unified Hugging Face quantized checkpoint: exact round trips, ModelOpt's layouts pinned byte by
/// byte, hf_quant_config.json and quantization_config verbatim, AWQ norm folding, refusals.
@Suite struct HFQuantTests {
    typealias F = CheckpointFixture
    typealias Q = QuantizedFixture

    func roundTrip(_ model: Model, _ options: [String: String] = [:]) throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        try F.write(model, "hf-quant", to: dir.file("ckpt"), options)
        let back = try F.read(dir.file("ckpt"), "hf-quant")
        let d = try ModelDiff.differences(model, back, order: true)
        #expect(d.isEmpty, "\(d)")
        #expect(back.quantization == model.quantization)
        #expect(back.config == model.config, "quantization_config is not part of the IR's config")
        let python = try TestEnvironment.python
        let out = try F.pythonCheck(python, "hfquant", dir.file("ckpt"), expected: Q.expected(model))
        #expect(out == nil, "\(out ?? "")")
        return dir
    }

    func json(_ path: String) throws -> JSONValue { try JSONValue.parse(FileSystem.readBytes(path)) }

    @Test(.requires { try TestEnvironment.sharedModel("stories260K") }, .requires { try TestEnvironment.python },
          arguments: [true, false])
    func fp8IsExact(_ shared: Bool) throws {
        let base = try F.stories260K()
        let model = try Q.quantize(base, .fp8(shareFused: shared, kvCache: true))
        let dir = try roundTrip(model)
        let t = try F.tensors(dir.file("ckpt/model.safetensors"))
        let p = "model.layers.0.self_attn."
        #expect(t[p + "q_proj.weight"]?.dtype == .f8e4m3fn)
        #expect(t[p + "q_proj.weight_scale"]?.shape == [])
        #expect(t[p + "q_proj.input_scale"]?.shape == [])
        #expect(t[p + "k_proj.k_scale"]?.shape == [])
        #expect(t[p + "v_proj.v_scale"]?.dtype == .f32)
        #expect(t["lm_head.weight"] == nil, "tied: no lm_head")
        #expect(Set(FileSystem.list(dir.file("ckpt"))!).isSuperset(of: ["config.json", "hf_quant_config.json", "model.safetensors", "tokenizer.json"]))
    }

    @Test func int8SmoothQuantIsExact() throws {
        let base = try F.stories260K()
        let dir = try roundTrip(try Q.quantize(base, .int8SQ))
        let t = try F.tensors(dir.file("ckpt/model.safetensors"))
        let p = "model.layers.2."
        #expect(t[p + "self_attn.q_proj.weight"]?.dtype == .i8)
        #expect(t[p + "self_attn.q_proj.weight_scale"]?.shape == [64])
        #expect(t[p + "mlp.down_proj.pre_quant_scale"]?.shape == [172])
        #expect(t[p + "self_attn.k_proj.pre_quant_scale"]?.shape == [64], "SmoothQuant keeps pre_quant_scale on every linear")
    }

    @Test func int4AWQWithFoldedNormsIsExact() throws {
        let base = try F.stories260K()
        let model = try Q.quantize(base, .int4AWQ(group: 16, foldedNorms: true), skip: ["mlp.down_proj"])
        let dir = try roundTrip(model)
        let t = try F.tensors(dir.file("ckpt/model.safetensors"))
        let p = "model.layers.0."
        #expect(t[p + "self_attn.q_proj.weight"]?.dtype == .u8)
        #expect(t[p + "self_attn.q_proj.weight"]?.shape == [32, 64])
        #expect(t[p + "self_attn.q_proj.weight_scale"]?.shape == [64, 4])
        #expect(t[p + "self_attn.q_proj.pre_quant_scale"] == nil)
        #expect(t[p + "self_attn.o_proj.pre_quant_scale"]?.shape == [64])
        #expect(t[p + "mlp.down_proj.weight"]?.dtype == .f32)
        let q = try json(dir.file("ckpt/hf_quant_config.json"))
        #expect(q.serialized() == #"{"producer":{"name":"kiln","version":"0.1.0"},"quantization":{"quant_algo":"W4A16_AWQ","kv_cache_quant_algo":null,"group_size":16,"has_zero_point":false,"pre_quant_scale":true,"exclude_modules":["model.layers.0.mlp.down_proj","model.layers.1.mlp.down_proj","model.layers.2.mlp.down_proj","model.layers.3.mlp.down_proj","model.layers.4.mlp.down_proj","lm_head"]}}"#)
    }

    /// ModelOpt's fuse_prequant_layernorm: the shared q/k/v (gate/up) pre-quant scale moves into the norm.
    @Test func awqPreQuantScalesAreFoldedIntoTheNorms() throws {
        let base = try F.llama(intermediate: 128, layers: 1)
        let model = try Q.quantize(base, .int4AWQ(group: 32))
        let dir = TemporaryDirectory()
        try F.write(model, "hf-quant", to: dir.file("ckpt"))
        let back = try F.read(dir.file("ckpt"), "hf-quant")
        let p = "model.layers.0."
        for (norm, linear) in [("input_layernorm", "self_attn.q_proj"), ("post_attention_layernorm", "mlp.gate_proj")] {
            let scale = try model[p + linear + ".weight"]!.quant!.preQuantScale!.floats()
            let expected = try zip(base[p + norm + ".weight"]!.floats(), scale).map { $0 * $1 }
            #expect(try back[p + norm + ".weight"]!.floats() == expected)
        }
        for name in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"] {
            #expect(back[p + name + ".weight"]!.quant!.preQuantScale == nil, "\(name)")
            let d = try ModelDiff.bytes(back[p + name + ".weight"]!) == ModelDiff.bytes(model[p + name + ".weight"]!)
            #expect(d, "\(name) payload unchanged")
        }
        #expect(back[p + "self_attn.o_proj.weight"]!.quant!.preQuantScale != nil)
    }

    @Test func w4a8AWQIsExact() throws {
        let model = try Q.quantize(try F.llama(intermediate: 128), .int4AWQ(group: 32, foldedNorms: true, w4a8: true))
        let dir = try roundTrip(model)
        let t = try F.tensors(dir.file("ckpt/model.safetensors"))
        let q = model["model.layers.1.mlp.up_proj.weight"]!.quant!
        #expect(try t["model.layers.1.mlp.up_proj.weight_scale_2"]!.floats() == [q.scale.floats().max()! * 7 / 448])
        #expect(try json(dir.file("ckpt/hf_quant_config.json"))["quantization"]?["quant_algo"] == "W4A8_AWQ")
    }

    /// Byte-level pin: U8 [out/2, in], byte[k, j] = (q[2k, j] & 0xF) | (q[2k+1, j] << 4).
    @Test func int4PackingIsModelOpts() throws {
        let q: [Int8] = [1, -2, 3, -4, 3, 4, -5, 6, -8, 7, 0, 1, 0, -1, 2, -3]
        let spec = QuantSpec(format: .int4, granularity: .perBlock(axis: 1, size: 4),
                             scale: Tensor(name: "s", dtype: .f32, shape: [4, 1], values: [Float](repeating: 0.5, count: 4)))
        let w = Tensor(name: "model.layers.0.self_attn.o_proj.weight", dtype: .i4, shape: [4, 4], storage: .owned(TensorBuffer(values: Int4Packing.packIR(q))), quant: spec)
        let model = try Model(tensors: [w], config: ["architectures": ["LlamaForCausalLM"]])
        let dir = TemporaryDirectory()
        try F.write(model, "hf-quant", to: dir.file("ckpt"))
        let t = try F.tensors(dir.file("ckpt/model.safetensors"))
        #expect(t[w.name]?.dtype == .u8)
        #expect(t[w.name]?.shape == [2, 4])
        #expect(try ModelDiff.bytes(t[w.name]!) == [0x31, 0x4E, 0xB3, 0x6C, 0x08, 0xF7, 0x20, 0xD1])
        #expect(try t["model.layers.0.self_attn.o_proj.weight_scale"]!.floats() == [0.5, 0.5, 0.5, 0.5])
        let back = try F.read(dir.file("ckpt"), "hf-quant")
        #expect(try back[w.name]!.quant!.dequantize(back[w.name]!).floats() == q.map { Float($0) * 0.5 })
    }

    @Test func fp8ConfigsAreVerbatim() throws {
        let model = try Q.quantize(try F.llama(intermediate: 128, layers: 1), .fp8())
        let dir = TemporaryDirectory()
        try F.write(model, "hf-quant", to: dir.file("ckpt"))
        #expect(try json(dir.file("ckpt/hf_quant_config.json")).serialized() ==
                #"{"producer":{"name":"kiln","version":"0.1.0"},"quantization":{"quant_algo":"FP8","kv_cache_quant_algo":"FP8","exclude_modules":["lm_head"]}}"#)
        let config = try json(dir.file("ckpt/config.json"))
        #expect(config["quantization_config"]?.serialized() ==
                #"{"config_groups":{"group_0":{"input_activations":{"dynamic":false,"num_bits":8,"type":"float"},"weights":{"dynamic":false,"num_bits":8,"type":"float"},"targets":["Linear"]}},"ignore":["lm_head"],"quant_algo":"FP8","kv_cache_scheme":{"dynamic":false,"num_bits":8,"type":"float"},"producer":{"name":"kiln","version":"0.1.0"},"quant_method":"modelopt"}"#)
        #expect(config.objectValue?.keys.last == "quantization_config")
        #expect(config["hidden_size"] == model.config?["hidden_size"])
    }

    @Test func shardedOutputHasAnIndex() throws {
        let model = try Q.quantize(try F.llama(intermediate: 128), .int8SQ)
        let dir = try roundTrip(model, ["max-shard-size": "30KB"])
        let files = FileSystem.list(dir.file("ckpt"))!
        #expect(files.contains("model.safetensors.index.json"))
        #expect(files.filter { $0.hasPrefix("model-") }.count > 2)
    }

    @Test func unquantizedModelIsAPlainHFFolder() throws {
        let model = try F.llama(intermediate: 128, layers: 1)
        let dir = TemporaryDirectory()
        try F.write(model, "hf-quant", to: dir.file("ckpt"))
        #expect(!FileSystem.list(dir.file("ckpt"))!.contains("hf_quant_config.json"))
        #expect(try json(dir.file("ckpt/config.json"))["quantization_config"] == nil)
    }

    func readError(_ path: String) -> String? {
        do { _ = try F.read(path, "hf-quant"); return nil } catch { return "\(error)" }
    }

    @Test func badCheckpointsAreRefused() throws {
        let dir = TemporaryDirectory()
        let ckpt = dir.file("ckpt")
        try F.write(try Q.quantize(try F.llama(intermediate: 128, layers: 1), .int8SQ), "hf-quant", to: ckpt)
        let file = ckpt + "/model.safetensors"
        let original = try SafetensorsFile(path: file).tensors().map { Tensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, storage: .owned(try $0.materialized())) }
        func rewrite(_ change: (Tensor) -> Tensor?) throws {
            try SafetensorsFile.write(original.compactMap(change), to: file)
        }
        let w = "model.layers.0.self_attn.q_proj"
        try rewrite { $0.name == w + ".weight" ? nil : $0 }
        #expect(readError(ckpt) == #"\#(ckpt): tensor "\#(w).weight_scale": a weight_scale without a quantized weight (\#(w).weight with a weight_scale)"#)
        try rewrite { $0.name == w + ".weight_scale" ? Tensor(name: $0.name, dtype: .f32, shape: [3], values: [Float](repeating: 1, count: 3)) : $0 }
        #expect(readError(ckpt) == #"\#(ckpt): tensor "\#(w).weight_scale" › shape: expected [64] (per-channel INT8 scale), found [3]"#)
        try rewrite { $0 }
        try F.editJSON(ckpt + "/hf_quant_config.json") {
            var q = $0["quantization"]!.objectValue!
            q["quant_algo"] = "INT3"
            $0["quantization"] = .object(q)
        }
        #expect(readError(ckpt) == #"\#(ckpt)/hf_quant_config.json: quantization › quant_algo: expected null or one of FP8, FP8_PER_CHANNEL_PER_TOKEN, W4A16_AWQ, W4A8_AWQ, W8A8_SQ_PER_CHANNEL, W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN, found "INT3""#)
    }

    @Test func writerRefusalsLeaveNothing() throws {
        let dir = TemporaryDirectory()
        let base = try Q.quantize(try F.llama(intermediate: 128, layers: 1), .int8SQ)
        // k_proj with a pre-quant scale different from q_proj's: one input, two smoothings.
        let k = "model.layers.0.self_attn.k_proj.weight"
        let tensors = base.tensors.map { t -> Tensor in
            guard t.name == k else { return t }
            var c = t
            c.quant!.preQuantScale = Tensor(name: "p", dtype: .f32, shape: [64], values: [Float](repeating: 2, count: 64))
            return c
        }
        let model = try Model(tensors: tensors, config: base.config, quantization: base.quantization)
        #expect {
            try F.write(model, "hf-quant", to: dir.file("ckpt"))
        } throws: { error in
            "\(error)" == #"tensor "model.layers.0.self_attn.k_proj.weight": model.layers.0.self_attn.q_proj.weight, model.layers.0.self_attn.k_proj.weight, model.layers.0.self_attn.v_proj.weight read the same input but have different pre-quant scales; the unified HF layout holds one (smooth them with a shared scale)"#
        }
        #expect(dir.contents.isEmpty)
    }
}
