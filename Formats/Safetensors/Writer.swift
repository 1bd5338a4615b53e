import KilnCore

/// Writes a model as one safetensors file, or as a folder (Hugging Face layout:
/// `model.safetensors` or shards + `model.safetensors.index.json`, plus the side files
/// such as config.json and tokenizer.json).
///
/// Options read from the context:
/// - `max-shard-size`: bytes per shard (`500MB`, `2GB`, `1000000`); implies a folder output.
/// - `overwrite`: replace an existing output file or non-empty folder (`--overwrite`); refused otherwise.
final class SafetensorsWriter: FormatWriter {
    let name = "safetensors"
    let summary = "safetensors file, or a Hugging Face folder with optional shards"
    let fileExtensions = ["safetensors"]
    var capabilities: [String] { ["weights", "sharded", "metadata"] + DType.safetensorsNames.map { $0.lowercased() } }

    func write(_ model: Model, to path: String, context: KilnContext) throws {
        try check(model)
        let maxShard = try context.options["max-shard-size"].map { try SafetensorsCheckpoint.parseSize($0) }
        let asFolder = maxShard != nil || !path.hasSuffix(".safetensors")
        guard asFolder else {
            let output = try AtomicOutput(path: path, directory: false, overwrite: AtomicOutput.overwriteRequested(context.options))
            try SafetensorsFile.write(model.tensors, metadata: model.metadata, to: output.workPath, progress: context.progress)
            try output.commit()
            return
        }
        let output = try AtomicOutput(path: path, directory: true, overwrite: AtomicOutput.overwriteRequested(context.options))
        try SafetensorsCheckpoint.writeFolder(model.tensors, metadata: model.metadata, folder: output.workPath,
                                              maxShardBytes: maxShard ?? Int.max, progress: context.progress)
        for (fileName, source) in model.attachments.sorted(by: { $0.key < $1.key }) {
            try FileSystem.copyFile(source, to: output.workPath + "/" + fileName)
        }
        if let config = model.config, model.attachments["config.json"] == nil {
            try SafetensorsCheckpoint.writeJSON(config, to: output.workPath + "/config.json")
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
}
