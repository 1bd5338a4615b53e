import KilnCore

/// The validated shape of a GPT-2 model (`GPT2LMHeadModel`), read from config.json.
///
/// Required: `vocab_size`, `n_embd`, `n_layer`, `n_head`, `n_positions`. Defaults follow
/// transformers' GPT2Config: `n_inner` = 4 · n_embd, `activation_function` gelu_new,
/// `layer_norm_epsilon` 1e-5, `scale_attn_weights` true, `scale_attn_by_inverse_layer_idx` false,
/// `tie_word_embeddings` true.
public struct GPT2Config: Sendable, Equatable {
    /// `n_embd`.
    public var hiddenSize: Int
    /// `n_inner` (the MLP width).
    public var innerSize: Int
    /// `n_layer`.
    public var layers: Int
    /// `n_head`.
    public var heads: Int
    /// `n_embd / n_head`.
    public var headDim: Int
    /// `vocab_size`.
    public var vocabSize: Int
    /// `n_positions`: rows of the learned position table, the longest sequence the model runs.
    public var maxPositions: Int
    /// `layer_norm_epsilon`.
    public var layerNormEps: Double
    /// The activation is the tanh approximation (gelu_new, gelu_pytorch_tanh) rather than exact gelu.
    public var tanhGelu: Bool
    /// `scale_attn_weights`: scores divided by √head_dim.
    public var scaleAttention: Bool
    /// `scale_attn_by_inverse_layer_idx`: scores of layer i also divided by i + 1.
    public var scaleByLayer: Bool
    /// `tie_word_embeddings`.
    public var tieWordEmbeddings: Bool

    /// Validate and read `config`.
    /// - Throws: `KilnError(.invalidInput, file: "config.json", path: [field])` for missing fields,
    ///   non-positive sizes, `n_head` not dividing `n_embd`; `KilnError(.unsupported)` for an
    ///   activation other than gelu / gelu_new / gelu_pytorch_tanh, or cross-attention.
    public init(config: JSONValue) throws {
        let r = ConfigReader(config)
        vocabSize = try r.int("vocab_size")
        hiddenSize = try r.int("n_embd")
        layers = try r.int("n_layer")
        heads = try r.int("n_head")
        maxPositions = try r.int("n_positions")
        guard hiddenSize % heads == 0 else {
            throw r.mismatch(["n_head"], expected: "a divisor of n_embd (\(hiddenSize))", found: "\(heads)")
        }
        headDim = hiddenSize / heads
        innerSize = try r.optionalInt("n_inner") ?? 4 * hiddenSize
        layerNormEps = try r.optionalPositiveDouble("layer_norm_epsilon") ?? 1e-5
        tanhGelu = try GeluVariant.isTanh(r, field: "activation_function", default: "gelu_new")
        scaleAttention = try r.optionalBool("scale_attn_weights") ?? true
        scaleByLayer = try r.optionalBool("scale_attn_by_inverse_layer_idx") ?? false
        tieWordEmbeddings = try r.optionalBool("tie_word_embeddings") ?? true
        if try r.optionalBool("add_cross_attention") == true {
            throw KilnError(.unsupported, file: r.file, path: ["add_cross_attention"], "expected false (a decoder-only GPT-2), found true")
        }
    }

    /// Every weight the model needs with its shape (HF names after `prefix`; Conv1D weights are [in, out]).
    /// - Parameters:
    ///   - prefix: `transformer.` (GPT2LMHeadModel checkpoints) or empty (GPT2Model checkpoints).
    ///   - tied: whether the head reuses `wte.weight` (else `lm_head.weight` is needed).
    public func expectedWeights(prefix: String, tied: Bool) -> [(name: String, shape: [Int])] {
        let e = hiddenSize, i = innerSize
        var list: [(name: String, shape: [Int])] = [(prefix + "wte.weight", [vocabSize, e]), (prefix + "wpe.weight", [maxPositions, e])]
        for l in 0..<layers {
            let p = prefix + "h.\(l)."
            for (name, shape) in [("ln_1", [e]), ("attn.c_attn", [e, 3 * e]), ("attn.c_proj", [e, e]), ("ln_2", [e]),
                                  ("mlp.c_fc", [e, i]), ("mlp.c_proj", [i, e])] {
                list.append((p + name + ".weight", shape))
                list.append((p + name + ".bias", [shape.last!]))
            }
        }
        list.append((prefix + "ln_f.weight", [e]))
        list.append((prefix + "ln_f.bias", [e]))
        if !tied { list.append(("lm_head.weight", [vocabSize, e])) }
        return list
    }

    /// The config fields a weight's expected shape comes from, for error notes.
    func shapeSource(_ name: String) -> String {
        let e = "n_embd \(hiddenSize)"
        if name.hasSuffix("wte.weight") || name.hasPrefix("lm_head") { return "vocab_size \(vocabSize), \(e)" }
        if name.hasSuffix("wpe.weight") { return "n_positions \(maxPositions), \(e)" }
        if name.contains("mlp.") { return "n_inner \(innerSize), \(e)" }
        if name.contains("c_attn") { return "3 × \(e) (q, k, v)" }
        return e
    }
}

/// How a config's activation names map to `kiln.Gelu`.
enum GeluVariant {
    /// Whether `field` (default `fallback`) names the tanh approximation (gelu_new, gelu_pytorch_tanh)
    /// rather than exact gelu (gelu).
    /// - Throws: `KilnError(.unsupported)` naming the field for any other activation.
    static func isTanh(_ r: ConfigReader, field: String, default fallback: String) throws -> Bool {
        let act = try r.optionalString(field) ?? fallback
        switch act {
        case "gelu_new", "gelu_pytorch_tanh": return true
        case "gelu": return false
        default:
            throw KilnError(.unsupported, file: r.file, path: [field], "expected gelu, gelu_new or gelu_pytorch_tanh, found \"\(act)\"")
        }
    }
}

/// GPT-2: `GPT2LMHeadModel`.
///
/// Learned position embeddings, pre-LayerNorm decoder layers with Conv1D projections (weights
/// stored `[in, out]`, `kiln.Linear` with `weight_layout` in_out), the fused `c_attn` feeding
/// `kiln.Attention` as one input, causal attention, gelu_new:
/// ```
/// x   = wte[input_ids] + wpe[position_ids]
/// h   = x + c_proj(Attention(c_attn(ln_1(x))))
/// out = h + mlp.c_proj(gelu(mlp.c_fc(ln_2(h))))
/// logits = ln_f(out) · wteᵀ            (lm_head.weight when tie_word_embeddings is false and it exists)
/// ```
/// Weight names are the Hugging Face names, with or without the `transformer.` prefix (GPT2Model
/// checkpoints, such as the original `gpt2`, have none); the `attn.bias` mask buffers are ignored.
/// Graph inputs `input_ids`, `position_ids` (int64 `[batch, seq]`); output `logits`. Positions past
/// `n_positions` are refused by the executor's position lookup.
public enum GPT2Template: ArchitectureTemplate {
    /// `GPT2LMHeadModel`.
    public static let architectures = ["GPT2LMHeadModel"]

    /// Validate `config` and `weights`, then build the graph (see ``ArchitectureTemplate``).
    public static func build(config: JSONValue, weights: Model) throws -> Graph {
        let cfg = try GPT2Config(config: config)
        let prefix = weights["transformer.wte.weight"] != nil || weights["wte.weight"] == nil ? "transformer." : ""
        let tied = cfg.tieWordEmbeddings || weights["lm_head.weight"] == nil
        try WeightCheck.validate(weights, layers: cfg.layers, expected: cfg.expectedWeights(prefix: prefix, tied: tied),
                                 needs: "GPT2LMHeadModel with n_layer \(cfg.layers)", source: cfg.shapeSource)
        return graph(cfg, prefix: prefix, tied: tied)
    }

    /// The graph for a validated config.
    public static func graph(_ cfg: GPT2Config, prefix: String, tied: Bool) -> Graph {
        var b = GraphBuilder()
        let tokens = b.add(prefix + "wte", "Gather", [prefix + "wte.weight", "input_ids"])
        let positions = b.add(prefix + "wpe", "Gather", [prefix + "wpe.weight", "position_ids"])
        var x = b.add(prefix + "embeddings", "Add", [tokens, positions])
        for l in 0..<cfg.layers {
            let p = prefix + "h.\(l)."
            let n = b.layerNorm(p + "ln_1", x, eps: cfg.layerNormEps)
            let qkv = b.linear(p + "attn.c_attn", n, bias: true, inOut: true)
            var scale: Float = cfg.scaleAttention ? 1 / Float(cfg.headDim).squareRoot() : 1
            if cfg.scaleByLayer { scale /= Float(l + 1) }
            let a = b.add(p + "attn.attention", KilnOp.attention, [qkv], kiln: true, [
                ("num_heads", .int(Int64(cfg.heads))), ("num_kv_heads", .int(Int64(cfg.heads))),
                ("head_dim", .int(Int64(cfg.headDim))), ("scale", .float(scale)), ("causal", .int(1)),
            ])
            let o = b.linear(p + "attn.c_proj", a, bias: true, inOut: true)
            let h = b.add(p + "residual_attn", "Add", [x, o])
            let m = b.layerNorm(p + "ln_2", h, eps: cfg.layerNormEps)
            let f = b.linear(p + "mlp.c_fc", m, bias: true, inOut: true)
            let g = b.gelu(p + "mlp.act", f, tanh: cfg.tanhGelu)
            let d = b.linear(p + "mlp.c_proj", g, bias: true, inOut: true)
            x = b.add(p + "residual_mlp", "Add", [h, d])
        }
        let n = b.layerNorm(prefix + "ln_f", x, eps: cfg.layerNormEps)
        let head = tied ? prefix + "wte.weight" : "lm_head.weight"
        b.add("lm_head", KilnOp.linear, [n, head], kiln: true, output: "logits")
        let dims: [Dim] = [.symbolic("batch"), .symbolic("seq")]
        return Graph(
            name: "GPT2LMHeadModel",
            inputs: [ValueInfo(name: "input_ids", dtype: .i64, dims: dims), ValueInfo(name: "position_ids", dtype: .i64, dims: dims)],
            outputs: [ValueInfo(name: "logits", dtype: .f32, dims: dims + [.fixed(cfg.vocabSize)])],
            nodes: b.nodes,
            initializerNames: b.uniqueWeights)
    }
}
