import KilnCore

/// Writes a model as one safetensors file, or as a folder (Hugging Face layout:
/// `model.safetensors` or shards + `model.safetensors.index.json`, plus the side files
/// such as config.json and tokenizer.json).
///
/// Options read from the context:
/// - `max-shard-size`: bytes per shard (`500MB`, `2GB`, `1000000`); implies a folder output.
final class SafetensorsWriter: FormatWriter {
    let name = "safetensors"
    let summary = "safetensors file, or a Hugging Face folder with optional shards"
    let fileExtensions = ["safetensors"]
    var capabilities: [String] { ["weights", "sharded", "metadata"] + DType.safetensorsNames.map { $0.lowercased() } }

    func write(_ model: Model, to path: String, context: KilnContext) throws {
        try check(model)
        let maxShard = try context.options["max-shard-size"].map { try parseSize($0) }
        let asFolder = maxShard != nil || !path.hasSuffix(".safetensors")
        guard asFolder else {
            let output = try AtomicOutput(path: path, directory: false)
            try writeFile(model.tensors, metadata: model.metadata, to: output.workPath, progress: context.progress)
            try output.commit()
            return
        }
        let output = try AtomicOutput(path: path, directory: true)
        let shards = plan(model.tensors, maxBytes: maxShard ?? Int.max)
        if shards.count == 1 {
            try writeFile(shards[0], metadata: model.metadata, to: output.workPath + "/" + Layout.singleFile, progress: context.progress)
        } else {
            var weightMap = JSONObject()
            for (i, shard) in shards.enumerated() {
                let file = Layout.shardName(i + 1, of: shards.count)
                try writeFile(shard, metadata: model.metadata, to: output.workPath + "/" + file, progress: context.progress)
                for t in shard { weightMap[t.name] = .string(file) }
            }
            let sortedMap = JSONObject(weightMap.keys.sorted().map { ($0, weightMap[$0]!) })
            let index: JSONValue = .object(JSONObject([
                ("metadata", .object(JSONObject([("total_size", .int(Int64(model.byteCount)))]))),
                ("weight_map", .object(sortedMap)),
            ]))
            let sink = try FileSink(path: output.workPath + "/" + Layout.indexFile)
            try sink.write(index.serialized(pretty: true) + "\n")
            try sink.finish()
        }
        for (fileName, source) in model.attachments.sorted(by: { $0.key < $1.key }) {
            try FileSystem.copyFile(source, to: output.workPath + "/" + fileName)
        }
        if let config = model.config, model.attachments["config.json"] == nil {
            let sink = try FileSink(path: output.workPath + "/config.json")
            try sink.write(config.serialized(pretty: true) + "\n")
            try sink.finish()
        }
        try output.commit()
    }

    /// Refuse what safetensors cannot hold, before anything is written.
    func check(_ model: Model) throws {
        for t in model.tensors {
            guard t.dtype.traits.safetensors != nil else {
                throw KilnError(.unsupported, path: ["tensor \"\(t.name)\""],
                                "dtype \(t.dtype) has no safetensors name; pack it first (a quantized format writer does)")
            }
            guard t.quant == nil else {
                throw KilnError(.unsupported, path: ["tensor \"\(t.name)\""],
                                "tensor is quantized; plain safetensors has no place for its scales — write it with a quantized checkpoint format (--to trtllm or hf-quant)")
            }
        }
    }

    /// Greedy split into shards of at most `maxBytes` (a tensor larger than that gets a shard of its own).
    func plan(_ tensors: [Tensor], maxBytes: Int) -> [[Tensor]] {
        var shards: [[Tensor]] = [[]]
        var size = 0
        for t in tensors {
            if !shards[shards.count - 1].isEmpty, size + t.byteCount > maxBytes {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(t)
            size += t.byteCount
        }
        return shards
    }

    /// One safetensors file: header (padded with spaces to 8 bytes), then each tensor streamed.
    func writeFile(_ tensors: [Tensor], metadata: [String: String], to path: String, progress: ProgressSink?) throws {
        var header = JSONObject()
        if !metadata.isEmpty {
            header[Layout.metadataKey] = .object(JSONObject(metadata.keys.sorted().map { ($0, .string(metadata[$0]!)) }))
        }
        var offset = 0
        for t in tensors {
            header[t.name] = .object(JSONObject([
                ("dtype", .string(t.dtype.safetensorsName)),
                ("shape", .array(t.shape.dims.map { .int(Int64($0)) })),
                ("data_offsets", .array([.int(Int64(offset)), .int(Int64(offset + t.byteCount))])),
            ]))
            offset += t.byteCount
        }
        var text = Array(JSONValue.object(header).serialized().utf8)
        while text.count % Layout.headerAlignment != 0 { text.append(Layout.headerPadding) }
        let sink = try FileSink(path: path)
        var length = UInt64(text.count).littleEndian
        try withUnsafeBytes(of: &length) { try sink.write($0) }
        try sink.write(text)
        let total = offset
        var written = 0
        for t in tensors {
            let start = sink.offset
            do {
                try t.streamBytes { chunk in
                    try sink.write(chunk)
                    written += chunk.count
                    progress?.update(label: "writing", done: written, total: total)
                }
            } catch let error as KilnError {
                throw error.adding(context: "tensor \"\(t.name)\"")
            }
            guard sink.offset - start == t.byteCount else {
                throw KilnError(.internal, file: path, path: ["tensor \"\(t.name)\""],
                                "wrote \(sink.offset - start) bytes, expected \(t.byteCount)")
            }
        }
        try sink.finish()
    }
}

/// `500MB`, `2GB`, `1.5GiB`, `1000000` → bytes (decimal units as Hugging Face uses them).
func parseSize(_ text: String) throws -> Int {
    let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
    let upper = text.uppercased().filter { $0 != " " }
    for (suffix, factor) in units where upper.hasSuffix(suffix) {
        if let v = Double(upper.dropLast(suffix.count)), v > 0 { return Int(v * factor) }
    }
    if let v = Int(upper), v > 0 { return v }
    throw KilnError.mismatch(file: nil, path: ["--max-shard-size"], expected: "a size like 500MB, 2GB or a byte count", found: "\"\(text)\"")
}

