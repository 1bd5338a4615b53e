import KilnCore

/// Writes a TensorRT-LLM checkpoint: config.json + rank{i}.safetensors for i in 0..<tp (Layout.swift).
///
/// Options read from the context:
/// - `tp`: tensor-parallel size, 1...64 (default 1); every split dimension must divide (checked
///   before anything is written).
/// - `embedding-sharding`: shard the vocab embedding too (`use_parallel_embedding`): `true`, `0`
///   or `vocab` shard rows (`embedding_sharding_dim` 0), `1` or `hidden` shard columns.
/// - `overwrite`: replace an existing output file or non-empty folder (`--overwrite`); refused otherwise.
final class TensorRTLLMWriter: FormatWriter {
    let name = "trtllm"
    let summary = "TensorRT-LLM checkpoint folder (config.json + rank{i}.safetensors), tensor parallel"
    let fileExtensions: [String] = []
    var capabilities: [String] { ["weights", "tensor-parallel", "fp8", "int8-sq", "int4-awq", "kv-cache-fp8", "llama", "mistral", "qwen2", "gpt2"] }

    static let version = "0.1.0"

    func write(_ model: Model, to path: String, context: KilnContext) throws {
        let options = try WriterOptions(context.options)
        let job = try WriteJob(model: model, options: options)
        let output = try AtomicOutput(path: path, directory: true, overwrite: AtomicOutput.overwriteRequested(context.options))
        try SafetensorsCheckpoint.writeJSON(job.config.json(producerVersion: Self.version), to: output.workPath + "/" + Layout.configFile)
        for (r, tensors) in job.ranks.enumerated() {
            try SafetensorsFile.write(tensors, to: output.workPath + "/" + Layout.rankFile(r), progress: context.progress)
        }
        for (fileName, source) in model.attachments.sorted(by: { $0.key < $1.key }) where fileName != Layout.configFile {
            try FileSystem.copyFile(source, to: output.workPath + "/" + fileName)
        }
        try output.commit()
    }
}

/// The writer's options, validated.
struct WriterOptions {
    var tp = 1
    var embeddingDim: Int?

    init(_ options: [String: String]) throws {
        if let text = options["tp"] {
            guard let v = Int(text), v >= 1, v <= Limits.maxTP else {
                throw KilnError.mismatch(file: nil, path: ["--tp"], expected: "an integer in 1...\(Limits.maxTP)", found: "\"\(text)\"")
            }
            tp = v
        }
        if let text = options["embedding-sharding"] {
            switch text.lowercased() {
            case "", "true", "yes", "0", "vocab": embeddingDim = 0
            case "1", "hidden": embeddingDim = 1
            case "false", "no", "none": embeddingDim = nil
            default:
                throw KilnError.mismatch(file: nil, path: ["--embedding-sharding"], expected: "true, vocab (dim 0) or hidden (dim 1)", found: "\"\(text)\"")
            }
        }
    }
}

/// Everything the writer will put on disk, planned and validated in memory (tensors stay lazy).
struct WriteJob {
    var config: CheckpointConfig
    var ranks: [[Tensor]]

    init(model: Model, options: WriterOptions) throws {
        guard let hfConfig = model.config else {
            throw KilnError(.invalidInput, path: ["config.json"], "a TensorRT-LLM checkpoint needs the model's config.json (architecture and sizes); none was read with the input")
        }
        var spec = try ModelSpec.fromHuggingFace(hfConfig)
        if spec.family == .gpt2, model["transformer.wte.weight"] == nil, model["wte.weight"] != nil { spec.gpt2Prefix = "" }
        try spec.validate(file: "config.json")
        let tp = options.tp
        let plan = try Plan(spec: spec, tp: tp, parallelEmbedding: options.embeddingDim != nil, embeddingDim: options.embeddingDim ?? 0)
        let embedName = spec.family == .gpt2 ? spec.gpt2Prefix + "wte.weight" : "model.embed_tokens.weight"
        guard let embed = model[embedName] else {
            throw KilnError(.invalidInput, path: ["tensor \"\(embedName)\""], "missing: the embedding is required")
        }
        guard embed.dtype.isFloat, embed.quant == nil, embed.dtype.traits.trtllm != nil else {
            throw KilnError(.unsupported, path: ["tensor \"\(embedName)\""], "the embedding must be f32, f16 or bf16 (found \(embed.dtype))")
        }
        config = CheckpointConfig(spec: spec, dtype: embed.dtype, tp: tp, parallelEmbedding: options.embeddingDim != nil,
                                  embeddingShardingDim: options.embeddingDim ?? 0)
        var builder = RankBuilder(model: model, plan: plan, dtype: embed.dtype, record: model.quantization)
        try builder.build()
        config.quant = try builder.quantSection()
        config.sparse = builder.sparse
        ranks = builder.ranks
    }
}

/// Builds the per-rank tensor lists from the plan (all lazy) and collects what config.json must say.
struct RankBuilder {
    let model: Model
    let plan: Plan
    /// The checkpoint dtype (of the embedding): pre-quant scales are written in it.
    let dtype: DType
    let record: QuantizationRecord?
    var ranks: [[Tensor]]
    var consumed = Set<String>()
    var formats: [(trt: String, format: WeightFormat, hasInputScale: Bool)] = []
    var kvLayers = 0
    var sparse = false

    init(model: Model, plan: Plan, dtype: DType, record: QuantizationRecord?) {
        self.model = model
        self.plan = plan
        self.dtype = dtype
        self.record = record
        self.ranks = Array(repeating: [], count: plan.tp)
        self.sparse = record?.sparsity == "2:4"
    }

    var tp: Int { plan.tp }

    mutating func source(_ name: String) throws -> Tensor {
        guard let t = model[name] else {
            throw KilnError(.invalidInput, path: ["tensor \"\(name)\""], "missing: a \(plan.spec.architecture) checkpoint needs it")
        }
        consumed.insert(name)
        return t
    }

    func renamed(_ t: Tensor, _ name: String) -> Tensor {
        var c = t
        c.name = name
        c.quant = nil
        return c
    }

    mutating func emit(_ r: Int, _ t: Tensor) { ranks[r].append(t) }
    mutating func emitAll(_ t: Tensor) { for r in 0..<tp { ranks[r].append(t) } }

    mutating func build() throws {
        let shared = try fp8SharedScales()
        for item in plan.items {
            switch item {
            case .plain(let p): try plain(p)
            case .linear(let l): try linear(l, shared: shared)
            case .kvCache(_, let k, let v, let trt): try kvCache(k: k, v: v, trt: trt)
            }
        }
        for t in model.tensors where !consumed.contains(t.name) && !Layout.isBuffer(t.name) {
            throw KilnError(.unsupported, path: ["tensor \"\(t.name)\""],
                            "has no place in a TensorRT-LLM \(plan.spec.architecture) checkpoint")
        }
    }

    mutating func plain(_ p: PlainSpec) throws {
        let t = try source(p.hf)
        guard t.quant == nil else { throw KilnError(.unsupported, path: ["tensor \"\(p.hf)\""], "norms and embeddings must not be quantized") }
        let expected: Shape = p.kind == .embedding ? [p.rows, p.cols] : [p.rows]
        guard t.shape == expected else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(p.hf)\"", "shape"], expected: "\(expected) (from config.json)", found: "\(t.shape)")
        }
        guard p.kind == .embedding, plan.parallelEmbedding, tp > 1 else { return emitAll(renamed(t, p.trt)) }
        let e = Blocks.elementSize(t.dtype)
        for r in 0..<tp {
            let (rows, stored, cols) = plan.embeddingRows(p, rank: r)
            let blocks = [Block(source: Source(tensor: t), rows: rows, cols: cols), Block(source: nil, rows: 0..<0, cols: cols, zeroRows: stored - rows.count)]
            emit(r, Assemble.deferred(p.trt, t.dtype, [stored, cols.count]) { try Assemble.rows(blocks, cols: cols.count, elementSize: e) })
        }
    }

    mutating func kvCache(k: String, v: String, trt: String) throws {
        guard model[k] != nil || model[v] != nil else { return }
        let kt = try source(k), vt = try source(v)
        let ks = try ScaleValues.scalar(kt, "KV-cache scale"), vs = try ScaleValues.scalar(vt, "KV-cache scale")
        kvLayers += 1
        emitAll(Assemble.f32(trt + "k_cache_scaling_factor", [1], [ks]))
        emitAll(Assemble.f32(trt + "v_cache_scaling_factor", [1], [vs]))
        emitAll(Assemble.f32(trt + "kv_cache_scaling_factor", [1], [max(ks, vs)]))
    }

    /// The weight of each part: lm_head falls back to the embedding of a tied model.
    mutating func partWeights(_ l: LinearSpec) throws -> [Tensor] {
        try l.parts.map { p in
            if p.weight == "lm_head.weight", model[p.weight] == nil, plan.spec.tied {
                return try source(plan.spec.family == .gpt2 ? plan.spec.gpt2Prefix + "wte.weight" : "model.embed_tokens.weight")
            }
            return try source(p.weight)
        }
    }

    /// FP8 groups (qkv; fc + gate) share one weight scale and one activation scale: the maxima.
    mutating func fp8SharedScales() throws -> [String: (weight: Float, input: Float?)] {
        var groups: [String: [(Tensor, QuantSpec)]] = [:]
        for l in plan.linears {
            for p in l.parts {
                guard let t = model[p.weight], let q = t.quant, q.format == .fp8e4m3, q.granularity == .perTensor else { continue }
                groups[l.shareGroup, default: []].append((t, q))
            }
        }
        var out: [String: (Float, Float?)] = [:]
        for (key, members) in groups {
            let w = try members.map { try ScaleValues.scalar($0.1.scale, "scale") }.max()!
            let inputs = try members.compactMap { try $0.1.inputScale.map { try ScaleValues.scalar($0, "input scale") } }
            guard inputs.isEmpty || inputs.count == members.count else {
                throw KilnError(.invalidInput, path: ["tensor \"\(members[0].0.name)\""],
                                "\(key): some fused FP8 linears have a static input scale and some do not")
            }
            out[key] = (w, inputs.max())
        }
        return out
    }
}
