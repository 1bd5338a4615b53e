import KilnCore

/// How a tensor is distributed over the tensor-parallel ranks.
enum Parallel { case column, row }

/// One Hugging Face linear (or one section of a fused one) inside a TensorRT-LLM linear.
struct LinearPart {
    /// HF module name (`model.layers.0.self_attn.q_proj`); the weight is `module + ".weight"`.
    let module: String
    /// HF weight tensor name (GPT-2's q, k, v sections all name `attn.c_attn.weight`).
    let weight: String
    let bias: String
    /// First logical row of this part inside `weight` (GPT-2 c_attn sections), and its row count.
    let rowOffset: Int
    let rows: Int
    /// HF stores the weight `[in, out]` (GPT-2 Conv1D): seen transposed.
    let transposed: Bool
    /// Per rank: the rows of this part (0-based within the part) the rank holds, in order.
    let rankRows: [Range<Int>]
}

/// One TensorRT-LLM linear and how its weight is assembled on every rank.
struct LinearSpec {
    /// TensorRT-LLM module name (`transformer.layers.0.attention.qkv`).
    let trt: String
    let parallel: Parallel
    let parts: [LinearPart]
    let inFeatures: Int
    /// Rows per rank after zero padding (lm_head only: vocab padded to a multiple of tp).
    let paddedRowsPerRank: Int?
    /// Linears with the same key share FP8 per-tensor scales (qkv; fc + gate).
    let shareGroup: String
    let tp: Int

    /// Output rows stored on rank `r`.
    func rows(rank r: Int) -> Int { paddedRowsPerRank ?? parts.reduce(0) { $0 + $1.rankRows[r].count } }
    /// Input columns stored on rank `r`.
    func cols(rank r: Int) -> Range<Int> {
        parallel == .row ? Plan.even(inFeatures, tp: tp, rank: r) : 0..<inFeatures
    }
    /// Total HF output rows (unpadded).
    var outFeatures: Int { parts.reduce(0) { $0 + $1.rows } }
}

/// A tensor that is not a linear weight: norms (replicated) and embeddings (optionally sharded).
struct PlainSpec {
    enum Kind { case replicated, embedding }
    let hf: String
    let trt: String
    let kind: Kind
    /// Embeddings: HF rows × cols.
    let rows: Int
    let cols: Int
}

/// What the checkpoint holds, in Hugging Face order: the writer emits rank tensors in this order,
/// the reader emits HF tensors in this order.
enum PlanItem {
    case plain(PlainSpec)
    case linear(LinearSpec)
    /// FP8/INT8 KV-cache scales of one layer: HF `k_proj.k_scale` / `v_proj.v_scale`, TRT `attention.*`.
    case kvCache(layer: Int, k: String, v: String, trt: String)
}

/// The layout of one model at one tp: every tensor's name on both sides and its per-rank split.
struct Plan {
    let spec: ModelSpec
    let tp: Int
    let parallelEmbedding: Bool
    let embeddingDim: Int
    let items: [PlanItem]

    /// Rows `[r·n/tp, (r+1)·n/tp)`.
    static func even(_ n: Int, tp: Int, rank r: Int) -> Range<Int> { (n / tp * r)..<(n / tp * (r + 1)) }

    /// Build the layout; every divisibility rule is checked here, before anything is written.
    /// - Parameters:
    ///   - hasLMHead: false only when a checkpoint (read) has no lm_head tensor.
    /// - Throws: `KilnError(.invalidInput)` naming the HF tensor, the dimension and tp.
    init(spec s: ModelSpec, tp: Int, parallelEmbedding: Bool, embeddingDim: Int, hasLMHead: Bool = true) throws {
        self.spec = s
        self.tp = tp
        self.parallelEmbedding = parallelEmbedding
        self.embeddingDim = embeddingDim
        var items: [PlanItem] = []
        let isGPT = s.family == .gpt2
        let p = isGPT ? s.gpt2Prefix : "model."

        func divisible(_ n: Int, _ tensor: String, dim: Int, what: String) throws {
            guard n % tp == 0 else {
                throw KilnError(.invalidInput, path: ["tensor \"\(tensor)\""],
                                "dim \(dim) (\(n)) is not divisible by tp \(tp) (\(what))")
            }
        }
        func uniform(_ n: Int) -> [Range<Int>] { (0..<tp).map { Plan.even(n, tp: tp, rank: $0) } }

        func embedding(_ hf: String, _ trt: String, rows: Int) throws -> PlanItem {
            if parallelEmbedding && embeddingDim == 1 {
                try divisible(s.hidden, hf, dim: 1, what: "embedding sharded on the hidden dim")
            }
            return .plain(PlainSpec(hf: hf, trt: trt, kind: .embedding, rows: rows, cols: s.hidden))
        }
        func norm(_ hf: String, _ trt: String, bias: Bool) -> [PlanItem] {
            var out: [PlanItem] = [.plain(PlainSpec(hf: hf + ".weight", trt: trt + ".weight", kind: .replicated, rows: s.hidden, cols: 1))]
            if bias { out.append(.plain(PlainSpec(hf: hf + ".bias", trt: trt + ".bias", kind: .replicated, rows: s.hidden, cols: 1))) }
            return out
        }
        func simple(_ module: String, trt: String, out: Int, in inF: Int, parallel: Parallel, group: String, what: String) throws -> LinearSpec {
            let w = module + ".weight"
            if parallel == .column { try divisible(out, w, dim: isGPT ? 1 : 0, what: "column-parallel \(what)") }
            if parallel == .row { try divisible(inF, w, dim: isGPT ? 0 : 1, what: "row-parallel \(what)") }
            let ranks = parallel == .column ? uniform(out) : Array(repeating: 0..<out, count: tp)
            let part = LinearPart(module: module, weight: w, bias: module + ".bias", rowOffset: 0, rows: out, transposed: isGPT, rankRows: ranks)
            return LinearSpec(trt: trt, parallel: parallel, parts: [part], inFeatures: inF, paddedRowsPerRank: nil, shareGroup: group, tp: tp)
        }

        // Query heads split evenly; KV heads split evenly, or repeated when there are fewer than tp
        // (llama/convert.py dup_kv_weight: repeat_interleave, rank r gets head r / (tp / kv)).
        let qName = isGPT ? "\(p)h.0.attn.c_attn.weight" : "model.layers.0.self_attn.q_proj.weight"
        let kName = isGPT ? qName : "model.layers.0.self_attn.k_proj.weight"
        guard s.heads % tp == 0 else {
            throw KilnError(.invalidInput, path: ["tensor \"\(qName)\""],
                            "dim 0 (\(s.qRows)) holds \(s.heads) query heads, not divisible by tp \(tp) (column-parallel attention.qkv)")
        }
        guard s.kvHeads % tp == 0 || tp % s.kvHeads == 0 else {
            throw KilnError(.invalidInput, path: ["tensor \"\(kName)\""],
                            "dim 0 (\(s.kvRows)) holds \(s.kvHeads) key/value heads: tp \(tp) must divide it or be a multiple of it")
        }
        let qRanks = uniform(s.qRows)
        let kvRanks: [Range<Int>] = s.kvHeads >= tp ? uniform(s.kvRows) : (0..<tp).map { r in
            let h = r / (tp / s.kvHeads)
            return (h * s.headDim)..<((h + 1) * s.headDim)
        }

        if isGPT {
            items.append(try embedding(p + "wte.weight", "transformer.vocab_embedding.weight", rows: s.vocab))
            items.append(try embedding(p + "wpe.weight", "transformer.position_embedding.weight", rows: s.maxPositions))
        } else {
            items.append(try embedding("model.embed_tokens.weight", "transformer.vocab_embedding.weight", rows: s.vocab))
        }
        for i in 0..<s.layers {
            let t = "transformer.layers.\(i)."
            if isGPT {
                let h = "\(p)h.\(i)."
                items += norm(h + "ln_1", t + "input_layernorm", bias: true)
                let m = h + "attn.c_attn"
                let parts = [(0, s.qRows, qRanks), (s.qRows, s.kvRows, kvRanks), (s.qRows + s.kvRows, s.kvRows, kvRanks)].map {
                    LinearPart(module: m, weight: m + ".weight", bias: m + ".bias", rowOffset: $0.0, rows: $0.1, transposed: true, rankRows: $0.2)
                }
                items.append(.linear(LinearSpec(trt: t + "attention.qkv", parallel: .column, parts: parts, inFeatures: s.hidden,
                                                paddedRowsPerRank: nil, shareGroup: t + "attention.qkv", tp: tp)))
                items.append(.linear(try simple(h + "attn.c_proj", trt: t + "attention.dense", out: s.hidden, in: s.qRows,
                                                parallel: .row, group: t + "attention.dense", what: "attention.dense")))
                items += norm(h + "ln_2", t + "post_layernorm", bias: true)
                items.append(.linear(try simple(h + "mlp.c_fc", trt: t + "mlp.fc", out: s.intermediate, in: s.hidden,
                                                parallel: .column, group: t + "mlp.fc", what: "mlp.fc")))
                items.append(.linear(try simple(h + "mlp.c_proj", trt: t + "mlp.proj", out: s.hidden, in: s.intermediate,
                                                parallel: .row, group: t + "mlp.proj", what: "mlp.proj")))
            } else {
                let h = "model.layers.\(i)."
                items += norm(h + "input_layernorm", t + "input_layernorm", bias: false)
                let parts = [("q_proj", s.qRows, qRanks), ("k_proj", s.kvRows, kvRanks), ("v_proj", s.kvRows, kvRanks)].map {
                    let m = h + "self_attn." + $0.0
                    return LinearPart(module: m, weight: m + ".weight", bias: m + ".bias", rowOffset: 0, rows: $0.1, transposed: false, rankRows: $0.2)
                }
                items.append(.linear(LinearSpec(trt: t + "attention.qkv", parallel: .column, parts: parts, inFeatures: s.hidden,
                                                paddedRowsPerRank: nil, shareGroup: t + "attention.qkv", tp: tp)))
                items.append(.kvCache(layer: i, k: h + "self_attn.k_proj.k_scale", v: h + "self_attn.v_proj.v_scale", trt: t + "attention."))
                items.append(.linear(try simple(h + "self_attn.o_proj", trt: t + "attention.dense", out: s.hidden, in: s.qRows,
                                                parallel: .row, group: t + "attention.dense", what: "attention.dense")))
                items += norm(h + "post_attention_layernorm", t + "post_layernorm", bias: false)
                items.append(.linear(try simple(h + "mlp.gate_proj", trt: t + "mlp.fc", out: s.intermediate, in: s.hidden,
                                                parallel: .column, group: t + "mlp.fc+gate", what: "mlp.fc")))
                items.append(.linear(try simple(h + "mlp.up_proj", trt: t + "mlp.gate", out: s.intermediate, in: s.hidden,
                                                parallel: .column, group: t + "mlp.fc+gate", what: "mlp.gate")))
                items.append(.linear(try simple(h + "mlp.down_proj", trt: t + "mlp.proj", out: s.hidden, in: s.intermediate,
                                                parallel: .row, group: t + "mlp.proj", what: "mlp.proj")))
            }
        }
        if isGPT {
            items += norm(p + "ln_f", "transformer.ln_f", bias: true)
        } else {
            items += norm("model.norm", "transformer.ln_f", bias: false)
        }
        if hasLMHead {
            // The vocab is zero-padded to a multiple of tp (llama/convert.py, pad_vocab_size).
            let perRank = (s.vocab + tp - 1) / tp
            let ranks = (0..<tp).map { r in min(s.vocab, r * perRank)..<min(s.vocab, (r + 1) * perRank) }
            let part = LinearPart(module: "lm_head", weight: "lm_head.weight", bias: "lm_head.bias", rowOffset: 0, rows: s.vocab,
                                  transposed: false, rankRows: ranks)
            items.append(.linear(LinearSpec(trt: "lm_head", parallel: .column, parts: [part], inFeatures: s.hidden,
                                            paddedRowsPerRank: perRank, shareGroup: "lm_head", tp: tp)))
        }
        self.items = items
    }

    /// Rows of an embedding on each rank (dim 0 sharding zero-pads the rows to a multiple of tp).
    func embeddingRows(_ e: PlainSpec, rank r: Int) -> (rows: Range<Int>, stored: Int, cols: Range<Int>) {
        guard parallelEmbedding, tp > 1 else { return (0..<e.rows, e.rows, 0..<e.cols) }
        if embeddingDim == 1 { return (0..<e.rows, e.rows, Plan.even(e.cols, tp: tp, rank: r)) }
        let perRank = (e.rows + tp - 1) / tp
        return (min(e.rows, r * perRank)..<min(e.rows, (r + 1) * perRank), perRank, 0..<e.cols)
    }

    var linears: [LinearSpec] { items.compactMap { if case .linear(let l) = $0 { return l } else { return nil } } }

    /// TensorRT-LLM module name → HF module names (for exclude lists).
    func hfModules(ofTRT trt: String) -> [String] {
        guard let l = linears.first(where: { $0.trt == trt }) else { return [] }
        var seen: [String] = []
        for p in l.parts where !seen.contains(p.module) { seen.append(p.module) }
        return seen
    }
}
