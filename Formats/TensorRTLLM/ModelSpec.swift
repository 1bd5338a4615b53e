import KilnCore

/// The architecture facts both directions need, read from a Hugging Face config.json (writer)
/// or a TensorRT-LLM config.json (reader).
struct ModelSpec: Equatable {
    enum Family: Equatable { case llama, gpt2 }

    var family: Family
    /// Hugging Face architecture name: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel.
    var architecture: String
    /// Hugging Face model_type: llama, mistral, qwen2, gpt2.
    var modelType: String
    var hidden: Int
    var heads: Int
    var kvHeads: Int
    var headDim: Int
    var intermediate: Int
    var vocab: Int
    var layers: Int
    var maxPositions: Int
    var hiddenAct: String
    var normEps: Double
    var ropeTheta: Double
    var ropeScaling: JSONValue
    var tied: Bool
    var attnBias: Bool
    var mlpBias: Bool

    /// Hugging Face tensor name prefix of GPT-2 models ("transformer." or "" for old checkpoints).
    var gpt2Prefix = "transformer."

    static let llamaArchitectures = ["LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2"]
    static let gpt2Architectures = ["GPT2LMHeadModel": "gpt2"]

    var qRows: Int { heads * headDim }
    var kvRows: Int { kvHeads * headDim }
}

/// Typed access to a config object with errors that name the file and the field.
struct ConfigFields {
    let object: JSONValue
    let file: String

    func value(_ key: String) -> JSONValue? {
        guard let v = object[key], !v.isNull else { return nil }
        return v
    }

    func int(_ key: String, default fallback: Int? = nil, min: Int = 1) throws -> Int {
        guard let v = value(key) else {
            if let fallback { return fallback }
            throw KilnError.mismatch(file: file, path: [key], expected: "an integer", found: "nothing")
        }
        guard let i = v.intValue, i >= Int64(min), i <= Int64(Int32.max) else {
            throw KilnError.mismatch(file: file, path: [key], expected: "an integer ≥ \(min)", found: SafetensorsFile.describe(v))
        }
        return Int(i)
    }

    func double(_ key: String, default fallback: Double? = nil) throws -> Double {
        guard let v = value(key) else {
            if let fallback { return fallback }
            throw KilnError.mismatch(file: file, path: [key], expected: "a number", found: "nothing")
        }
        guard let d = v.doubleValue else {
            throw KilnError.mismatch(file: file, path: [key], expected: "a number", found: SafetensorsFile.describe(v))
        }
        return d
    }

    func string(_ key: String, default fallback: String? = nil) throws -> String {
        guard let v = value(key) else {
            if let fallback { return fallback }
            throw KilnError.mismatch(file: file, path: [key], expected: "a string", found: "nothing")
        }
        guard let s = v.stringValue else {
            throw KilnError.mismatch(file: file, path: [key], expected: "a string", found: SafetensorsFile.describe(v))
        }
        return s
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let v = value(key) else { return fallback }
        guard let b = v.boolValue else {
            throw KilnError.mismatch(file: file, path: [key], expected: "true or false", found: SafetensorsFile.describe(v))
        }
        return b
    }
}

extension ModelSpec {
    /// Read a Hugging Face config.json (as LLaMAConfig / QWenConfig / GPTConfig.from_hugging_face do).
    /// - Throws: `KilnError(.unsupported)` for other architectures; `.invalidInput` for a missing or
    ///   mistyped field, naming it.
    static func fromHuggingFace(_ config: JSONValue, file: String = "config.json") throws -> ModelSpec {
        let c = ConfigFields(object: config, file: file)
        guard config.objectValue != nil else {
            throw KilnError.mismatch(file: file, expected: "a JSON object", found: SafetensorsFile.describe(config))
        }
        var arch = c.value("architectures")?.arrayValue?.first?.stringValue
        let modelType = try? c.string("model_type")
        if arch == nil, let modelType {
            arch = (llamaArchitectures.first { $0.value == modelType } ?? gpt2Architectures.first { $0.value == modelType })?.key
        }
        guard let arch else {
            throw KilnError.mismatch(file: file, path: ["architectures"], expected: "a list naming the model class", found: "nothing")
        }
        if let type = llamaArchitectures[arch] {
            let hidden = try c.int("hidden_size")
            let heads = try c.int("num_attention_heads")
            let rope = c.value("rope_parameters")
            var scaling = c.value("rope_scaling") ?? .null
            if scaling.isNull, let rope, let kind = rope["rope_type"]?.stringValue, kind != "default" { scaling = rope }
            let theta = try c.value("rope_theta") != nil ? c.double("rope_theta")
                : (rope?["rope_theta"]?.doubleValue ?? 10000.0)
            return ModelSpec(
                family: .llama, architecture: arch, modelType: type, hidden: hidden, heads: heads,
                kvHeads: try c.int("num_key_value_heads", default: heads),
                headDim: try c.int("head_dim", default: hidden / heads),
                intermediate: try c.int("intermediate_size"), vocab: try c.int("vocab_size"),
                layers: try c.int("num_hidden_layers"),
                maxPositions: try c.int("max_position_embeddings", default: 2048),
                hiddenAct: try c.string("hidden_act", default: "silu"),
                normEps: try c.double("rms_norm_eps", default: 1e-6), ropeTheta: theta, ropeScaling: scaling,
                tied: try c.bool("tie_word_embeddings", default: false),
                attnBias: try c.bool("attention_bias", default: type == "qwen2"),
                mlpBias: try c.bool("mlp_bias", default: false))
        }
        if gpt2Architectures[arch] != nil {
            let hidden = try c.int("n_embd")
            let heads = try c.int("n_head")
            return ModelSpec(
                family: .gpt2, architecture: arch, modelType: "gpt2", hidden: hidden, heads: heads, kvHeads: heads,
                headDim: hidden / heads, intermediate: try c.int("n_inner", default: 4 * hidden),
                vocab: try c.int("vocab_size"), layers: try c.int("n_layer"),
                maxPositions: try c.int("n_positions"), hiddenAct: try c.string("activation_function", default: "gelu_new"),
                normEps: try c.double("layer_norm_epsilon", default: 1e-5), ropeTheta: 10000, ropeScaling: .null,
                tied: try c.bool("tie_word_embeddings", default: true), attnBias: true, mlpBias: true)
        }
        throw KilnError(.unsupported, file: file, path: ["architectures"],
                        "TensorRT-LLM checkpoints are written for \((llamaArchitectures.keys.sorted() + gpt2Architectures.keys.sorted()).joined(separator: ", ")); found \"\(arch)\"")
    }

    /// Checks that hold for any valid model, before sizes are used to plan anything.
    func validate(file: String) throws {
        guard layers <= Limits.maxLayers else {
            throw KilnError.mismatch(file: file, path: ["num_hidden_layers"], expected: "at most \(Limits.maxLayers)", found: "\(layers)")
        }
        guard heads % kvHeads == 0 else {
            throw KilnError(.invalidInput, file: file, path: ["num_key_value_heads"],
                            "\(heads) attention heads are not a multiple of \(kvHeads) key/value heads")
        }
        if family == .gpt2, hidden % heads != 0 {
            throw KilnError(.invalidInput, file: file, path: ["n_embd"], "\(hidden) is not a multiple of n_head \(heads)")
        }
    }

    /// The Hugging Face config.json the reader hands back (enough for Kiln's templates and transformers).
    func huggingFaceConfig(dtype: DType) -> JSONValue {
        var o = JSONObject()
        o["architectures"] = .array([.string(architecture)])
        o["model_type"] = .string(modelType)
        let torchDtype = JSONValue.string(dtype.traits.trtllm ?? dtype.traits.numpy)
        switch family {
        case .llama:
            o["hidden_size"] = .int(Int64(hidden))
            o["intermediate_size"] = .int(Int64(intermediate))
            o["num_hidden_layers"] = .int(Int64(layers))
            o["num_attention_heads"] = .int(Int64(heads))
            o["num_key_value_heads"] = .int(Int64(kvHeads))
            o["head_dim"] = .int(Int64(headDim))
            o["vocab_size"] = .int(Int64(vocab))
            o["max_position_embeddings"] = .int(Int64(maxPositions))
            o["rms_norm_eps"] = .double(normEps)
            o["rope_theta"] = .double(ropeTheta)
            o["rope_scaling"] = ropeScaling
            o["hidden_act"] = .string(hiddenAct)
            o["attention_bias"] = .bool(attnBias)
            o["mlp_bias"] = .bool(mlpBias)
        case .gpt2:
            o["n_embd"] = .int(Int64(hidden))
            o["n_head"] = .int(Int64(heads))
            o["n_layer"] = .int(Int64(layers))
            o["n_inner"] = .int(Int64(intermediate))
            o["n_positions"] = .int(Int64(maxPositions))
            o["vocab_size"] = .int(Int64(vocab))
            o["activation_function"] = .string(hiddenAct)
            o["layer_norm_epsilon"] = .double(normEps)
        }
        o["tie_word_embeddings"] = .bool(tied)
        o["torch_dtype"] = torchDtype
        return .object(o)
    }
}
