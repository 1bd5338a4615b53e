import ArgumentParser
import KilnCore
import KilnEngine

/// `kiln generate MODEL --prompt TEXT`: greedy continuation with a KV cache.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Continue a prompt greedily (a sanity check of a model or a quantized checkpoint)."
    )

    @Argument(help: "Model file or folder.")
    var model: String

    @Option(help: "Text to continue (may be empty: start from BOS).")
    var prompt: String = ""

    @Option(help: "New tokens to generate.")
    var maxTokens: Int = 64

    @Option(help: "Tokenizer folder or tokenizer.json (default: beside the model).")
    var tokenizer: String?

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1 (found \(maxTokens))") }
    }

    func run() throws {
        let registry = try global.registry()
        let m = try EngineSupport.loadModel(model, registry: registry, context: global.context())
        let tok = try EngineSupport.tokenizer(for: m, explicit: tokenizer)
        let promptIds = tok.encode(prompt, addSpecialTokens: false).map(Int.init)
        let ids = (tok.bosTokenId.map { [Int($0)] } ?? []) + promptIds
        guard !ids.isEmpty else { throw KilnError(.invalidInput, path: ["--prompt"], "empty prompt and the tokenizer has no BOS token") }
        let executor = try Executor.languageModel(m)
        let out = try executor.generate(prompt: ids, maxNewTokens: maxTokens, eos: tok.eosTokenId.map(Int.init))
        // Decode prompt and continuation together: decoders treat the first token specially.
        let text = tok.decode((promptIds + out).map { Int32($0) })
        if global.json {
            print(JSONValue.object(JSONObject([
                ("prompt", .string(prompt)), ("text", .string(text)),
                ("new_tokens", .array(out.map { .int(Int64($0)) })),
            ])).serialized(pretty: true))
        } else {
            print(text)
        }
    }
}
