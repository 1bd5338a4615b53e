import KilnCore

/// The validated shape of a Llama-family model (Llama, Mistral, Qwen2), read from config.json.
///
/// Defaults follow transformers' config classes: `num_key_value_heads` = `num_attention_heads`,
/// `head_dim` = `hidden_size / num_attention_heads`, `rms_norm_eps` 1e-6, `rope_theta` 10000,
/// `hidden_act` silu, no biases except Qwen2's q/k/v.
public struct LlamaConfig: Sendable, Equatable {
    /// Which member of the family.
    public enum Variant: String, Sendable {
        case llama = "LlamaForCausalLM"
        case mistral = "MistralForCausalLM"
        case qwen2 = "Qwen2ForCausalLM"
    }

    /// The family member config.json's `architectures` names.
    public var variant: Variant
    /// `hidden_size`.
    public var hiddenSize: Int
    /// `intermediate_size` (the MLP width).
    public var intermediateSize: Int
    /// `num_hidden_layers`.
    public var layers: Int
    /// `num_attention_heads`.
    public var heads: Int
    /// `num_key_value_heads` (GQA; = heads when absent).
    public var kvHeads: Int
    /// `head_dim` (= hidden / heads when absent).
    public var headDim: Int
    /// `vocab_size`.
    public var vocabSize: Int
    /// `rms_norm_eps`.
    public var rmsNormEps: Double
    /// Rotary embedding settings.
    public var rope: RopeParameters
    /// `tie_word_embeddings` as written (the template also ties when `lm_head.weight` is absent).
    public var tieWordEmbeddings: Bool
    /// Biases on q/k/v projections (Qwen2 always; Llama with `attention_bias`).
    public var qkvBias: Bool
    /// Bias on o_proj (Llama with `attention_bias`).
    public var outputBias: Bool
    /// Biases on gate/up/down (Llama with `mlp_bias`).
    public var mlpBias: Bool
    /// Sliding attention window per layer (nil = full causal attention).
    public var slidingWindow: [Int?]
    /// `max_position_embeddings`, when given (not enforced by the executor).
    public var maxPositions: Int?

    /// Validate and read `config`.
    /// - Throws: `KilnError(.invalidInput, file: "config.json", path: [field])` with "expected …, found …"
    ///   for missing fields, non-positive sizes, heads not dividing `hidden_size` (when `head_dim` is
    ///   absent), KV heads not dividing heads, an odd head_dim; `KilnError(.unsupported)` for an
    ///   architecture outside the family, an activation other than silu or an unknown RoPE scaling.
    public init(config: JSONValue) throws {
        let r = ConfigReader(config)
        let names = try Architectures.architectureNames(config)
        guard let variant = names.lazy.compactMap(Variant.init(rawValue:)).first else {
            throw KilnError(.unsupported, file: r.file, path: ["architectures"],
                            "expected one of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, found \(names.joined(separator: ", "))")
        }
        self.variant = variant
        hiddenSize = try r.int("hidden_size")
        intermediateSize = try r.int("intermediate_size")
        layers = try r.int("num_hidden_layers")
        heads = try r.int("num_attention_heads")
        vocabSize = try r.int("vocab_size")
        if let explicit = try r.optionalInt("head_dim") {
            headDim = explicit
        } else {
            guard hiddenSize % heads == 0 else {
                throw r.mismatch(["num_attention_heads"], expected: "a divisor of hidden_size (\(hiddenSize))", found: "\(heads)")
            }
            headDim = hiddenSize / heads
        }
        kvHeads = try r.optionalInt("num_key_value_heads") ?? heads
        guard heads % kvHeads == 0 else {
            throw r.mismatch(["num_key_value_heads"], expected: "a divisor of num_attention_heads (\(heads))", found: "\(kvHeads)")
        }
        guard headDim % 2 == 0 else {
            throw r.mismatch(["head_dim"], expected: "an even number (rotary embedding pairs)", found: "\(headDim)")
        }
        rmsNormEps = try r.optionalPositiveDouble("rms_norm_eps") ?? 1e-6
        let act = try r.optionalString("hidden_act") ?? "silu"
        guard act == "silu" || act == "swish" else {
            throw KilnError(.unsupported, file: r.file, path: ["hidden_act"], "expected silu, found \"\(act)\"")
        }
        rope = try RopeParameters(config: r)
        tieWordEmbeddings = try r.optionalBool("tie_word_embeddings") ?? false
        maxPositions = try r.optionalInt("max_position_embeddings")
        let attentionBias = try r.optionalBool("attention_bias") ?? false
        switch variant {
        case .llama:
            qkvBias = attentionBias
            outputBias = attentionBias
            mlpBias = try r.optionalBool("mlp_bias") ?? false
            slidingWindow = Array(repeating: nil, count: layers)
        case .mistral:
            qkvBias = false
            outputBias = false
            mlpBias = false
            let window = try r.optionalInt("sliding_window")
            slidingWindow = Array(repeating: window, count: layers)
        case .qwen2:
            qkvBias = true
            outputBias = false
            mlpBias = false
            let window = try r.optionalInt("sliding_window")
            let useWindow = try r.optionalBool("use_sliding_window") ?? false
            let firstWindowed = try r.optionalInt("max_window_layers", minimum: 0) ?? layers
            slidingWindow = (0..<layers).map { useWindow && $0 >= firstWindowed ? window : nil }
        }
    }

    /// Every weight the model needs with its shape, in checkpoint order (lm_head only when untied).
    /// - Parameter tied: whether lm_head reuses `model.embed_tokens.weight`.
    public func expectedWeights(tied: Bool) -> [(name: String, shape: [Int])] {
        let h = hiddenSize, q = heads * headDim, kv = kvHeads * headDim, i = intermediateSize
        var list: [(name: String, shape: [Int])] = [("model.embed_tokens.weight", [vocabSize, h])]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            list.append((p + "input_layernorm.weight", [h]))
            for (proj, out) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                list.append((p + "self_attn.\(proj).weight", [out, h]))
                if qkvBias { list.append((p + "self_attn.\(proj).bias", [out])) }
            }
            list.append((p + "self_attn.o_proj.weight", [h, q]))
            if outputBias { list.append((p + "self_attn.o_proj.bias", [h])) }
            list.append((p + "post_attention_layernorm.weight", [h]))
            for (proj, shape) in [("gate_proj", [i, h]), ("up_proj", [i, h]), ("down_proj", [h, i])] {
                list.append((p + "mlp.\(proj).weight", shape))
                if mlpBias { list.append((p + "mlp.\(proj).bias", [shape[0]])) }
            }
        }
        list.append(("model.norm.weight", [h]))
        if !tied { list.append(("lm_head.weight", [vocabSize, h])) }
        return list
    }

    /// The config fields a weight's expected shape comes from, for error notes.
    func shapeSource(_ name: String) -> String {
        let h = "hidden_size \(hiddenSize)"
        if name.hasSuffix("norm.weight") { return h }
        if name.contains("embed_tokens") || name.hasPrefix("lm_head") { return "vocab_size \(vocabSize), \(h)" }
        if name.contains("mlp.") { return "intermediate_size \(intermediateSize), \(h)" }
        if name.contains("k_proj") || name.contains("v_proj") {
            return "num_key_value_heads \(kvHeads) × head_dim \(headDim), \(h)"
        }
        return "num_attention_heads \(heads) × head_dim \(headDim), \(h)"
    }
}
