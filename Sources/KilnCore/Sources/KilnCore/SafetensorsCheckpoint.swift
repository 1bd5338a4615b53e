// Hugging Face sharded safetensors checkpoints:
//
//   model.safetensors                       a single file, or
//   model-00001-of-00003.safetensors ...    shards, listed by
//   model.safetensors.index.json            { "metadata": { "total_size": bytes },
//                                             "weight_map": { "<tensor>": "<shard file>" } }
//
// Shared by the safetensors plugin and the unified HF quantized checkpoint plugin.

/// Reading and writing Hugging Face safetensors folders (single file or shards + index).
public enum SafetensorsCheckpoint {
    public static let indexFile = "model.safetensors.index.json"
    public static let singleFile = "model.safetensors"
    /// Largest index.json (or config.json) accepted.
    public static let maxIndexBytes = 100_000_000

    /// `model-00001-of-00003.safetensors`
    public static func shardName(_ i: Int, of n: Int) -> String {
        func pad(_ v: Int) -> String { String(repeating: "0", count: max(0, 5 - String(v).count)) + String(v) }
        return "model-\(pad(i))-of-\(pad(n)).safetensors"
    }

    /// All tensors of one file, mapped, in data order, appended to `model`; header metadata is
    /// merged (first file wins on a key).
    /// - Throws: header errors of the file; a duplicate tensor name (already in `model`).
    public static func addFile(_ path: String, to model: Model, only wanted: Set<String>? = nil) throws {
        let st = try SafetensorsFile(path: path)
        for t in st.tensors(only: wanted) {
            do {
                try model.add(t)
            } catch let error as KilnError {
                throw error.inFile(path).adding(context: "tensor also defined in an earlier file")
            }
        }
        for (k, v) in st.metadata where model.metadata[k] == nil { model.metadata[k] = v }
    }

    /// A sharded checkpoint: every tensor of the weight map, from the shard it names.
    /// Shard names must stay inside `folder` (no absolute paths, no "..", no links out).
    /// - Throws: `KilnError(.invalidInput)` naming the index file and the tensor entry at fault.
    public static func readIndex(_ indexPath: String, folder: String) throws -> Model {
        let json = try readJSON(indexPath, limit: maxIndexBytes)
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

    /// The tensors of a folder: through its index when there is one, else every `.safetensors` file.
    /// - Throws: `KilnError(.invalidInput)` when the folder has neither.
    public static func readFolder(_ folder: String) throws -> Model {
        if FileSystem.exists(folder + "/" + indexFile) {
            return try readIndex(folder + "/" + indexFile, folder: folder)
        }
        let files = safetensorsFiles(in: folder)
        guard !files.isEmpty else {
            throw KilnError(.invalidInput, file: folder, "no .safetensors file and no \(indexFile) in this folder")
        }
        let model = try Model(sourcePath: folder)
        for f in files { try addFile(folder + "/" + f, to: model) }
        return model
    }

    /// Shard names must stay inside the folder: no absolute paths, no "..".
    static func checkRelative(_ shard: String, index: String, tensor: String) throws {
        let parts = shard.split(separator: "/", omittingEmptySubsequences: false)
        if shard.hasPrefix("/") || parts.contains("..") || shard.isEmpty {
            throw KilnError.mismatch(file: index, path: ["weight_map", "\"\(tensor)\""],
                                     expected: "a file name inside the checkpoint folder", found: "\"\(shard)\"")
        }
    }

    /// Parse a small JSON file (config.json, index.json), refusing files over `limit` bytes.
    /// - Throws: `KilnError` naming the file (and the byte offset of a syntax error).
    public static func readJSON(_ path: String, limit: Int = maxIndexBytes) throws -> JSONValue {
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

    /// Write a small JSON file, pretty-printed, with a trailing newline.
    public static func writeJSON(_ value: JSONValue, to path: String) throws {
        let sink = try FileSink(path: path)
        try sink.write(value.serialized(pretty: true) + "\n")
        try sink.finish()
    }

    /// `.safetensors` files of a folder (hidden files excluded), sorted.
    public static func safetensorsFiles(in folder: String) -> [String] {
        (FileSystem.list(folder) ?? []).filter { $0.hasSuffix(".safetensors") && !$0.hasPrefix(".") }
    }

    /// Write `tensors` into `folder` as `model.safetensors`, or as shards of at most `maxShardBytes`
    /// plus `model.safetensors.index.json` when they do not fit in one.
    ///
    /// A tensor larger than the limit gets a shard of its own. The index lists tensors sorted by
    /// name and `total_size` = sum of tensor bytes, as `save_pretrained` writes it.
    /// - Throws: whatever ``SafetensorsFile/write(_:metadata:to:progress:)`` throws.
    public static func writeFolder(_ tensors: [Tensor], metadata: [String: String], folder: String,
                                   maxShardBytes: Int = Int.max, progress: ProgressSink? = nil) throws {
        let shards = plan(tensors, maxBytes: maxShardBytes)
        if shards.count == 1 {
            try SafetensorsFile.write(shards[0], metadata: metadata, to: folder + "/" + singleFile, progress: progress)
            return
        }
        var weightMap = JSONObject()
        for (i, shard) in shards.enumerated() {
            let file = shardName(i + 1, of: shards.count)
            try SafetensorsFile.write(shard, metadata: metadata, to: folder + "/" + file, progress: progress)
            for t in shard { weightMap[t.name] = .string(file) }
        }
        let sortedMap = JSONObject(weightMap.keys.sorted().map { ($0, weightMap[$0]!) })
        let total = tensors.reduce(0) { $0 + $1.byteCount }
        let index: JSONValue = .object(JSONObject([
            ("metadata", .object(JSONObject([("total_size", .int(Int64(total)))]))),
            ("weight_map", .object(sortedMap)),
        ]))
        try writeJSON(index, to: folder + "/" + indexFile)
    }

    /// Greedy split into shards of at most `maxBytes` (a tensor larger than that gets a shard of its own).
    public static func plan(_ tensors: [Tensor], maxBytes: Int) -> [[Tensor]] {
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

    /// `500MB`, `2GB`, `1.5GiB`, `1000000` → bytes (decimal units as Hugging Face uses them).
    /// - Throws: `KilnError(.invalidInput)` on `--max-shard-size` for anything else.
    public static func parseSize(_ text: String) throws -> Int {
        let units: [(String, Double)] = [("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)]
        let upper = text.uppercased().filter { $0 != " " }
        for (suffix, factor) in units where upper.hasSuffix(suffix) {
            if let v = Double(upper.dropLast(suffix.count)), v > 0 { return Int(v * factor) }
        }
        if let v = Int(upper), v > 0 { return v }
        throw KilnError.mismatch(file: nil, path: ["--max-shard-size"], expected: "a size like 500MB, 2GB or a byte count", found: "\"\(text)\"")
    }
}
