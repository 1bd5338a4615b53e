import KilnCore

/// The Llama family: `LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`.
///
/// One decoder layer, with value names equal to the Hugging Face module names:
/// ```
/// h   = x + o_proj(Attention(RoPE(q_proj(n)), RoPE(k_proj(n)), v_proj(n)))   n = input_layernorm(x)
/// out = h + down_proj(silu(gate_proj(m)) ⊙ up_proj(m))                       m = post_attention_layernorm(h)
/// ```
/// then `model.norm` and `lm_head` (tied to `model.embed_tokens.weight` when `tie_word_embeddings`
/// is true or the checkpoint has no `lm_head.weight`). silu is written as `Mul(g, Sigmoid(g))`.
/// Graph inputs: `input_ids` and `position_ids` (int64 `[batch, seq]`); output `logits`
/// (f32 `[batch, seq, vocab]`).
public enum LlamaTemplate: ArchitectureTemplate {
    /// The three family members' names.
    public static let architectures = [LlamaConfig.Variant.llama, .mistral, .qwen2].map(\.rawValue)

    /// Validate `config` and `weights`, then build the graph (see ``ArchitectureTemplate``).
    public static func build(config: JSONValue, weights: Model) throws -> Graph {
        let cfg = try LlamaConfig(config: config)
        let tied = cfg.tieWordEmbeddings || weights["lm_head.weight"] == nil
        try validate(weights, against: cfg, tied: tied)
        return graph(cfg, tied: tied)
    }

    /// Check that `weights` holds every tensor `config` needs, with the right shapes.
    /// - Throws: `KilnError(.invalidInput, path: ["tensor \"NAME\""])`: "missing (…)" or
    ///   "shape: expected [a, b], found [c, d] (from config.json: …)".
    public static func validate(_ weights: Model, against cfg: LlamaConfig, tied: Bool) throws {
        try WeightCheck.validate(weights, layers: cfg.layers, expected: cfg.expectedWeights(tied: tied),
                                 needs: "\(cfg.variant.rawValue) with num_hidden_layers \(cfg.layers)", source: cfg.shapeSource)
    }

    /// The graph for a validated config.
    public static func graph(_ cfg: LlamaConfig, tied: Bool) -> Graph {
        var b = GraphBuilder()
        var x = b.add("model.embed_tokens", "Gather", ["model.embed_tokens.weight", "input_ids"])
        for l in 0..<cfg.layers {
            let p = "model.layers.\(l)."
            let n = b.rmsNorm(p + "input_layernorm", x, eps: cfg.rmsNormEps)
            let q = b.linear(p + "self_attn.q_proj", n, bias: cfg.qkvBias)
            let k = b.linear(p + "self_attn.k_proj", n, bias: cfg.qkvBias)
            let v = b.linear(p + "self_attn.v_proj", n, bias: cfg.qkvBias)
            let rq = b.rope(p + "self_attn.q_rope", q, heads: cfg.heads, headDim: cfg.headDim, rope: cfg.rope)
            let rk = b.rope(p + "self_attn.k_rope", k, heads: cfg.kvHeads, headDim: cfg.headDim, rope: cfg.rope)
            var attrs: [(name: String, value: AttributeValue)] = [
                ("num_heads", .int(Int64(cfg.heads))), ("num_kv_heads", .int(Int64(cfg.kvHeads))),
                ("head_dim", .int(Int64(cfg.headDim))), ("scale", .float(1 / Float(cfg.headDim).squareRoot())),
                ("causal", .int(1)),
            ]
            if let w = cfg.slidingWindow[l] { attrs.append(("sliding_window", .int(Int64(w)))) }
            let a = b.add(p + "self_attn.attention", KilnOp.attention, [rq, rk, v], kiln: true, attrs)
            let o = b.linear(p + "self_attn.o_proj", a, bias: cfg.outputBias)
            let h = b.add(p + "residual_attn", "Add", [x, o])
            let m = b.rmsNorm(p + "post_attention_layernorm", h, eps: cfg.rmsNormEps)
            let g = b.linear(p + "mlp.gate_proj", m, bias: cfg.mlpBias)
            let u = b.linear(p + "mlp.up_proj", m, bias: cfg.mlpBias)
            let s = b.add(p + "mlp.gate_sigmoid", "Sigmoid", [g])
            let silu = b.add(p + "mlp.act_fn", "Mul", [g, s])
            let gu = b.add(p + "mlp.gate_up", "Mul", [silu, u])
            let d = b.linear(p + "mlp.down_proj", gu, bias: cfg.mlpBias)
            x = b.add(p + "residual_mlp", "Add", [h, d])
        }
        let n = b.rmsNorm("model.norm", x, eps: cfg.rmsNormEps)
        let head = tied ? "model.embed_tokens.weight" : "lm_head.weight"
        b.nodes.append(Node(name: "lm_head", opType: KilnOp.linear, domain: KilnOp.domain, inputs: [n, head], outputs: ["logits"]))
        b.weights.append(head)
        let tokens: [Dim] = [.symbolic("batch"), .symbolic("seq")]
        return Graph(
            name: cfg.variant.rawValue,
            inputs: [ValueInfo(name: "input_ids", dtype: .i64, dims: tokens),
                     ValueInfo(name: "position_ids", dtype: .i64, dims: tokens)],
            outputs: [ValueInfo(name: "logits", dtype: .f32, dims: tokens + [.fixed(cfg.vocabSize)])],
            nodes: b.nodes,
            initializerNames: b.uniqueWeights)
    }
}

/// Appends nodes whose single output is named after the node.
struct GraphBuilder {
    var nodes: [Node] = []
    var weights: [String] = []

    /// Input names that are checkpoint tensors (`gamma`/`beta`: LayerNorm in older BERT checkpoints).
    static let weightSuffixes = [".weight", ".bias", ".gamma", ".beta"]

    var uniqueWeights: [String] {
        var seen = Set<String>()
        return weights.filter { seen.insert($0).inserted }
    }

    /// Add a node called `name` with output `output` (default: `name`); returns the output name.
    @discardableResult
    mutating func add(_ name: String, _ op: String, _ inputs: [String], kiln: Bool = false,
                      _ attributes: [(name: String, value: AttributeValue)] = [], output: String? = nil) -> String {
        let out = output ?? name
        nodes.append(Node(name: name, opType: op, domain: kiln ? KilnOp.domain : "", inputs: inputs, outputs: [out],
                          attributes: attributes))
        weights += inputs.filter { name in GraphBuilder.weightSuffixes.contains { name.hasSuffix($0) } }
        return out
    }

    /// ONNX `LayerNormalization` over the last axis with `name.weight` and `name.bias` (or the
    /// `gamma`/`beta` of `names`).
    mutating func layerNorm(_ name: String, _ x: String, eps: Double, names: (scale: String, bias: String) = ("weight", "bias"),
                            output: String? = nil) -> String {
        add(name, "LayerNormalization", [x, name + "." + names.scale, name + "." + names.bias],
            [("axis", .int(-1)), ("epsilon", .float(Float(eps)))], output: output)
    }

    /// `kiln.Gelu`, exact (erf) or with the tanh approximation.
    mutating func gelu(_ name: String, _ x: String, tanh: Bool) -> String {
        add(name, KilnOp.gelu, [x], kiln: true, [("approximate", .string(Array((tanh ? "tanh" : "none").utf8)))])
    }

    mutating func rmsNorm(_ name: String, _ x: String, eps: Double) -> String {
        add(name, KilnOp.rmsNorm, [x, name + ".weight"], kiln: true, [("epsilon", .float(Float(eps)))])
    }

    /// `kiln.Linear` with `name.weight` (and `name.bias`); `inOut`: the weight is stored [in, out] (Conv1D).
    mutating func linear(_ name: String, _ x: String, bias: Bool, inOut: Bool = false) -> String {
        add(name, KilnOp.linear, [x, name + ".weight"] + (bias ? [name + ".bias"] : []), kiln: true,
            inOut ? [("weight_layout", .string(Array("in_out".utf8)))] : [])
    }

    mutating func rope(_ name: String, _ x: String, heads: Int, headDim: Int, rope: RopeParameters) -> String {
        add(name, KilnOp.rope, [x, "position_ids"], kiln: true,
            [("num_heads", .int(Int64(heads))), ("head_dim", .int(Int64(headDim))), ("interleaved", .int(0))] + rope.attributes)
    }
}
