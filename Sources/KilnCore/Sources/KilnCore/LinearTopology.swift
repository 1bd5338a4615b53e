/// Which tensors of a model are linear layers, which norm feeds them, and which share an input.
///
/// Passes (FP8, SmoothQuant, AWQ, sparsity) and writers need this map but cannot link the
/// engine's architecture templates, so the naming rules of the supported families live here,
/// once. Weights are `[out, in]` (Hugging Face `nn.Linear` layout).
public struct LinearTopology: Sendable {
    /// Linears reading the same input (q/k/v; gate/up), with the norm that produces it, if any.
    public struct Group: Sendable, Hashable {
        /// Weight names, in a fixed order (q, k, v / gate, up / o / down / lm_head).
        public var weights: [String]
        /// The RMSNorm/LayerNorm weight producing the shared input (nil: input comes from another linear
        /// or attention, e.g. o_proj, down_proj).
        public var norm: String?
        /// The linear whose output feeds this group when there is no norm (v_proj → o_proj via attention,
        /// up_proj → down_proj via the SwiGLU product), for scale folding; nil when not foldable.
        public var producer: String?
        /// Decoder layer index, nil for lm_head.
        public var layer: Int?
        /// Short role: "qkv", "o", "gate_up", "down", "lm_head".
        public var role: String
    }

    public var groups: [Group]
    /// The lm_head weight name (the embedding when tied).
    public var lmHead: String?
    public var embedding: String?
    public var layerCount: Int

    /// Every linear weight name, in group order.
    public var linearWeights: [String] { groups.flatMap(\.weights) }

    /// The group holding `weight`.
    public func group(of weight: String) -> Group? { groups.first { $0.weights.contains(weight) } }

    /// The map of a Llama-family model (Llama, Mistral, Qwen2 and the like) from its tensor names.
    /// - Throws: `KilnError(.unsupported)` when the names do not follow the Hugging Face Llama layout.
    public static func llama(_ model: Model) throws -> LinearTopology {
        var layers = 0
        while model["model.layers.\(layers).self_attn.q_proj.weight"] != nil { layers += 1 }
        guard layers > 0 else {
            throw KilnError(.unsupported, file: model.sourcePath, "no model.layers.0.self_attn.q_proj.weight: not a Llama-family checkpoint (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)")
        }
        var groups: [Group] = []
        for i in 0..<layers {
            let p = "model.layers.\(i)."
            let names = [
                "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm",
            ]
            for n in names where model[p + n + ".weight"] == nil {
                throw KilnError(.invalidInput, file: model.sourcePath, path: ["tensor \"\(p + n).weight\""], "missing from a Llama-family layer")
            }
            func w(_ n: String) -> String { p + n + ".weight" }
            groups.append(Group(weights: [w("self_attn.q_proj"), w("self_attn.k_proj"), w("self_attn.v_proj")],
                                norm: w("input_layernorm"), producer: nil, layer: i, role: "qkv"))
            groups.append(Group(weights: [w("self_attn.o_proj")], norm: nil, producer: w("self_attn.v_proj"), layer: i, role: "o"))
            groups.append(Group(weights: [w("mlp.gate_proj"), w("mlp.up_proj")],
                                norm: w("post_attention_layernorm"), producer: nil, layer: i, role: "gate_up"))
            groups.append(Group(weights: [w("mlp.down_proj")], norm: nil, producer: w("mlp.up_proj"), layer: i, role: "down"))
        }
        let embedding = model["model.embed_tokens.weight"] != nil ? "model.embed_tokens.weight" : nil
        let lmHead = model["lm_head.weight"] != nil ? "lm_head.weight" : embedding
        if let lmHead {
            groups.append(Group(weights: [lmHead], norm: "model.norm.weight", producer: nil, layer: nil, role: "lm_head"))
        }
        return LinearTopology(groups: groups, lmHead: lmHead, embedding: embedding, layerCount: layers)
    }

    /// Does `name` match a `--exclude` pattern? Patterns are globs with `*` (`*lm_head*`, `model.layers.0.*`).
    public static func matches(_ name: String, pattern: String) -> Bool {
        let n = Array(name.utf8), p = Array(pattern.utf8)
        var i = 0, j = 0, star = -1, mark = 0
        while i < n.count {
            if j < p.count && (p[j] == n[i] || p[j] == UInt8(ascii: "?")) { i += 1; j += 1 }
            else if j < p.count && p[j] == UInt8(ascii: "*") { star = j; mark = i; j += 1 }
            else if star >= 0 { j = star + 1; mark += 1; i = mark }
            else { return false }
        }
        while j < p.count && p[j] == UInt8(ascii: "*") { j += 1 }
        return j == p.count
    }
}
