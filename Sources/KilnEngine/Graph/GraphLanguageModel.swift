import KilnCore

/// What perplexity and comparison need of a model: scores over the vocabulary for token sequences.
/// ``Executor`` (the architecture templates, KV cache) and ``GraphLanguageModel`` (an imported ONNX
/// language model run by the ``GraphInterpreter``) provide it.
public protocol LanguageModel: AnyObject {
    /// Scores for every position of every sequence (shorter sequences right-padded in the result).
    func logits(_ ids: [[Int]]) throws -> Logits
    /// Vocabulary size when the graph declares it (used to bound the batch), else nil.
    var declaredVocabulary: Int? { get }
}

extension Executor: LanguageModel {
    public var declaredVocabulary: Int? {
        if case .fixed(let vocab)? = graph.outputs.first?.dims?.last, vocab > 0 { return vocab }
        return nil
    }
}

/// Open `model` as a language model: the template executor for checkpoints with a config (and for
/// graphs made of its own ops), the graph interpreter for an imported ONNX graph — e.g. Kiln's own LLM
/// export read back, its INT4/INT8/FP8 weights folded into QuantSpecs — that maps `input_ids` to `logits`.
/// - Throws: what ``Executor/languageModel(_:)`` or ``GraphLanguageModel/init(model:)`` throws.
public func openLanguageModel(_ model: Model) throws -> any LanguageModel {
    if GraphLanguageModel.accepts(model) { return try GraphLanguageModel(model: model) }
    return try Executor.languageModel(model)
}

/// An imported ONNX language model (`input_ids` [batch, seq] int64, optionally `position_ids` and
/// `attention_mask`, → `logits` [batch, seq, vocab]) executed by the ``GraphInterpreter``, one sequence
/// per run (no KV cache: perplexity and comparison only, not generation).
public final class GraphLanguageModel: LanguageModel {
    let interpreter: GraphInterpreter
    let inputNames: Set<String>
    let sourcePath: String?

    /// Whether `model` is a graph this class runs: no config.json (so no template applies), an
    /// `input_ids` input, a `logits` output, and no `kiln.*` op (those graphs are the executor's).
    public static func accepts(_ model: Model) -> Bool {
        guard model.config == nil, let graph = model.graph else { return false }
        return graph.inputs.contains { $0.name == "input_ids" } && graph.outputs.contains { $0.name == "logits" }
            && !graph.nodes.contains { $0.domain == "kiln" }
    }

    /// - Throws: `KilnError(.unsupported)` when the graph takes inputs other than input_ids,
    ///   position_ids and attention_mask (the message lists them); the interpreter's errors.
    public init(model: Model) throws {
        interpreter = try GraphInterpreter(model: model)
        inputNames = Set(interpreter.graph.inputs.map(\.name))
        sourcePath = model.sourcePath
        let known: Set<String> = ["input_ids", "position_ids", "attention_mask"]
        let unknown = inputNames.subtracting(known).sorted()
        guard unknown.isEmpty else {
            throw KilnError(.unsupported, file: sourcePath, path: ["graph", "inputs"],
                            "a language model graph takes input_ids, position_ids and attention_mask; found also \(unknown.joined(separator: ", "))")
        }
    }

    public var declaredVocabulary: Int? {
        guard let dims = interpreter.graph.outputs.first(where: { $0.name == "logits" })?.dims,
              case .fixed(let vocab)? = dims.last, vocab > 0 else { return nil }
        return vocab
    }

    public func logits(_ ids: [[Int]]) throws -> Logits {
        guard !ids.isEmpty, ids.allSatisfy({ !$0.isEmpty }) else {
            throw KilnError(.invalidInput, path: ["ids"], "expected at least one sequence of at least one token")
        }
        let seq = ids.map(\.count).max()!
        var storage: FloatBuffer?
        var vocab = 0
        for (b, sequence) in ids.enumerated() {
            let n = sequence.count
            var inputs = ["input_ids": GraphValue(shape: [1, n], ints: sequence.map(Int64.init))]
            if inputNames.contains("position_ids") { inputs["position_ids"] = GraphValue(shape: [1, n], ints: (0..<Int64(n)).map { $0 }) }
            if inputNames.contains("attention_mask") { inputs["attention_mask"] = GraphValue(shape: [1, n], ints: Array(repeating: 1, count: n)) }
            guard let out = try interpreter.run(inputs)["logits"], out.isFloat, out.rank == 3, out.shape[0] == 1, out.shape[1] == n else {
                throw KilnError(.invalidInput, file: sourcePath, path: ["graph", "output \"logits\""],
                                "expected f32 logits [1, \(n), vocab] for \(n) tokens")
            }
            if storage == nil {
                vocab = out.shape[2]
                storage = FloatBuffer(count: ids.count * seq * vocab, zeroed: true)
            }
            guard out.shape[2] == vocab else {
                throw KilnError.mismatch(file: sourcePath, path: ["graph", "output \"logits\""], expected: "vocab \(vocab)", found: "\(out.shape[2])")
            }
            (storage!.pointer + b * seq * vocab).update(from: out.pointer, count: n * vocab)  // no intermediate array
        }
        return Logits(batch: ids.count, seq: seq, vocab: vocab, lengths: ids.map(\.count), storage: storage!)
    }
}
