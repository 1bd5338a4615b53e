import KilnCore

/// Reads a TensorRT-LLM checkpoint back into the IR with Hugging Face names: ranks merged, fused
/// linears split (qkv → q/k/v, fc → gate_proj, gate → up_proj), quantized payloads and scales
/// turned back into QuantSpecs. Float tensors of tp 1 stay mapped; merged ones are assembled
/// when first read.
final class TensorRTLLMReader: FormatReader {
    let name = "trtllm"
    let summary = "TensorRT-LLM checkpoint folder (config.json + rank{i}.safetensors), ranks merged into HF names"
    var capabilities: [String] { ["weights", "tensor-parallel", "fp8", "int8-sq", "int4-awq", "kv-cache-fp8", "llama", "mistral", "qwen2", "gpt2"] }

    func probe(path: String) -> Int {
        guard FileSystem.isDirectory(path), FileSystem.exists(path + "/" + Layout.rankFile(0)),
              let json = try? SafetensorsCheckpoint.readJSON(path + "/" + Layout.configFile, limit: Limits.maxConfigBytes),
              json["architecture"]?.stringValue != nil else { return 0 }
        return 95
    }

    func read(path: String, context: KilnContext) throws -> Model {
        try ReadJob(folder: path).model()
    }
}

/// The rank files of a checkpoint, with header-only shape checks.
struct RankSet {
    let folder: String
    let files: [SafetensorsFile]
    let entries: [[String: SafetensorsFile.Entry]]
    let describe: String

    var tp: Int { files.count }

    func has(_ name: String) -> Bool { entries[0][name] != nil }

    func path(_ r: Int) -> String { folder + "/" + Layout.rankFile(r) }

    /// Rank `r`'s tensor `name`, checked against the shape (and dtype) the config implies.
    func tensor(_ r: Int, _ name: String, shape: Shape, dtype: DType? = nil) throws -> Tensor {
        guard let e = entries[r][name] else {
            throw KilnError(.invalidInput, file: path(r), path: ["tensor \"\(name)\""], "missing (expected from \(describe))")
        }
        guard e.shape == shape else {
            throw KilnError.mismatch(file: path(r), path: ["tensor \"\(name)\"", "shape"], expected: "\(shape) (from \(describe))", found: "\(e.shape)")
        }
        if let dtype, e.dtype != dtype {
            throw KilnError.mismatch(file: path(r), path: ["tensor \"\(name)\"", "dtype"], expected: "\(dtype.safetensorsName) (as on rank 0)", found: e.dtype.safetensorsName)
        }
        return files[r].tensor(e)
    }

    /// The tensor on every rank (all checked).
    func all(_ name: String, shape: (Int) -> Shape, dtype: DType? = nil) throws -> [Tensor] {
        try (0..<tp).map { try tensor($0, name, shape: shape($0), dtype: dtype) }
    }

    /// The single value of a per-tensor scale on rank 0.
    func scalar(_ name: String) throws -> Float {
        let t = try tensor(0, name, shape: entries[0][name]?.shape ?? [1])
        return try ScaleValues.scalar(t, name)
    }
}

struct ReadJob {
    let folder: String
    let config: CheckpointConfig
    let ranks: RankSet
    let plan: Plan

    init(folder: String) throws {
        self.folder = folder
        let configPath = folder + "/" + Layout.configFile
        guard FileSystem.exists(configPath) else {
            throw KilnError(.invalidInput, file: configPath, "missing: a TensorRT-LLM checkpoint folder holds config.json and rank{i}.safetensors")
        }
        let json = try SafetensorsCheckpoint.readJSON(configPath, limit: Limits.maxConfigBytes)
        var config = try CheckpointConfig.parse(json, file: configPath)
        let tp = config.tp
        for r in 0..<tp where !FileSystem.exists(folder + "/" + Layout.rankFile(r)) {
            throw KilnError(.invalidInput, file: folder + "/" + Layout.rankFile(r), "missing: config.json says world_size \(tp)")
        }
        for f in FileSystem.list(folder) ?? [] where f.hasPrefix("rank") && f.hasSuffix(".safetensors") {
            let digits = f.dropFirst(4).dropLast(12)
            if let k = Int(digits), k >= tp {
                throw KilnError(.invalidInput, file: folder + "/" + f, "unexpected rank file: config.json says world_size \(tp) (ranks 0...\(tp - 1))")
            }
        }
        let files = try (0..<tp).map { try SafetensorsFile(path: folder + "/" + Layout.rankFile($0)) }
        let entries = files.map { Dictionary($0.entries.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }
        ranks = RankSet(folder: folder, files: files, entries: entries,
                        describe: "config.json: \(config.spec.architecture), tp \(tp)")
        let hasLMHead = ranks.has("lm_head.weight")
        if !hasLMHead { config.spec.tied = true }
        do {
            plan = try Plan(spec: config.spec, tp: tp, parallelEmbedding: config.parallelEmbedding,
                            embeddingDim: config.embeddingShardingDim, hasLMHead: hasLMHead)
        } catch let error as KilnError {
            throw error.inFile(configPath)
        }
        self.config = config
    }

    func model() throws -> Model {
        var out = ModelAssembly(job: self)
        for item in plan.items {
            switch item {
            case .plain(let p): try out.plain(p)
            case .linear(let l): try out.linear(l)
            case .kvCache(_, let k, let v, let trt): try out.kvCache(k: k, v: v, trt: trt)
            }
        }
        let model = try Model(tensors: out.tensors, config: config.spec.huggingFaceConfig(dtype: config.dtype),
                              provenance: ["read TensorRT-LLM checkpoint \(folder) (tp \(config.tp))"], sourcePath: folder)
        let q = config.quant
        if q.quantAlgo != nil || q.kvCacheAlgo != nil || config.sparse {
            model.quantization = QuantizationRecord(
                algorithm: q.quantAlgo ?? "NONE", kvCacheAlgorithm: q.kvCacheAlgo,
                groupSize: q.quantAlgo?.contains("AWQ") == true ? q.groupSize : nil,
                excludedModules: q.quantAlgo == nil ? [] : out.floatModules, sparsity: config.sparse ? "2:4" : nil)
        }
        model.metadata["trtllm.tp_size"] = String(config.tp)
        model.metadata["trtllm.dtype"] = config.dtype.traits.trtllm ?? config.dtype.name
        model.metadata["trtllm.rank_bytes"] = ranks.files.map { String($0.file.count) }.joined(separator: ",")
        model.attachments = try FileSystem.sideFiles(
            ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
             "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja"], in: folder)
        return model
    }
}
