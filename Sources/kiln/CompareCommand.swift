import ArgumentParser
import Foundation
import KilnCore
import KilnEngine

/// `kiln compare A B --text FILE`: how far a (quantized) model is from a reference, token by token.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare two models on a text: perplexity of each, logit cosine, KL divergence, top-1 agreement."
    )

    @Argument(help: "Reference model (file or folder).")
    var a: String

    @Argument(help: "Model to compare (e.g. its quantized checkpoint).")
    var b: String

    @Option(help: "UTF-8 text file.")
    var text: String

    @Option(help: "Tokens per window, BOS included.")
    var seqLen: Int = 512

    @Option(help: "Use only the first N tokens of the text.")
    var maxTokens: Int = 4096

    @Option(help: "Tokenizer folder or tokenizer.json (default: beside model A).")
    var tokenizer: String?

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard seqLen >= 2 else { throw ValidationError("--seq-len must be at least 2 (found \(seqLen))") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1 (found \(maxTokens))") }
    }

    /// Running sums over scored positions.
    struct Totals {
        var nllA = 0.0, nllB = 0.0, cosine = 0.0, kl = 0.0, agree = 0, count = 0
    }

    func run() throws {
        let registry = try global.registry()
        let context = global.context()
        let modelA = try EngineSupport.loadModel(a, registry: registry, context: context)
        let modelB = try EngineSupport.loadModel(b, registry: registry, context: context)
        let tok = try EngineSupport.tokenizer(for: modelA, explicit: tokenizer)
        let ids = tok.encode(try Perplexity.loadText(text), addSpecialTokens: false).map(Int.init)
        let bos = tok.bosTokenId.map(Int.init)
        let windows = Perplexity.windows(count: min(ids.count, maxTokens), seqLen: seqLen, bos: bos != nil)
        guard !windows.isEmpty else { throw KilnError(.invalidInput, file: text, "nothing to score") }
        let execA = try openLanguageModel(modelA), execB = try openLanguageModel(modelB)
        var t = Totals()
        for (i, w) in windows.enumerated() {
            let input = (bos.map { [$0] } ?? []) + Array(ids[w.begin..<w.end])
            let la = try execA.logits([input]), lb = try execB.logits([input])
            guard la.vocab == lb.vocab else {
                throw KilnError.mismatch(file: b, path: ["vocab"], expected: "\(la.vocab) (as \(a))", found: "\(lb.vocab)")
            }
            for pos in w.scoreFrom..<w.end {
                let row = pos - w.begin - (bos == nil ? 1 : 0)
                accumulate(la.row(0, row), lb.row(0, row), target: ids[pos], into: &t)
            }
            context.progress?.update(label: "comparing", done: i + 1, total: windows.count)
        }
        report(t)
    }

    /// Add one position: NLL of the target under each model, cosine of the logits, KL(p_A ‖ p_B), argmax match.
    func accumulate(_ x: [Float], _ y: [Float], target: Int, into t: inout Totals) {
        let lpA = logSoftmax(x), lpB = logSoftmax(y)
        t.nllA -= lpA[target]
        t.nllB -= lpB[target]
        var dot = 0.0, nx = 0.0, ny = 0.0, kl = 0.0
        for i in 0..<x.count {
            dot += Double(x[i]) * Double(y[i]); nx += Double(x[i] * x[i]); ny += Double(y[i] * y[i])
            kl += exp(lpA[i]) * (lpA[i] - lpB[i])
        }
        t.cosine += dot / max((nx * ny).squareRoot(), 1e-30)
        t.kl += kl
        if Executor.argmax(x) == Executor.argmax(y) { t.agree += 1 }
        t.count += 1
    }

    func logSoftmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max() ?? 0)
        let lse = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
        return x.map { Double($0) - lse }
    }

    func report(_ t: Totals) {
        let n = Double(max(t.count, 1))
        let pplA = exp(t.nllA / n), pplB = exp(t.nllB / n)
        if global.json {
            print(JSONValue.object(JSONObject([
                ("tokens", .int(Int64(t.count))), ("perplexity_a", .double(pplA)), ("perplexity_b", .double(pplB)),
                ("logit_cosine", .double(t.cosine / n)), ("kl_divergence", .double(t.kl / n)),
                ("top1_agreement", .double(Double(t.agree) / n)),
            ])).serialized(pretty: true))
            return
        }
        print(Table.render([
            ["", "A", "B"],
            ["model", a, b],
            ["perplexity", EngineSupport.format(pplA), EngineSupport.format(pplB)],
        ]))
        print("tokens \(t.count)   logit cosine \(EngineSupport.format(t.cosine / n, digits: 6))   "
              + "KL(A‖B) \(EngineSupport.format(t.kl / n, digits: 6)) nats/token   top-1 agreement \(EngineSupport.format(100 * Double(t.agree) / n, digits: 2))%")
    }
}
