import KilnCore

/// The validated shape of a BERT encoder, read from config.json.
///
/// Required: `vocab_size`, `hidden_size`, `num_hidden_layers`, `num_attention_heads`,
/// `intermediate_size`, `max_position_embeddings`. Defaults follow transformers' BertConfig:
/// `type_vocab_size` 2, `hidden_act` gelu, `layer_norm_eps` 1e-12, `position_embedding_type` absolute.
public struct BertConfig: Sendable, Equatable {
    /// `hidden_size`.
    public var hiddenSize: Int
    /// `intermediate_size`.
    public var intermediateSize: Int
    /// `num_hidden_layers`.
    public var layers: Int
    /// `num_attention_heads`.
    public var heads: Int
    /// `hidden_size / num_attention_heads`.
    public var headDim: Int
    /// `vocab_size`.
    public var vocabSize: Int
    /// `max_position_embeddings`: rows of the position table, the longest sequence the model runs.
    public var maxPositions: Int
    /// `type_vocab_size`.
    public var typeVocabSize: Int
    /// `layer_norm_eps`.
    public var layerNormEps: Double
    /// `hidden_act` is the tanh approximation (gelu_new) rather than exact gelu.
    public var tanhGelu: Bool

    /// Validate and read `config`.
    /// - Throws: `KilnError(.invalidInput, file: "config.json", path: [field])` for missing fields,
    ///   non-positive sizes, heads not dividing `hidden_size`; `KilnError(.unsupported)` for an
    ///   activation other than gelu / gelu_new or a relative position embedding.
    public init(config: JSONValue) throws {
        let r = ConfigReader(config)
        vocabSize = try r.int("vocab_size")
        hiddenSize = try r.int("hidden_size")
        layers = try r.int("num_hidden_layers")
        heads = try r.int("num_attention_heads")
        intermediateSize = try r.int("intermediate_size")
        maxPositions = try r.int("max_position_embeddings")
        guard hiddenSize % heads == 0 else {
            throw r.mismatch(["num_attention_heads"], expected: "a divisor of hidden_size (\(hiddenSize))", found: "\(heads)")
        }
        headDim = hiddenSize / heads
        typeVocabSize = try r.optionalInt("type_vocab_size") ?? 2
        layerNormEps = try r.optionalPositiveDouble("layer_norm_eps") ?? 1e-12
        tanhGelu = try GeluVariant.isTanh(r, field: "hidden_act", default: "gelu")
        let positions = try r.optionalString("position_embedding_type") ?? "absolute"
        guard positions == "absolute" else {
            throw KilnError(.unsupported, file: r.file, path: ["position_embedding_type"], "expected absolute, found \"\(positions)\"")
        }
    }

    /// Every weight the encoder needs with its shape (HF BertModel names after `prefix`).
    /// - Parameters:
    ///   - prefix: empty (BertModel, sentence-transformers) or `bert.` (BertForMaskedLM and other heads).
    ///   - layerNorm: the LayerNorm tensor names: `weight`/`bias`, or `gamma`/`beta` (older checkpoints
    ///     such as bert-base-uncased, which transformers renames on load).
    public func expectedWeights(prefix: String, layerNorm: (scale: String, bias: String) = ("weight", "bias")) -> [(name: String, shape: [Int])] {
        let h = hiddenSize, i = intermediateSize
        let e = prefix + "embeddings."
        var list: [(name: String, shape: [Int])] = [
            (e + "word_embeddings.weight", [vocabSize, h]), (e + "position_embeddings.weight", [maxPositions, h]),
            (e + "token_type_embeddings.weight", [typeVocabSize, h]),
            (e + "LayerNorm." + layerNorm.scale, [h]), (e + "LayerNorm." + layerNorm.bias, [h]),
        ]
        for l in 0..<layers {
            let p = prefix + "encoder.layer.\(l)."
            for (name, shape) in [("attention.self.query", [h, h]), ("attention.self.key", [h, h]), ("attention.self.value", [h, h]),
                                  ("attention.output.dense", [h, h]), ("attention.output.LayerNorm", [h]),
                                  ("intermediate.dense", [i, h]), ("output.dense", [h, i]), ("output.LayerNorm", [h])] {
                let norm = name.hasSuffix("LayerNorm")
                list.append((p + name + "." + (norm ? layerNorm.scale : "weight"), shape))
                list.append((p + name + "." + (norm ? layerNorm.bias : "bias"), [shape[0]]))
            }
        }
        return list
    }

    /// The config fields a weight's expected shape comes from, for error notes.
    func shapeSource(_ name: String) -> String {
        let h = "hidden_size \(hiddenSize)"
        if name.contains("word_embeddings") { return "vocab_size \(vocabSize), \(h)" }
        if name.contains("position_embeddings") { return "max_position_embeddings \(maxPositions), \(h)" }
        if name.contains("token_type_embeddings") { return "type_vocab_size \(typeVocabSize), \(h)" }
        if name.contains("intermediate.") || name.contains("output.dense") && !name.contains("attention.") {
            return "intermediate_size \(intermediateSize), \(h)"
        }
        return h
    }
}

/// BERT encoders: `BertModel`; `BertForMaskedLM` checkpoints are read as their encoder (`bert.` prefix,
/// the masked-LM head is not run). LayerNorm tensors may be named `weight`/`bias` or, as in older
/// checkpoints, `gamma`/`beta`.
///
/// Post-LayerNorm encoder layers with bidirectional attention over the real tokens:
/// ```
/// x   = LayerNorm(word[input_ids] + token_type[token_type_ids] + position[position_ids])
/// h   = LayerNorm(x + attention.output.dense(Attention(query(x), key(x), value(x), attention_mask)))
/// out = LayerNorm(h + output.dense(gelu(intermediate.dense(h))))
/// pooler_output = tanh(pooler.dense(out[:, 0]))            (only when the pooler weights exist)
/// ```
/// Graph inputs `input_ids`, `token_type_ids`, `position_ids`, `attention_mask` (int64 `[batch, seq]`);
/// outputs `last_hidden_state` (f32 `[batch, seq, hidden]`) and `pooler_output` (`[batch, hidden]`).
/// The executor runs single-segment input (token type 0) and masks right-padding from the sequence
/// lengths; the ONNX export takes all four inputs.
public enum BertTemplate: ArchitectureTemplate {
    /// `BertModel`, `BertForMaskedLM`.
    public static let architectures = ["BertModel", "BertForMaskedLM"]

    /// Validate `config` and `weights`, then build the graph (see ``ArchitectureTemplate``).
    public static func build(config: JSONValue, weights: Model) throws -> Graph {
        let cfg = try BertConfig(config: config)
        let prefix = weights["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
        let norm = weights[prefix + "embeddings.LayerNorm.gamma"] != nil ? (scale: "gamma", bias: "beta") : (scale: "weight", bias: "bias")
        try WeightCheck.validate(weights, layers: cfg.layers, expected: cfg.expectedWeights(prefix: prefix, layerNorm: norm),
                                 needs: "BertModel with num_hidden_layers \(cfg.layers)", source: cfg.shapeSource)
        let pooler = prefix + "pooler.dense"
        var pooled = false
        if let w = weights[pooler + ".weight"] {
            try WeightCheck.validate(weights, layers: 0, expected: [(pooler + ".weight", [cfg.hiddenSize, cfg.hiddenSize]),
                                                         (pooler + ".bias", [cfg.hiddenSize])],
                                     needs: "the pooler (\(w.name) exists)", source: cfg.shapeSource)
            pooled = true
        }
        return graph(cfg, prefix: prefix, layerNorm: norm, pooler: pooled)
    }

    /// The graph for a validated config.
    public static func graph(_ cfg: BertConfig, prefix: String, layerNorm norm: (scale: String, bias: String) = ("weight", "bias"),
                             pooler: Bool) -> Graph {
        var b = GraphBuilder()
        let e = prefix + "embeddings."
        let words = b.add(e + "word_embeddings", "Gather", [e + "word_embeddings.weight", "input_ids"])
        let types = b.add(e + "token_type_embeddings", "Gather", [e + "token_type_embeddings.weight", "token_type_ids"])
        let positions = b.add(e + "position_embeddings", "Gather", [e + "position_embeddings.weight", "position_ids"])
        let sum = b.add(e + "sum", "Add", [b.add(e + "word_and_type", "Add", [words, types]), positions])
        var x = b.layerNorm(e + "LayerNorm", sum, eps: cfg.layerNormEps, names: norm)
        for l in 0..<cfg.layers {
            let p = prefix + "encoder.layer.\(l)."
            let q = b.linear(p + "attention.self.query", x, bias: true)
            let k = b.linear(p + "attention.self.key", x, bias: true)
            let v = b.linear(p + "attention.self.value", x, bias: true)
            let a = b.add(p + "attention.self.attention", KilnOp.attention, [q, k, v, "attention_mask"], kiln: true, [
                ("num_heads", .int(Int64(cfg.heads))), ("num_kv_heads", .int(Int64(cfg.heads))),
                ("head_dim", .int(Int64(cfg.headDim))), ("scale", .float(1 / Float(cfg.headDim).squareRoot())), ("causal", .int(0)),
            ])
            let o = b.linear(p + "attention.output.dense", a, bias: true)
            let h = b.layerNorm(p + "attention.output.LayerNorm", b.add(p + "attention.output.residual", "Add", [o, x]),
                                eps: cfg.layerNormEps, names: norm)
            let i = b.gelu(p + "intermediate.act", b.linear(p + "intermediate.dense", h, bias: true), tanh: cfg.tanhGelu)
            let d = b.linear(p + "output.dense", i, bias: true)
            let last = l == cfg.layers - 1
            x = b.layerNorm(p + "output.LayerNorm", b.add(p + "output.residual", "Add", [d, h]), eps: cfg.layerNormEps,
                            names: norm, output: last ? "last_hidden_state" : nil)
        }
        let dims: [Dim] = [.symbolic("batch"), .symbolic("seq")]
        var outputs = [ValueInfo(name: "last_hidden_state", dtype: .f32, dims: dims + [.fixed(cfg.hiddenSize)])]
        if pooler {
            let first = b.add(prefix + "pooler.first_token", KilnOp.firstToken, [x], kiln: true)
            let dense = b.linear(prefix + "pooler.dense", first, bias: true)
            b.add(prefix + "pooler.activation", "Tanh", [dense], output: "pooler_output")
            outputs.append(ValueInfo(name: "pooler_output", dtype: .f32, dims: [.symbolic("batch"), .fixed(cfg.hiddenSize)]))
        }
        return Graph(
            name: "BertModel",
            inputs: ["input_ids", "token_type_ids", "position_ids", "attention_mask"].map { ValueInfo(name: $0, dtype: .i64, dims: dims) },
            outputs: outputs,
            nodes: b.nodes,
            initializerNames: b.uniqueWeights)
    }
}
