import KilnCore
import KilnEngine
import KilnHost

/// Shared steps of the engine commands: load a model through the plugins, find its tokenizer,
/// measure perplexity by protocol kiln-ppl-v1.
enum EngineSupport {
    /// Read `path` with the most confident reader (or `--from`).
    static func loadModel(_ path: String, registry: PluginRegistry, from: String? = nil, context: KilnContext) throws -> Model {
        try registry.reader(for: path, named: from).read(path: path, context: context)
    }

    /// The tokenizer for `model`: `--tokenizer`, else the tokenizer files beside the model.
    static func tokenizer(for model: Model, explicit: String?) throws -> Tokenizer {
        if let explicit { return try Tokenizer.load(path: explicit) }
        if let attached = model.attachments["tokenizer.json"] ?? model.attachments["tokenizer.model"] {
            return try Tokenizer.load(path: attached)
        }
        if let source = model.sourcePath {
            let folder = FileSystem.isDirectory(source) ? source : AtomicOutput.parent(of: source)
            if FileSystem.exists(folder + "/tokenizer.json") || FileSystem.exists(folder + "/tokenizer.model") {
                return try Tokenizer.load(path: folder)
            }
        }
        throw KilnError(.invalidInput, file: model.sourcePath, "no tokenizer.json or tokenizer.model beside the model; pass --tokenizer PATH")
    }

    /// Settings of a perplexity run.
    struct EvalSettings {
        var text: String
        var seqLen = 512
        var maxTokens: Int?
        var stride: Int?
        var batch = 8
    }

    /// Perplexity of `model` on the settings' text (kiln-ppl-v1: no special tokens, [BOS] + chunks of seqLen − 1).
    /// - Throws: `KilnError(.invalidInput)` when the window is longer than the model's max_position_embeddings.
    static func perplexity(_ model: Model, tokenizer: Tokenizer, settings: EvalSettings,
                           progress: ProgressSink?) throws -> PerplexityResult {
        if let (field, maxPositions) = Executor.maxPositions(model.config), settings.seqLen > maxPositions {
            throw KilnError.mismatch(file: nil, path: ["--seq-len"], expected: "at most \(field) = \(maxPositions)",
                                     found: "\(settings.seqLen)", note: "use a shorter --seq-len")
        }
        let text = try Perplexity.loadText(settings.text)
        guard !text.isEmpty else { throw KilnError(.invalidInput, file: settings.text, "the text is empty") }
        let ids = tokenizer.encode(text, addSpecialTokens: false).map(Int.init)
        let executor = try openLanguageModel(model)
        return try Perplexity.evaluate(executor, ids: ids, maxTokens: settings.maxTokens, seqLen: settings.seqLen,
                                       bosId: tokenizer.bosTokenId.map(Int.init), stride: settings.stride,
                                       batchSize: settings.batch) { done, total in
            progress?.update(label: "evaluating", done: done, total: total)
        }
    }

    /// `4.2703`
    static func format(_ v: Double, digits: Int = 4) -> String {
        let p = pow10(digits)
        return String((v * p).rounded() / p)
    }

    static func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { r, _ in r * 10 } }
}
