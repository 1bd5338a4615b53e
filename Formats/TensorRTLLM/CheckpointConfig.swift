import KilnCore

/// The `quantization` object of the checkpoint config (TensorRT-LLM's QuantConfig).
struct QuantSection: Equatable {
    var quantAlgo: String?
    var kvCacheAlgo: String?
    var groupSize = 128
    var hasZeroPoint = false
    var preQuantScale = false
    var excludeModules: [String]?

    var json: JSONValue {
        .object(JSONObject([
            ("quant_algo", quantAlgo.map { .string($0) } ?? .null),
            ("kv_cache_quant_algo", kvCacheAlgo.map { .string($0) } ?? .null),
            ("group_size", .int(Int64(groupSize))),
            ("has_zero_point", .bool(hasZeroPoint)),
            ("pre_quant_scale", .bool(preQuantScale)),
            ("exclude_modules", excludeModules.map { .array($0.map { .string($0) }) } ?? .null),
        ]))
    }
}

/// Everything config.json of a TensorRT-LLM checkpoint says, in Kiln's terms.
struct CheckpointConfig: Equatable {
    var spec: ModelSpec
    var dtype: DType
    var tp: Int
    var parallelEmbedding = false
    var embeddingShardingDim = 0
    var quant = QuantSection()
    /// Weights obey 2:4 structured sparsity (Kiln field `weight_sparsity`, the name of trtllm-build's flag).
    var sparse = false

    /// config.json as PretrainedConfig.to_dict() writes it, with the fields LLaMAConfig / QWenConfig /
    /// GPTConfig add (tensorrt_llm/models/{modeling_utils,llama/config,qwen/config,gpt/config}.py).
    func json(producerVersion: String) -> JSONValue {
        let s = spec
        var o = JSONObject()
        o["architecture"] = .string(s.architecture)
        o["dtype"] = .string(dtype.traits.trtllm ?? dtype.name)
        o["logits_dtype"] = "float32"
        o["vocab_size"] = .int(Int64(s.vocab))
        o["max_position_embeddings"] = .int(Int64(s.maxPositions))
        o["hidden_size"] = .int(Int64(s.hidden))
        o["num_hidden_layers"] = .int(Int64(s.layers))
        o["num_attention_heads"] = .int(Int64(s.heads))
        o["num_key_value_heads"] = .int(Int64(s.kvHeads))
        o["head_size"] = .int(Int64(s.headDim))
        o["intermediate_size"] = .int(Int64(s.intermediate))
        o["hidden_act"] = .string(s.hiddenAct)
        o["norm_epsilon"] = .double(s.normEps)
        o["position_embedding_type"] = .string(s.family == .gpt2 ? "learned_absolute" : "rope_gpt_neox")
        o["rotary_embedding_dim"] = .int(Int64(s.headDim))
        o["rotary_base"] = .double(s.ropeTheta)
        o["rotary_scaling"] = s.ropeScaling
        o["use_parallel_embedding"] = .bool(parallelEmbedding)
        o["embedding_sharding_dim"] = .int(Int64(embeddingShardingDim))
        o["share_embedding_table"] = false
        o["tie_word_embeddings"] = .bool(s.tied)
        o["qk_layernorm"] = false
        switch (s.family, s.modelType) {
        case (.llama, "qwen2"):
            o["mlp_bias"] = .bool(s.mlpBias)
            o["attn_bias"] = .bool(s.attnBias)
            o["disable_weight_only_quant_plugin"] = false
            o["use_logn_attn"] = false
            o["qwen_type"] = "qwen2"
            o["seq_length"] = 8192
            o["num_labels"] = 1
            o["moe_intermediate_size"] = 0
            o["moe_shared_expert_intermediate_size"] = 0
        case (.llama, _):
            o["mlp_bias"] = .bool(s.mlpBias)
            o["attn_bias"] = .bool(s.attnBias)
            o["residual_mlp"] = false
            o["disable_weight_only_quant_plugin"] = false
            o["remove_duplicated_kv_heads"] = false
            o["embedding_multiplier"] = 1.0
            o["attention_multiplier"] = 1.0
            o["residual_multiplier"] = 1.0
            o["output_multiplier_scale"] = 1.0
        case (.gpt2, _):
            o["gpt_variant"] = "gpt2"
            o["bias"] = true
            o["q_scaling"] = 1.0
            o["embedding_scale"] = .null
            o["apply_query_key_layer_scaling"] = false
            o["rotary_pct"] = 1.0
            o["inner_layernorm"] = false
            o["norm_before_bmm1"] = false
        }
        if sparse { o["weight_sparsity"] = true }
        o["mapping"] = .object(JSONObject([("world_size", .int(Int64(tp))), ("tp_size", .int(Int64(tp))), ("pp_size", 1)]))
        o["quantization"] = quant.json
        o["producer"] = .object(JSONObject([("name", "kiln"), ("version", .string(producerVersion))]))
        return .object(o)
    }

    /// Parse config.json of a checkpoint written by Kiln, ModelOpt or TensorRT-LLM's converters.
    /// - Throws: `KilnError(.invalidInput)` naming the field for a missing or mistyped one, an unknown
    ///   quant_algo, an inconsistent mapping; `.unsupported` for pipeline parallelism or architectures
    ///   other than the Llama family and GPT-2.
    static func parse(_ json: JSONValue, file: String) throws -> CheckpointConfig {
        guard json.objectValue != nil else {
            throw KilnError.mismatch(file: file, expected: "a JSON object", found: SafetensorsFile.describe(json))
        }
        let c = ConfigFields(object: json, file: file)
        let arch = try c.string("architecture")
        let family: ModelSpec.Family
        let hfArch: String
        let modelType: String
        if let t = ModelSpec.llamaArchitectures[arch] {
            (family, hfArch, modelType) = (.llama, arch, t)
        } else if arch == "GPT2LMHeadModel" || arch == "GPTForCausalLM" {
            (family, hfArch, modelType) = (.gpt2, "GPT2LMHeadModel", "gpt2")
        } else {
            throw KilnError(.unsupported, file: file, path: ["architecture"],
                            "Kiln reads Llama-family and GPT-2 checkpoints; found \"\(arch)\"")
        }
        let dtypeName = try c.string("dtype")
        guard let dtype = DType(name: dtypeName), dtype.isFloat else {
            throw KilnError.mismatch(file: file, path: ["dtype"], expected: "float32, float16 or bfloat16", found: "\"\(dtypeName)\"")
        }
        let hidden = try c.int("hidden_size")
        let heads = try c.int("num_attention_heads")
        let spec = ModelSpec(
            family: family, architecture: hfArch, modelType: modelType, hidden: hidden, heads: heads,
            kvHeads: try c.int("num_key_value_heads", default: heads),
            headDim: try c.int("head_size", default: hidden / heads),
            intermediate: try c.int("intermediate_size", default: 4 * hidden), vocab: try c.int("vocab_size"),
            layers: try c.int("num_hidden_layers"), maxPositions: try c.int("max_position_embeddings", default: 2048),
            hiddenAct: try c.string("hidden_act", default: family == .gpt2 ? "gelu_new" : "silu"),
            normEps: try c.double("norm_epsilon", default: 1e-5), ropeTheta: try c.double("rotary_base", default: 10000),
            ropeScaling: c.value("rotary_scaling") ?? .null,
            tied: try c.bool("tie_word_embeddings", default: c.bool("share_embedding_table", default: false)),
            attnBias: try c.bool("attn_bias", default: family == .gpt2 ? c.bool("bias", default: true) : modelType == "qwen2"),
            mlpBias: try c.bool("mlp_bias", default: family == .gpt2 ? c.bool("bias", default: true) : false))
        try spec.validate(file: file)

        let mapping = ConfigFields(object: c.value("mapping") ?? .object(JSONObject()), file: file)
        guard c.value("mapping") == nil || c.value("mapping")?.objectValue != nil else {
            throw KilnError.mismatch(file: file, path: ["mapping"], expected: "an object", found: SafetensorsFile.describe(c.value("mapping")))
        }
        func mapped(_ key: String, _ fallback: Int) throws -> Int {
            do { return try mapping.int(key, default: fallback) } catch let e as KilnError { throw e.adding(context: "mapping") }
        }
        let tp = try mapped("tp_size", 1)
        let pp = try mapped("pp_size", 1)
        let world = try mapped("world_size", tp * pp)
        guard pp == 1 else {
            throw KilnError(.unsupported, file: file, path: ["mapping", "pp_size"], "pipeline-parallel checkpoints (pp_size \(pp)) are not supported")
        }
        guard tp <= Limits.maxTP else {
            throw KilnError.mismatch(file: file, path: ["mapping", "tp_size"], expected: "at most \(Limits.maxTP)", found: "\(tp)")
        }
        guard world == tp * pp else {
            throw KilnError.mismatch(file: file, path: ["mapping", "world_size"], expected: "tp_size × pp_size = \(tp * pp)", found: "\(world)")
        }
        var config = CheckpointConfig(spec: spec, dtype: dtype, tp: tp)
        config.parallelEmbedding = try c.bool("use_parallel_embedding", default: false)
        config.embeddingShardingDim = try c.int("embedding_sharding_dim", default: 0, min: 0)
        guard config.embeddingShardingDim <= 1 else {
            throw KilnError.mismatch(file: file, path: ["embedding_sharding_dim"], expected: "0 or 1", found: "\(config.embeddingShardingDim)")
        }
        config.sparse = try c.bool("weight_sparsity", default: false)
        if let q = c.value("quantization") {
            guard q.objectValue != nil else {
                throw KilnError.mismatch(file: file, path: ["quantization"], expected: "an object", found: SafetensorsFile.describe(q))
            }
            do { config.quant = try parseQuant(ConfigFields(object: q, file: file)) } catch let e as KilnError { throw e.adding(context: "quantization") }
        }
        return config
    }

    static func parseQuant(_ q: ConfigFields) throws -> QuantSection {
        var s = QuantSection()
        if q.value("quant_algo") != nil {
            let algo = try q.string("quant_algo")
            guard Layout.quantAlgorithms.contains(algo) else {
                throw KilnError.mismatch(file: q.file, path: ["quant_algo"],
                                         expected: "null or one of \(Layout.quantAlgorithms.joined(separator: ", "))", found: "\"\(algo)\"")
            }
            s.quantAlgo = algo
        }
        if q.value("kv_cache_quant_algo") != nil {
            let algo = try q.string("kv_cache_quant_algo")
            guard Layout.kvCacheAlgorithms.contains(algo) else {
                throw KilnError.mismatch(file: q.file, path: ["kv_cache_quant_algo"],
                                         expected: "null or one of \(Layout.kvCacheAlgorithms.joined(separator: ", "))", found: "\"\(algo)\"")
            }
            s.kvCacheAlgo = algo
        }
        s.groupSize = try q.int("group_size", default: 128)
        s.hasZeroPoint = try q.bool("has_zero_point", default: false)
        guard !s.hasZeroPoint else {
            throw KilnError(.unsupported, file: q.file, path: ["has_zero_point"], "asymmetric (zero-point) checkpoints are not supported")
        }
        s.preQuantScale = try q.bool("pre_quant_scale", default: false)
        if let list = q.value("exclude_modules") {
            guard let items = list.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else {
                throw KilnError.mismatch(file: q.file, path: ["exclude_modules"], expected: "a list of module names", found: SafetensorsFile.describe(list))
            }
            s.excludeModules = items.map { $0.stringValue! }
        }
        return s
    }
}
