import Foundation
import KilnCore
import KilnTestKit
import Testing

/// HF → TensorRT-LLM (tp 1...8) → HF: bit-exact round trips, the per-rank layout, config.json.
@Suite struct TensorRTLLMRoundTripTests {
    typealias F = CheckpointFixture

    func roundTrip(_ model: Model, tp: Int, _ options: [String: String] = [:]) throws -> (Model, TemporaryDirectory) {
        let dir = TemporaryDirectory()
        var o = options
        o["tp"] = String(tp)
        try F.write(model, "trtllm", to: dir.file("ckpt"), o)
        return (try F.read(dir.file("ckpt"), "trtllm"), dir)
    }

    @Test(.requires { try TestEnvironment.sharedModel("stories260K") }, .requires { try TestEnvironment.python },
          arguments: [1, 2, 4])
    func stories260KIsBitExact(_ tp: Int) throws {
        let model = try F.stories260K()
        let (back, dir) = try roundTrip(model, tp: tp)
        do { let d = try ModelDiff.differences(model, back); #expect(d.isEmpty, "\(d)") }
        #expect(back.tensors.count == 47)
        #expect(back["lm_head.weight"] == nil, "tied: no lm_head comes back")
        #expect(back.config?["num_key_value_heads"]?.intValue == 4)
        #expect(back.config?["tie_word_embeddings"]?.boolValue == true)
        #expect(back.quantization == nil)
        #expect(back.metadata["trtllm.tp_size"] == String(tp))
        let files = FileSystem.list(dir.file("ckpt"))!
        #expect(files.filter { $0.hasPrefix("rank") } == (0..<tp).map { "rank\($0).safetensors" })
        #expect(files.contains("tokenizer.json"))
        let python = try TestEnvironment.python
        do { let out = try F.pythonCheck(python, "trtllm", dir.file("ckpt"), expected: model); #expect(out == nil, "\(out ?? "")") }
    }

    @Test func stories260KAtTP8IsRefusedWithoutOutput() throws {
        let model = try F.stories260K()
        let dir = TemporaryDirectory()
        #expect {
            try F.write(model, "trtllm", to: dir.file("ckpt"), ["tp": "8"])
        } throws: { error in
            "\(error)" == #"tensor "model.layers.0.mlp.gate_proj.weight": dim 0 (172) is not divisible by tp 8 (column-parallel mlp.fc)"#
        }
        #expect(dir.contents.isEmpty)
    }

    /// 2 KV heads at tp 4 and 8 are repeated; vocab 500 pads lm_head at tp 8; untied lm_head.
    @Test(.requires { try TestEnvironment.python }, arguments: [1, 2, 4, 8])
    func syntheticWithRepeatedKVHeadsIsBitExact(_ tp: Int) throws {
        let model = try F.llama(heads: 8, kvHeads: 2, intermediate: 128, vocab: 500, tied: false)
        let (back, dir) = try roundTrip(model, tp: tp)
        do { let d = try ModelDiff.differences(model, back, order: true); #expect(d.isEmpty, "\(d)") }
        let rank = try F.tensors(dir.file("ckpt/rank\(tp - 1).safetensors"))
        #expect(rank["lm_head.weight"]?.shape == [(500 + tp - 1) / tp, 64])
        // 8 query heads / tp, plus 2 KV heads / tp (at least one, repeated) for k and for v; head size 8
        #expect(rank["transformer.layers.0.attention.qkv.weight"]?.shape == [8 / tp * 8 + 2 * max(2 / tp, 1) * 8, 64])
        let python = try TestEnvironment.python
        do { let out = try F.pythonCheck(python, "trtllm", dir.file("ckpt"), expected: model); #expect(out == nil, "\(out ?? "")") }
    }

    /// SmolLM2-135M's head layout (9 query / 3 KV heads): tp 3 splits it, tp 2 and 4 are refused.
    @Test func nineHeadsSplitOverThreeRanks() throws {
        let model = try F.llama(hidden: 72, heads: 9, kvHeads: 3, intermediate: 96, vocab: 300)
        let (back, dir) = try roundTrip(model, tp: 3)
        let d = try ModelDiff.differences(model, back, order: true)
        #expect(d.isEmpty, "\(d)")
        #expect(try F.tensors(dir.file("ckpt/rank2.safetensors"))["transformer.layers.0.attention.qkv.weight"]?.shape == [24 + 8 + 8, 72])
        for tp in [2, 4] {
            #expect(throws: KilnError.self) { try F.write(model, "trtllm", to: dir.file("t\(tp)"), ["tp": String(tp)]) }
        }
        let python = try TestEnvironment.python
        let out = try F.pythonCheck(python, "trtllm", dir.file("ckpt"), expected: model)
        #expect(out == nil, "\(out ?? "")")
    }

    @Test(.requires { try TestEnvironment.python }, arguments: ["vocab", "hidden"])
    func shardedEmbeddingIsBitExact(_ dim: String) throws {
        let model = try F.llama(heads: 8, kvHeads: 4, intermediate: 128, vocab: 510, tied: true)
        let (back, dir) = try roundTrip(model, tp: 4, ["embedding-sharding": dim])
        do { let d = try ModelDiff.differences(model, back); #expect(d.isEmpty, "\(d)") }
        let config = try JSONValue.parse(FileSystem.readBytes(dir.file("ckpt/config.json")))
        #expect(config["use_parallel_embedding"] == .bool(true))
        #expect(config["embedding_sharding_dim"] == .int(dim == "vocab" ? 0 : 1))
        let rank = try F.tensors(dir.file("ckpt/rank3.safetensors"))
        #expect(rank["transformer.vocab_embedding.weight"]?.shape == (dim == "vocab" ? [128, 64] : [510, 16]))
        if dim == "vocab" {
            // rows 384..<510 then two zero rows of padding
            let e = try F.slice(rank["transformer.vocab_embedding.weight"]!)
            #expect(e[(126 * 64)...].allSatisfy { $0 == 0 })
            #expect(Array(e[..<(126 * 64)]) == (try F.slice(model["model.embed_tokens.weight"]!, rows: 384..<510)))
        }
        let python = try TestEnvironment.python
        do { let out = try F.pythonCheck(python, "trtllm", dir.file("ckpt"), expected: model); #expect(out == nil, "\(out ?? "")") }
    }

    /// Rank r: its query heads, then its key heads, then its value heads (KV head r / 2 at 4 ranks
    /// with 2 KV heads); dense/proj split on the input dim; fc = gate_proj, gate = up_proj.
    @Test func perRankLayoutIsTensorRTLLMs() throws {
        let model = try F.llama(hidden: 16, heads: 4, kvHeads: 2, intermediate: 8, layers: 1, vocab: 30, tied: false)
        let dir = TemporaryDirectory()
        try F.write(model, "trtllm", to: dir.file("ckpt"), ["tp": "4"])
        let p = "model.layers.0."
        for r in 0..<4 {
            let t = try F.tensors(dir.file("ckpt/rank\(r).safetensors"))
            let qkv = try F.slice(t["transformer.layers.0.attention.qkv.weight"]!)
            let h = r / 2
            let expected = try F.slice(model[p + "self_attn.q_proj.weight"]!, rows: (4 * r)..<(4 * r + 4))
                + F.slice(model[p + "self_attn.k_proj.weight"]!, rows: (4 * h)..<(4 * h + 4))
                + F.slice(model[p + "self_attn.v_proj.weight"]!, rows: (4 * h)..<(4 * h + 4))
            #expect(qkv == expected, "rank \(r)")
            #expect(try F.slice(t["transformer.layers.0.attention.dense.weight"]!) == F.slice(model[p + "self_attn.o_proj.weight"]!, cols: (4 * r)..<(4 * r + 4)))
            #expect(try F.slice(t["transformer.layers.0.mlp.fc.weight"]!) == F.slice(model[p + "mlp.gate_proj.weight"]!, rows: (2 * r)..<(2 * r + 2)))
            #expect(try F.slice(t["transformer.layers.0.mlp.gate.weight"]!) == F.slice(model[p + "mlp.up_proj.weight"]!, rows: (2 * r)..<(2 * r + 2)))
            #expect(try F.slice(t["transformer.layers.0.mlp.proj.weight"]!) == F.slice(model[p + "mlp.down_proj.weight"]!, cols: (2 * r)..<(2 * r + 2)))
            let lm = try F.slice(t["lm_head.weight"]!)
            let rows = (8 * r)..<min(30, 8 * r + 8)
            #expect(Array(lm.prefix(rows.count * 16)) == (try F.slice(model["lm_head.weight"]!, rows: rows)))
            #expect(lm.dropFirst(rows.count * 16).allSatisfy { $0 == 0 }, "zero padding")
            #expect(t["transformer.layers.0.input_layernorm.weight"]?.shape == [16])
            #expect(Set(t.keys) == ["transformer.vocab_embedding.weight", "transformer.layers.0.input_layernorm.weight",
                                    "transformer.layers.0.attention.qkv.weight", "transformer.layers.0.attention.dense.weight",
                                    "transformer.layers.0.post_layernorm.weight", "transformer.layers.0.mlp.fc.weight",
                                    "transformer.layers.0.mlp.gate.weight", "transformer.layers.0.mlp.proj.weight",
                                    "transformer.ln_f.weight", "lm_head.weight"])
        }
    }

    @Test func configJSONIsVerbatim() throws {
        let model = try F.stories260K()
        let dir = TemporaryDirectory()
        try F.write(model, "trtllm", to: dir.file("ckpt"), ["tp": "2"])
        let text = String(decoding: try FileSystem.readBytes(dir.file("ckpt/config.json")), as: UTF8.self)
        #expect(text == """
        {
          "architecture": "LlamaForCausalLM",
          "dtype": "float32",
          "logits_dtype": "float32",
          "vocab_size": 512,
          "max_position_embeddings": 512,
          "hidden_size": 64,
          "num_hidden_layers": 5,
          "num_attention_heads": 8,
          "num_key_value_heads": 4,
          "head_size": 8,
          "intermediate_size": 172,
          "hidden_act": "silu",
          "norm_epsilon": 1e-05,
          "position_embedding_type": "rope_gpt_neox",
          "rotary_embedding_dim": 8,
          "rotary_base": 10000.0,
          "rotary_scaling": null,
          "use_parallel_embedding": false,
          "embedding_sharding_dim": 0,
          "share_embedding_table": false,
          "tie_word_embeddings": true,
          "qk_layernorm": false,
          "mlp_bias": false,
          "attn_bias": false,
          "residual_mlp": false,
          "disable_weight_only_quant_plugin": false,
          "remove_duplicated_kv_heads": false,
          "embedding_multiplier": 1.0,
          "attention_multiplier": 1.0,
          "residual_multiplier": 1.0,
          "output_multiplier_scale": 1.0,
          "mapping": {
            "world_size": 2,
            "tp_size": 2,
            "pp_size": 1
          },
          "quantization": {
            "quant_algo": null,
            "kv_cache_quant_algo": null,
            "group_size": 128,
            "has_zero_point": false,
            "pre_quant_scale": false,
            "exclude_modules": null
          },
          "producer": {
            "name": "kiln",
            "version": "0.1.0"
          }
        }

        """)
    }

    @Test(.requires { try TestEnvironment.python }, arguments: [1, 2])
    func qwen2WithQKVBiasIsBitExact(_ tp: Int) throws {
        let model = try F.qwen2()
        let (back, dir) = try roundTrip(model, tp: tp)
        do { let d = try ModelDiff.differences(model, back, order: true); #expect(d.isEmpty, "\(d)") }
        let config = try JSONValue.parse(FileSystem.readBytes(dir.file("ckpt/config.json")))
        #expect(config["architecture"] == "Qwen2ForCausalLM")
        #expect(config["qwen_type"] == "qwen2")
        #expect(config["attn_bias"] == .bool(true))
        let rank = try F.tensors(dir.file("ckpt/rank0.safetensors"))
        #expect(rank["transformer.layers.0.attention.qkv.bias"]?.shape == [(64 + 2 * 16) / tp])
        let python = try TestEnvironment.python
        do { let out = try F.pythonCheck(python, "trtllm", dir.file("ckpt"), expected: model); #expect(out == nil, "\(out ?? "")") }
    }

    /// GPT-2: Conv1D [in, out] weights become [out, in]; c_attn's q, k, v sections split per head;
    /// row-parallel biases replicated.
    @Test(.requires { try TestEnvironment.python }, arguments: [1, 2, 4])
    func gpt2IsBitExact(_ tp: Int) throws {
        let model = try F.gpt2()
        let (back, dir) = try roundTrip(model, tp: tp)
        do { let d = try ModelDiff.differences(model, back, order: true); #expect(d.isEmpty, "\(d)") }
        let config = try JSONValue.parse(FileSystem.readBytes(dir.file("ckpt/config.json")))
        #expect(config["architecture"] == "GPT2LMHeadModel")
        #expect(config["gpt_variant"] == "gpt2")
        #expect(config["position_embedding_type"] == "learned_absolute")
        #expect(config["hidden_act"] == "gelu_new")
        let t = try F.tensors(dir.file("ckpt/rank0.safetensors"))
        let cAttn = model["transformer.h.0.attn.c_attn.weight"]!  // [16, 48]
        let perRank = 16 / tp
        var expected: [Float] = []
        for section in 0..<3 {
            for row in (section * 16)..<(section * 16 + perRank) { expected += try F.slice(cAttn, cols: row..<(row + 1)) }
        }
        #expect(try F.slice(t["transformer.layers.0.attention.qkv.weight"]!) == expected)
        #expect(t["transformer.layers.0.attention.dense.bias"]?.shape == [16])
        #expect(try F.slice(t["transformer.layers.0.attention.dense.bias"]!) == F.slice(model["transformer.h.0.attn.c_proj.bias"]!))
        #expect(t["transformer.position_embedding.weight"]?.shape == [32, 16])
        let python = try TestEnvironment.python
        do { let out = try F.pythonCheck(python, "trtllm", dir.file("ckpt"), expected: model); #expect(out == nil, "\(out ?? "")") }
    }
}
