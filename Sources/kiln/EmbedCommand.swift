import ArgumentParser
import Foundation
import KilnCore
import KilnEngine

/// `kiln embed MODEL --text A --text B`: run an encoder (BertModel) and print one embedding per text.
struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Encode texts with an encoder model (BERT): one embedding per text, and their cosine similarities."
    )

    /// How token vectors become one vector per text.
    enum Pooling: String, ExpressibleByArgument, CaseIterable {
        /// Mean of the real tokens' last_hidden_state (sentence-transformers' default).
        case mean
        /// last_hidden_state of the first token ([CLS]).
        case cls
        /// The model's pooler_output (tanh(dense([CLS]))); needs the pooler weights.
        case pooler
        /// No pooling: every token's last_hidden_state.
        case none
    }

    @Argument(help: "Encoder model file or folder (BertModel, BertForMaskedLM read as its encoder).")
    var model: String

    @Option(name: .customLong("text"), help: "A text to encode (repeat for several).")
    var texts: [String] = []

    @Option(help: "mean (of the real tokens), cls, pooler (the model's pooler_output) or none (every token).")
    var pooling: Pooling = .mean

    @Option(help: "Tokenizer folder or tokenizer.json (default: beside the model).")
    var tokenizer: String?

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard !texts.isEmpty else { throw ValidationError("give at least one --text") }
    }

    func run() throws {
        let m = try EngineSupport.loadModel(model, registry: try global.registry(), context: global.context())
        let tok = try EngineSupport.tokenizer(for: m, explicit: tokenizer)
        let ids = texts.map { tok.encode($0, addSpecialTokens: true).map(Int.init) }
        for (i, sequence) in ids.enumerated() where sequence.isEmpty {
            throw KilnError(.invalidInput, path: ["--text #\(i + 1)"], "expected text giving at least one token, found none")
        }
        let executor = try Executor(model: m)
        let outputs = try executor.outputs(ids)
        guard let hidden = outputs["last_hidden_state"] else {
            throw KilnError(.unsupported, file: m.sourcePath, path: ["graph", "outputs"],
                            "expected an encoder with a last_hidden_state output, found \(outputs.keys.sorted().joined(separator: ", "))")
        }
        let vectors: [[[Float]]] = try (0..<ids.count).map { b in
            let tokens = (0..<ids[b].count).map { hidden.row(b, $0) }
            switch pooling {
            case .none: return tokens
            case .cls: return [tokens[0]]
            case .mean: return [EmbedCommand.mean(tokens)]
            case .pooler:
                guard let pooled = outputs["pooler_output"] else {
                    throw KilnError(.invalidInput, file: m.sourcePath, path: ["--pooling"],
                                    "expected a model with pooler weights (pooler.dense), found none; use --pooling mean or cls")
                }
                return [pooled.row(b, 0)]
            }
        }
        if global.json {
            func floats(_ v: [Float]) -> JSONValue { .array(v.map { .double(Double($0)) }) }
            let key = pooling == .none ? "last_hidden_state" : "embeddings"
            print(JSONValue.object(JSONObject([
                ("pooling", .string(pooling.rawValue)), ("dimensions", .int(Int64(hidden.vocab))),
                ("tokens", .array(ids.map { .int(Int64($0.count)) })),
                (key, .array(vectors.map { pooling == .none ? .array($0.map(floats)) : floats($0[0]) })),
            ])).serialized(pretty: false))
            return
        }
        for (i, text) in texts.enumerated() {
            let v = vectors[i][0]
            let head = v.prefix(6).map { String(format: "%.4f", $0) }.joined(separator: ", ")
            print("[\(i + 1)] \(ids[i].count) tokens, \(hidden.vocab) dims, norm \(String(format: "%.4f", EmbedCommand.norm(v))): [\(head), …]  \(text)")
        }
        if pooling != .none && texts.count > 1 {
            print("cosine similarity:")
            for i in 0..<texts.count {
                let row = (0..<texts.count).map { String(format: "%.4f", EmbedCommand.cosine(vectors[i][0], vectors[$0][0])) }
                print("[\(i + 1)] " + row.joined(separator: "  "))
            }
        }
    }

    /// Element-wise mean of `rows`.
    static func mean(_ rows: [[Float]]) -> [Float] {
        var sum = [Double](repeating: 0, count: rows[0].count)
        for r in rows { for (j, v) in r.enumerated() { sum[j] += Double(v) } }
        return sum.map { Float($0 / Double(rows.count)) }
    }

    static func norm(_ v: [Float]) -> Double { v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }

    static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        let dot = zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        return dot / max(norm(a) * norm(b), 1e-30)
    }
}
