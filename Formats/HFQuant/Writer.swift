import KilnCore

/// Writes a unified Hugging Face quantized checkpoint (Layout.swift): HF names, packed payloads and
/// scales per linear, config.json with `quantization_config`, and `hf_quant_config.json`.
///
/// Options read from the context:
/// - `max-shard-size`: bytes per shard (default 5GB, as save_pretrained).
/// - `overwrite`: replace an existing output file or non-empty folder (`--overwrite`); refused otherwise.
final class HFQuantWriter: FormatWriter {
    let name = "hf-quant"
    let summary = "unified Hugging Face quantized checkpoint (ModelOpt layout: hf_quant_config.json, weight_scale, ...)"
    let fileExtensions: [String] = []
    var capabilities: [String] { ["weights", "sharded", "fp8", "int8-sq", "int4-awq", "kv-cache-fp8"] }

    static let version = "0.1.0"

    func write(_ model: Model, to path: String, context: KilnContext) throws {
        let maxShard = try context.options["max-shard-size"].map { try SafetensorsCheckpoint.parseSize($0) } ?? Layout.defaultMaxShardBytes
        let export = try Export(model: model)
        let output = try AtomicOutput(path: path, directory: true, overwrite: AtomicOutput.overwriteRequested(context.options))
        try SafetensorsCheckpoint.writeFolder(export.tensors, metadata: model.metadata, folder: output.workPath,
                                              maxShardBytes: maxShard, progress: context.progress)
        try SafetensorsCheckpoint.writeJSON(export.config(model.config), to: output.workPath + "/" + Layout.configFile)
        if let q = export.quantConfig {
            try SafetensorsCheckpoint.writeJSON(q, to: output.workPath + "/" + Layout.quantConfigFile)
        }
        for (fileName, source) in model.attachments.sorted(by: { $0.key < $1.key })
        where fileName != Layout.configFile && fileName != Layout.quantConfigFile {
            try FileSystem.copyFile(source, to: output.workPath + "/" + fileName)
        }
        try output.commit()
    }
}

/// What the writer puts on disk, prepared in memory (payloads stay lazy).
struct Export {
    var tensors: [Tensor] = []
    var algorithm: String?
    var kvCache: String?
    var groupSize: Int?
    var exclude: [String] = []
    var sparse = false

    init(model: Model) throws {
        var replaced: [String: Tensor] = [:]
        var specs: [String: QuantSpec] = [:]
        for t in model.tensors { if let q = t.quant { specs[t.name] = q } }
        try Fusion.apply(model: model, specs: &specs, replaced: &replaced)

        var formats: [(String, Format)] = []
        var hasInputScale = false
        for original in model.tensors {
            let t = replaced[original.name] ?? original
            guard let q = specs[t.name] else {
                var plain = t
                plain.quant = nil
                tensors.append(plain)
                continue
            }
            guard t.name.hasSuffix(".weight") else {
                throw KilnError(.unsupported, path: ["tensor \"\(t.name)\""], "only linear weights (…​.weight) can be quantized in a unified HF checkpoint")
            }
            let module = String(t.name.dropLast(".weight".count))
            let format = try Format.classify(t, q)
            formats.append((module, format))
            if q.sparsity == .twoFour { sparse = true }
            tensors += try Export.quantized(t, q, module: module, format: format)
            if q.inputScale != nil { hasInputScale = true }
        }
        if model.quantization?.sparsity == "2:4" { sparse = true }
        let record = model.quantization
        if let first = formats.first {
            guard formats.allSatisfy({ $0.1.algorithm == first.1.algorithm }) else {
                throw KilnError(.unsupported, path: ["tensor \"\(first.0).weight\""], "mixed quantization formats in one checkpoint are not supported")
            }
            var algo = first.1.algorithm
            if case .int4(let g) = first.1 {
                groupSize = g
                if record?.algorithm == "W4A8_AWQ" || hasInputScale { algo = "W4A8_AWQ" }
            }
            // INT8 SmoothQuant without static input scales: activations quantized per token at run time.
            if first.1 == .int8, !hasInputScale, record?.algorithm == Export.int8PerToken { algo = Export.int8PerToken }
            if let recorded = record?.algorithm, recorded != algo {
                throw KilnError.mismatch(file: nil, path: ["quantization record"], expected: "\"\(algo)\" (what the tensors hold)", found: "\"\(recorded)\"")
            }
            algorithm = algo
            // Float linears, plus lm_head (ModelOpt appends it whenever anything is quantized).
            var list = record?.excludedModules ?? []
            let quantizedModules = Set(formats.map(\.0))
            for t in model.tensors where t.quant == nil && t.shape.rank == 2 && t.name.hasSuffix(".weight") {
                let module = String(t.name.dropLast(".weight".count))
                if Layout.linearSuffixes.contains(where: { module.hasSuffix($0) }), !quantizedModules.contains(module), !list.contains(module) {
                    list.append(module)
                }
            }
            if !list.contains("lm_head") { list.append("lm_head") }
            exclude = list
        }
        let hasKV = model.tensors.contains { $0.name.hasSuffix(".k_scale") || $0.name.hasSuffix(".v_scale") }
        if hasKV {
            let kv = record?.kvCacheAlgorithm ?? "FP8"
            guard Layout.kvCacheAlgorithms.contains(kv) else {
                throw KilnError.mismatch(file: nil, path: ["quantization record", "kv cache"], expected: Layout.kvCacheAlgorithms.joined(separator: " or "), found: "\"\(kv)\"")
            }
            kvCache = kv
        } else if let kv = record?.kvCacheAlgorithm {
            throw KilnError(.invalidInput, path: ["quantization record", "kv cache"], "says \(kv) but the model has no k_scale / v_scale tensors")
        }
    }

    /// TensorRT-LLM's name of INT8 SmoothQuant with per-token dynamic activations (the record's algorithm).
    static let int8PerToken = "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN"

    /// The tensors of one quantized linear: payload (packed for int4), then its scales.
    static func quantized(_ t: Tensor, _ q: QuantSpec, module: String, format: Format) throws -> [Tensor] {
        var out: [Tensor] = []
        let weightName = module + ".weight"
        switch format {
        case .fp8, .fp8PerChannel, .int8:
            out.append(Tensor(name: weightName, dtype: t.dtype, shape: t.shape, storage: t.storage))
        case .int4:
            let (rows, cols) = (t.shape[0], t.shape[1])
            guard rows % 2 == 0 else {
                throw KilnError(.invalidInput, path: ["tensor \"\(t.name)\""], "dim 0 (\(rows)) is odd; int4 packs two output rows per byte")
            }
            out.append(Tensor(name: weightName, dtype: .u8, shape: [rows / 2, cols], storage: .deferred {
                let values = try Int4Packing.unpackIR(t)
                return TensorBuffer(values: values.withUnsafeBufferPointer { Int4Packing.packRowPairs($0, rows: rows, cols: cols) })
            }))
        }
        let scaleShape: Shape
        switch format {
        case .fp8: scaleShape = []
        case .fp8PerChannel, .int8: scaleShape = [t.shape[0]]
        case .int4(let g): scaleShape = [t.shape[0], t.shape[1] / g]
        }
        out.append(Tensor(name: module + "." + Layout.weightScale, dtype: q.scale.dtype, shape: scaleShape, storage: q.scale.storage).converted(to: .f32))
        if case .int4 = format, q.inputScale != nil {
            let m = try q.scale.floats().max() ?? 0
            out.append(Tensor(name: module + "." + Layout.weightScale2, dtype: .f32, shape: [], values: [m * 7 / 448]))
        }
        if let s = q.inputScale {
            out.append(Tensor(name: module + "." + Layout.inputScale, dtype: s.dtype, shape: [], storage: s.storage).converted(to: .f32))
        }
        if let p = q.preQuantScale {
            out.append(Tensor(name: module + "." + Layout.preQuantScale, dtype: p.dtype, shape: [t.shape[1]], storage: p.storage))
        }
        return out
    }

    /// config.json: the model's config with `quantization_config` last (convert_hf_quant_config_format).
    func config(_ original: JSONValue?) throws -> JSONValue {
        guard var o = original?.objectValue else {
            throw KilnError(.invalidInput, path: ["config.json"], "a unified HF checkpoint needs the model's config.json; none was read with the input")
        }
        o["quantization_config"] = nil
        guard let algorithm else { return .object(o) }
        var q = JSONObject()
        if algorithm == "FP8" {
            q["config_groups"] = .object(JSONObject([("group_0", .object(JSONObject([
                ("input_activations", .object(JSONObject([("dynamic", false), ("num_bits", 8), ("type", "float")]))),
                ("weights", .object(JSONObject([("dynamic", false), ("num_bits", 8), ("type", "float")]))),
                ("targets", .array(["Linear"])),
            ])))]))
        }
        q["ignore"] = .array(exclude.map { .string($0) })
        q["quant_algo"] = .string(algorithm)
        if let kvCache {
            q["kv_cache_scheme"] = kvCache == "FP8" ? .object(JSONObject([("dynamic", false), ("num_bits", 8), ("type", "float")])) : .string(kvCache)
        }
        if sparse { q["sparsity"] = "2:4" }
        q["producer"] = producer
        q["quant_method"] = "modelopt"
        o["quantization_config"] = .object(q)
        return .object(o)
    }

    var producer: JSONValue { .object(JSONObject([("name", "kiln"), ("version", .string(HFQuantWriter.version))])) }

    /// hf_quant_config.json (get_quant_config + process_layer_quant_config), nil for a dense float model.
    /// A float model with 2:4 sparse weights gets one too (`quant_algo` null, `sparsity` "2:4"), so the
    /// pattern is declared; its config.json stays a plain float config that every loader reads.
    var quantConfig: JSONValue? {
        guard algorithm != nil || kvCache != nil || sparse else { return nil }
        var q = JSONObject()
        q["quant_algo"] = algorithm.map { .string($0) } ?? .null
        q["kv_cache_quant_algo"] = kvCache.map { .string($0) } ?? .null
        if let groupSize {
            q["group_size"] = .int(Int64(groupSize))
            q["has_zero_point"] = false
            q["pre_quant_scale"] = true
        }
        q["exclude_modules"] = .array(exclude.map { .string($0) })
        if sparse { q["sparsity"] = "2:4" }
        return .object(JSONObject([("producer", producer), ("quantization", .object(q))]))
    }
}
