import ArgumentParser
import KilnCore
import KilnEngine

/// `kiln eval MODEL --text FILE`: perplexity by protocol kiln-ppl-v1.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure perplexity of a model on a text file (protocol kiln-ppl-v1; quantized models run fake-quantized)."
    )

    @Argument(help: "Model file or folder (any format a plugin reads).")
    var model: String

    @Option(help: "UTF-8 text file to score.")
    var text: String

    @Option(help: "Tokens per window, BOS included.")
    var seqLen: Int = 512

    @Option(help: "Score only the first N tokens of the text.")
    var maxTokens: Int?

    @Option(help: "Sliding-window step (default: consecutive windows, the kiln-ppl-v1 protocol).")
    var stride: Int?

    @Option(help: "Windows per forward pass.")
    var batch: Int = 8

    @Option(help: "Tokenizer folder or tokenizer.json (default: beside the model).")
    var tokenizer: String?

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard seqLen >= 2 else { throw ValidationError("--seq-len must be at least 2 (found \(seqLen))") }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1 (found \(maxTokens))") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1 (found \(batch))") }
    }

    func run() throws {
        let registry = try global.registry()
        let context = global.context()
        let m = try EngineSupport.loadModel(model, registry: registry, context: context)
        let tok = try EngineSupport.tokenizer(for: m, explicit: tokenizer)
        let settings = EngineSupport.EvalSettings(text: text, seqLen: seqLen, maxTokens: maxTokens, stride: stride, batch: batch)
        let r = try EngineSupport.perplexity(m, tokenizer: tok, settings: settings, progress: context.progress)
        if global.json {
            print(JSONValue.object(JSONObject([
                ("perplexity", .double(r.ppl)), ("tokens", .int(Int64(r.tokensScored))), ("nll", .double(r.nll)),
                ("seconds", .double(r.seconds)), ("tokens_per_second", .double(r.tokensPerSecond)),
                ("protocol", .string(stride == nil ? Perplexity.protocolName : "sliding-window")), ("seq_len", .int(Int64(seqLen))),
            ])).serialized(pretty: true))
        } else {
            print("perplexity \(EngineSupport.format(r.ppl)) over \(r.tokensScored) tokens "
                  + "(\(stride == nil ? Perplexity.protocolName : "stride \(stride!)"), seq-len \(seqLen)), "
                  + "NLL \(EngineSupport.format(r.nll, digits: 6))/token, \(Int(r.tokensPerSecond)) tokens/s")
        }
    }
}
