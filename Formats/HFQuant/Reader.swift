import KilnCore

/// Reads a unified Hugging Face quantized checkpoint into the IR: each `X.weight` with an
/// `X.weight_scale` becomes a quantized tensor (int4 payloads unpacked from ModelOpt's row-pair
/// packing), its scale tensors move into the QuantSpec, the record comes from hf_quant_config.json
/// (or config.json's quantization_config).
final class HFQuantReader: FormatReader {
    let name = "hf-quant"
    let summary = "unified Hugging Face quantized checkpoint (ModelOpt layout)"
    var capabilities: [String] { ["weights", "sharded", "fp8", "int8-sq", "int4-awq", "kv-cache-fp8"] }

    func probe(path: String) -> Int {
        guard FileSystem.isDirectory(path) else { return 0 }
        if FileSystem.exists(path + "/" + Layout.quantConfigFile) { return 95 }
        if let c = try? SafetensorsCheckpoint.readJSON(path + "/" + Layout.configFile),
           c["quantization_config"]?["quant_method"]?.stringValue == "modelopt" { return 92 }
        return 0
    }

    func read(path: String, context: KilnContext) throws -> Model {
        let raw = try SafetensorsCheckpoint.readFolder(path)
        // config.json travels into the output too: refuse links leading outside, as for side files.
        _ = try FileSystem.sideFiles([Layout.configFile, Layout.quantConfigFile], in: path)
        let configPath = path + "/" + Layout.configFile
        var config: JSONValue?
        if FileSystem.exists(configPath) { config = try SafetensorsCheckpoint.readJSON(configPath) }
        let record = try QuantRecordReader.read(folder: path, config: config)
        if var o = config?.objectValue {
            o["quantization_config"] = nil
            config = .object(o)
        }
        let sparse: QuantSpec.Sparsity? = record?.sparsity == "2:4" ? .twoFour : nil
        var consumed = Set<String>()
        var out: [Tensor] = []
        let file = path
        for t in raw.tensors where t.name.hasSuffix(".weight") {
            let module = String(t.name.dropLast(".weight".count))
            guard raw[module + "." + Layout.weightScale] != nil else { continue }
            consumed.formUnion([module + "." + Layout.weightScale, module + "." + Layout.weightScale2,
                                module + "." + Layout.inputScale, module + "." + Layout.preQuantScale])
        }
        for t in raw.tensors where !consumed.contains(t.name) {
            for suffix in [Layout.weightScale, Layout.weightScale2, Layout.inputScale, Layout.preQuantScale] where t.name.hasSuffix("." + suffix) {
                throw KilnError(.invalidInput, file: path, path: ["tensor \"\(t.name)\""],
                                "a \(suffix) without a quantized weight (\(t.name.dropLast(suffix.count))weight with a weight_scale)")
            }
        }
        for t in raw.tensors where !consumed.contains(t.name) {
            let module = String(t.name.dropLast(".weight".count))
            guard t.name.hasSuffix(".weight"), let scale = raw[module + "." + Layout.weightScale] else {
                out.append(t)
                continue
            }
            var q = try QuantLayout.spec(payload: t, scale: scale, file: file)
            q.spec.inputScale = raw[module + "." + Layout.inputScale]
            if let p = raw[module + "." + Layout.preQuantScale] {
                guard p.elementCount == q.payload.shape[1] else {
                    throw KilnError.mismatch(file: file, path: ["tensor \"\(p.name)\"", "shape"], expected: "[\(q.payload.shape[1])]", found: "\(p.shape)")
                }
                q.spec.preQuantScale = p
            }
            q.spec.sparsity = sparse
            var payload = q.payload
            payload.quant = q.spec
            out.append(payload)
        }
        let model = try Model(tensors: out, config: config, metadata: raw.metadata, quantization: record,
                              provenance: ["read unified HF checkpoint \(path)"], sourcePath: path)
        model.attachments = try FileSystem.sideFiles(Layout.sideFiles, in: path)
        return model
    }
}

/// Payload + QuantSpec of one stored linear.
enum QuantLayout {
    /// Rebuild the IR payload and spec from the stored weight and weight_scale.
    /// - Throws: `KilnError(.invalidInput)` when dtype and scale shape do not form one of the layouts.
    static func spec(payload t: Tensor, scale: Tensor, file: String) throws -> (payload: Tensor, spec: QuantSpec) {
        let at = ["tensor \"\(t.name)\""]
        guard t.shape.rank == 2 else {
            throw KilnError.mismatch(file: file, path: at + ["shape"], expected: "[out, in] (a quantized linear weight)", found: "\(t.shape)")
        }
        let (rows, cols) = (t.shape[0], t.shape[1])
        let scaleF32 = scale.converted(to: .f32)
        switch t.dtype {
        case .f8e4m3fn:
            if scale.shape == [rows], rows > 1 {
                return (t, QuantSpec(format: .fp8e4m3, granularity: .perChannel(axis: 0), scale: scaleF32))
            }
            guard scale.elementCount == 1 else {
                throw KilnError.mismatch(file: file, path: ["tensor \"\(scale.name)\"", "shape"],
                                         expected: "[] (per-tensor FP8 scale) or [\(rows)] (per-channel)", found: "\(scale.shape)")
            }
            return (t, QuantSpec(format: .fp8e4m3, granularity: .perTensor, scale: scaleF32))
        case .i8:
            guard scale.shape == [rows] else {
                throw KilnError.mismatch(file: file, path: ["tensor \"\(scale.name)\"", "shape"], expected: "[\(rows)] (per-channel INT8 scale)", found: "\(scale.shape)")
            }
            return (t, QuantSpec(format: .int8, granularity: .perChannel(axis: 0), scale: scaleF32))
        case .u8:
            // A file controls `rows`: [2^62 + 1, 0] holds no bytes but doubles past Int.max.
            let (unpackedRows, overflow) = rows.multipliedReportingOverflow(by: 2)
            guard !overflow, scale.shape.rank == 2, scale.shape[0] == unpackedRows, scale.shape[1] > 0, cols % scale.shape[1] == 0 else {
                let full = overflow ? "2 × \(rows)" : "\(unpackedRows)"
                throw KilnError.mismatch(file: file, path: ["tensor \"\(scale.name)\"", "shape"],
                                         expected: "[\(full), \(cols) / group] (INT4 group scales of a [\(full), \(cols)] weight packed as [\(rows), \(cols)])",
                                         found: "\(scale.shape)")
            }
            let group = cols / scale.shape[1]
            let unpacked = Tensor(name: t.name, dtype: .i4, shape: [unpackedRows, cols], storage: .deferred {
                let values = try t.withBytes { Int4Packing.unpackRowPairs($0, packedRows: rows, cols: cols) }
                return TensorBuffer(values: Int4Packing.packIR(values))
            })
            return (unpacked, QuantSpec(format: .int4, granularity: .perBlock(axis: 1, size: group), scale: scaleF32))
        default:
            throw KilnError(.invalidInput, file: file, path: at + ["dtype"],
                            "a weight with a weight_scale must be F8_E4M3, I8 or U8 (packed int4); found \(t.dtype.safetensorsName)")
        }
    }
}

/// The QuantizationRecord from hf_quant_config.json, or from config.json's quantization_config.
enum QuantRecordReader {
    static func read(folder: String, config: JSONValue?) throws -> QuantizationRecord? {
        let path = folder + "/" + Layout.quantConfigFile
        let quantization: JSONValue
        let file: String
        if FileSystem.exists(path) {
            let json = try SafetensorsCheckpoint.readJSON(path)
            guard let q = json["quantization"], q.objectValue != nil else {
                throw KilnError.mismatch(file: path, path: ["quantization"], expected: "an object", found: SafetensorsFile.describe(json["quantization"]))
            }
            (quantization, file) = (q, path)
        } else if let q = config?["quantization_config"], q.objectValue != nil {
            var o = q.objectValue!
            if o["exclude_modules"] == nil { o["exclude_modules"] = o["ignore"] }
            if o["kv_cache_quant_algo"] == nil, let s = o["kv_cache_scheme"] {
                o["kv_cache_quant_algo"] = s.stringValue.map { .string($0) } ?? (s["type"]?.stringValue == "float" ? "FP8" : "INT8")
            }
            (quantization, file) = (.object(o), folder + "/" + Layout.configFile)
        } else {
            return nil
        }
        func string(_ key: String, allowed: [String]) throws -> String? {
            guard let v = quantization[key], !v.isNull else { return nil }
            guard let s = v.stringValue, allowed.contains(s) else {
                throw KilnError.mismatch(file: file, path: ["quantization", key], expected: "null or one of \(allowed.joined(separator: ", "))", found: SafetensorsFile.describe(v))
            }
            return s
        }
        let algo = try string("quant_algo", allowed: Layout.quantAlgorithms)
        let kv = try string("kv_cache_quant_algo", allowed: Layout.kvCacheAlgorithms)
        var group: Int?
        if let g = quantization["group_size"], !g.isNull {
            guard let v = g.intValue, v > 0 else {
                throw KilnError.mismatch(file: file, path: ["quantization", "group_size"], expected: "a positive integer", found: SafetensorsFile.describe(g))
            }
            group = Int(v)
        }
        var exclude: [String] = []
        if let e = quantization["exclude_modules"], !e.isNull {
            guard let items = e.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else {
                throw KilnError.mismatch(file: file, path: ["quantization", "exclude_modules"], expected: "a list of module names", found: SafetensorsFile.describe(e))
            }
            exclude = items.map { $0.stringValue! }
        }
        let sparsity = quantization["sparsity"]?.stringValue
        guard algo != nil || kv != nil || sparsity != nil else { return nil }
        return QuantizationRecord(algorithm: algo ?? "NONE", kvCacheAlgorithm: kv,
                                  groupSize: algo?.contains("AWQ") == true ? group : nil,
                                  excludedModules: exclude, sparsity: sparsity)
    }
}
