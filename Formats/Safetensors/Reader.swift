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
            if FileSystem.exists(path + "/" + Layout.indexFile) { return 90 }
            return safetensorsFiles(in: path).isEmpty ? 0 : 80
        }
        if path.hasSuffix(".safetensors") { return 100 }
        if path.hasSuffix(Layout.indexFile) { return 100 }
        return 0
    }

    func read(path: String, context: KilnContext) throws -> Model {
        if FileSystem.isDirectory(path) { return try readFolder(path) }
        if path.hasSuffix(".json") { return try readIndex(path, folder: AtomicOutput.parent(of: path)) }
        let model = try Model(sourcePath: path)
        try addFile(path, to: model)
        return model
    }

    /// All tensors of one file, mapped, in data order.
    func addFile(_ path: String, to model: Model, only wanted: Set<String>? = nil) throws {
        let file = try MappedFile(path: path)
        let header = try Header.read(file)
        for e in header.entries.sorted(by: { $0.begin < $1.begin }) {
            if let wanted, !wanted.contains(e.name) { continue }
            do {
                try model.add(Tensor(name: e.name, dtype: e.dtype, shape: e.shape,
                                     storage: .mapped(file, offset: header.dataStart + e.begin)))
            } catch let error as KilnError {
                throw error.inFile(path).adding(context: "tensor also defined in an earlier file")
            }
        }
        for (k, v) in header.metadata where model.metadata[k] == nil { model.metadata[k] = v }
    }

    func readFolder(_ folder: String) throws -> Model {
        let model: Model
        if FileSystem.exists(folder + "/" + Layout.indexFile) {
            model = try readIndex(folder + "/" + Layout.indexFile, folder: folder)
        } else {
            let files = safetensorsFiles(in: folder)
            guard !files.isEmpty else {
                throw KilnError(.invalidInput, file: folder, "no .safetensors file and no \(Layout.indexFile) in this folder")
            }
            model = try Model(sourcePath: folder)
            for f in files { try addFile(folder + "/" + f, to: model) }
        }
        for side in SafetensorsReader.sideFiles where FileSystem.exists(folder + "/" + side) {
            model.attachments[side] = folder + "/" + side
        }
        if FileSystem.exists(folder + "/config.json") {
            model.config = try readJSON(folder + "/config.json", limit: Limits.maxIndexBytes)
        }
        return model
    }

    /// A sharded checkpoint: every tensor of the weight map, from the shard it names.
    func readIndex(_ indexPath: String, folder: String) throws -> Model {
        let json = try readJSON(indexPath, limit: Limits.maxIndexBytes)
        guard let map = json["weight_map"]?.objectValue else {
            throw KilnError.mismatch(file: indexPath, path: ["weight_map"], expected: "an object {tensor: shard file}",
                                     found: json["weight_map"] == nil ? "nothing" : "another value")
        }
        var byShard: [String: Set<String>] = [:]
        var shardOrder: [String] = []
        for (tensor, value) in map {
            guard let shard = value.stringValue else {
                throw KilnError.mismatch(file: indexPath, path: ["weight_map", "\"\(tensor)\""], expected: "a shard file name", found: "another value")
            }
            try checkRelative(shard, index: indexPath, tensor: tensor)
            if byShard[shard] == nil { shardOrder.append(shard) }
            byShard[shard, default: []].insert(tensor)
        }
        let model = try Model(sourcePath: folder)
        for shard in shardOrder.sorted() {
            let shardPath = folder + "/" + shard
            let example = byShard[shard]!.sorted().first!
            guard FileSystem.exists(shardPath) else {
                throw KilnError(.invalidInput, file: indexPath, path: ["weight_map", "\"\(example)\""],
                                "shard \"\(shard)\" does not exist in \(folder)")
            }
            guard FileSystem.isInside(shardPath, folder: folder) else {
                throw KilnError(.invalidInput, file: indexPath, path: ["weight_map", "\"\(example)\""],
                                "shard \"\(shard)\" leads outside the checkpoint folder (link)")
            }
            let wanted = byShard[shard]!
            try addFile(shardPath, to: model, only: wanted)
            for t in wanted.sorted() where model[t] == nil {
                throw KilnError(.invalidInput, file: indexPath, path: ["weight_map", "\"\(t)\""],
                                "tensor is not in its shard \"\(shard)\"")
            }
        }
        return model
    }

    /// Shard names must stay inside the folder: no absolute paths, no "..".
    func checkRelative(_ shard: String, index: String, tensor: String) throws {
        let parts = shard.split(separator: "/", omittingEmptySubsequences: false)
        if shard.hasPrefix("/") || parts.contains("..") || shard.isEmpty {
            throw KilnError.mismatch(file: index, path: ["weight_map", "\"\(tensor)\""],
                                     expected: "a file name inside the checkpoint folder", found: "\"\(shard)\"")
        }
    }

    func readJSON(_ path: String, limit: Int) throws -> JSONValue {
        let file = try MappedFile(path: path)
        guard file.count <= limit else {
            throw KilnError.mismatch(file: path, expected: "at most \(limit) bytes", found: "\(file.count) bytes")
        }
        do {
            return try JSONValue.parse(file.bytes(offset: 0, count: file.count))
        } catch let error as KilnError {
            throw error.inFile(path)
        }
    }

    func safetensorsFiles(in folder: String) -> [String] {
        (FileSystem.list(folder) ?? []).filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }
    }
}

