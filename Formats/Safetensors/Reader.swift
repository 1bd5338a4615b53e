import KilnCore

/// Reads single safetensors files, sharded checkpoints (`model.safetensors.index.json`)
/// and Hugging Face model folders. Tensors stay mapped until used.
final class SafetensorsReader: FormatReader {
    let name = "safetensors"
    let summary = "safetensors files, sharded checkpoints and Hugging Face folders"
    var capabilities: [String] { ["weights", "sharded", "metadata"] + DType.safetensorsNames.map { $0.lowercased() } }

    /// Files copied along with the weights when a folder is read.
    static let sideFiles = [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
        "special_tokens_map.json", "vocab.txt", "merges.txt", "vocab.json", "added_tokens.json", "chat_template.jinja",
    ]

    func probe(path: String) -> Int {
        if FileSystem.isDirectory(path) {
            if FileSystem.exists(path + "/" + SafetensorsCheckpoint.indexFile) { return 90 }
            return safetensorsFiles(in: path).isEmpty ? 0 : 80
        }
        if path.hasSuffix(".safetensors") { return 100 }
        if path.hasSuffix(SafetensorsCheckpoint.indexFile) { return 100 }
        return 0
    }

    func read(path: String, context: KilnContext) throws -> Model {
        if FileSystem.isDirectory(path) { return try readFolder(path) }
        if path.hasSuffix(".json") { return try SafetensorsCheckpoint.readIndex(path, folder: AtomicOutput.parent(of: path)) }
        let model = try Model(sourcePath: path)
        try SafetensorsCheckpoint.addFile(path, to: model)
        return model
    }

    func readFolder(_ folder: String) throws -> Model {
        let model = try SafetensorsCheckpoint.readFolder(folder)
        model.attachments = try FileSystem.sideFiles(SafetensorsReader.sideFiles, in: folder)
        if FileSystem.exists(folder + "/config.json") {
            model.config = try SafetensorsCheckpoint.readJSON(folder + "/config.json")
        }
        return model
    }

    func safetensorsFiles(in folder: String) -> [String] {
        SafetensorsCheckpoint.safetensorsFiles(in: folder)
    }
}
