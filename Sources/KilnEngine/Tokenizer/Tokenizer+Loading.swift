import KilnCore

extension Tokenizer {
    /// Reads a tokenizer from a model folder (its `tokenizer.json`, else its sentencepiece
    /// `tokenizer.model`) or from a direct path to either file. Special-token ids come from
    /// `tokenizer_config.json`, `special_tokens_map.json`, `config.json` and
    /// `generation_config.json` beside it, where present.
    /// - Parameter path: a folder, a tokenizer.json, or a tokenizer.model.
    /// - Throws: `KilnError(.io)` if the file cannot be read; `KilnError(.invalidInput)`
    ///   for invalid JSON or a malformed tokenizer (missing vocab, bad merges…);
    ///   `KilnError(.unsupported)` for a component type Kiln does not implement (the
    ///   message lists the supported ones and names the file and JSON path).
    public static func load(path: String) throws -> Tokenizer {
        var file = path
        let folder: String
        if FileSystem.isDirectory(path) {
            folder = path
            if FileSystem.exists(path + "/tokenizer.json") {
                file = path + "/tokenizer.json"
            } else if FileSystem.exists(path + "/tokenizer.model") {
                file = path + "/tokenizer.model"
            } else {
                throw KilnError(.invalidInput, file: path,
                                "expected tokenizer.json or tokenizer.model in the folder, found neither")
            }
        } else {
            folder = AtomicOutput.parent(of: path)
        }
        let bytes = try FileSystem.readBytes(file)
        if file.hasSuffix(".model") {
            let json = try SentencePieceModel(bytes, file: file).tokenizerJSON()
            return try Tokenizer(json: json, file: file, folder: folder)
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes, rejectDuplicateKeys: false)
        } catch let error as KilnError {
            throw error.inFile(file)
        }
        return try Tokenizer(json: json, file: file, folder: folder)
    }
}

/// The special-token settings in the JSON files beside a tokenizer, in order of precedence.
struct SpecialTokenSources {
    /// tokenizer_config.json, special_tokens_map.json (token names).
    private var nameFiles: [JSONValue] = []
    /// config.json, generation_config.json (token ids).
    private var idFiles: [JSONValue] = []

    /// Reads whichever of the four files exist in `folder`.
    /// - Throws: `KilnError(.invalidInput)` naming the file if one is not valid JSON.
    init(folder: String?) throws {
        guard let folder else { return }
        func read(_ name: String) throws -> JSONValue? {
            let file = folder + "/" + name
            guard FileSystem.exists(file) else { return nil }
            do {
                return try JSONValue.parse(FileSystem.readBytes(file), rejectDuplicateKeys: false)
            } catch let error as KilnError {
                throw error.inFile(file)
            }
        }
        nameFiles = try ["tokenizer_config.json", "special_tokens_map.json"].compactMap(read)
        idFiles = try ["config.json", "generation_config.json"].compactMap(read)
    }

    /// The token spellings given for `key` (`"<s>"` or `{"content": "<s>", …}`).
    func names(_ key: String) -> [String] {
        nameFiles.compactMap { file in
            guard let value = file[key] else { return nil }
            return value.stringValue ?? value["content"]?.stringValue
        }
    }

    /// The ids given for `key` (an integer, or the first of a list).
    func ids(_ key: String) -> [Int32] {
        idFiles.compactMap { file in
            guard let value = file[key] else { return nil }
            let id = value.intValue ?? value[0]?.intValue
            return id.flatMap { Int32(exactly: $0) }.flatMap { $0 >= 0 ? $0 : nil }
        }
    }
}
