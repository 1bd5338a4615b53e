import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// Perplexity by protocol kiln-ppl-v1 and its sliding-window variant.
@Suite struct PerplexityTests {
    @Test func stories260KMatchesGoldenPerplexity() throws {
        let dir = try TestEnvironment.sharedModel("stories260K")
        let golden = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/golden/ppl.json"))))
        let exec = try Executor(model: try EngineFixtures.load(dir))
        for entry in golden.arrayValue ?? [] {
            guard entry["protocol"]?.stringValue == Perplexity.protocolName, let text = entry["text"]?.stringValue,
                  let maxTokens = entry["max_tokens"]?.intValue, let seqLen = entry["seq_len"]?.intValue,
                  let bos = entry["bos_id"]?.intValue, let ppl = entry["ppl"]?.doubleValue else { continue }
            let ids = try EngineFixtures.ids(tokenizer: dir + "/tokenizer.json", text: TestEnvironment.shared + "/data/" + text)
            let r = try Perplexity.evaluate(exec, ids: ids, maxTokens: Int(maxTokens), seqLen: Int(seqLen), bosId: Int(bos))
            print("stories260K \(text): ppl \(r.ppl) (golden \(ppl)), nll \(r.nll), \(r.tokensScored) tokens, \(r.seconds) s")
            #expect(r.tokensScored == entry["tokens_scored"]?.intValue.map(Int.init))
            #expect(abs(r.ppl / ppl - 1) < 1e-3)
        }
    }

    @Test func windowsFollowTheProtocols() {
        // kiln-ppl-v1: consecutive chunks of seqLen − 1, every id scored, the first from BOS.
        #expect(Perplexity.windows(count: 10, seqLen: 4, bos: true) == [
            .init(begin: 0, end: 3, scoreFrom: 0), .init(begin: 3, end: 6, scoreFrom: 3),
            .init(begin: 6, end: 9, scoreFrom: 6), .init(begin: 9, end: 10, scoreFrom: 9),
        ])
        // Hugging Face's sliding window (no BOS): id 0 is never scored, later ids once each.
        let hf = Perplexity.windows(count: 10, seqLen: 4, bos: false, stride: 2)
        #expect(hf == [.init(begin: 0, end: 4, scoreFrom: 1), .init(begin: 2, end: 6, scoreFrom: 4),
                       .init(begin: 4, end: 8, scoreFrom: 6), .init(begin: 6, end: 10, scoreFrom: 8)])
        for (count, seqLen, bos, stride) in [(1000, 64, true, 13), (999, 50, false, 49), (7, 512, true, 100)] {
            let scored = Perplexity.windows(count: count, seqLen: seqLen, bos: bos, stride: stride).flatMap { Array($0.scoreFrom..<$0.end) }
            #expect(scored == Array((bos ? 0 : 1)..<count))
        }
    }

    @Test(arguments: [nil, 5] as [Int?])
    func evaluateEqualsNaiveScoring(stride: Int?) throws {
        let exec = try Executor(model: try SyntheticModel.llama())
        var rng = SplitMix64(seed: 11)
        let ids = (0..<100).map { _ in Int(rng.next() % 512) }
        let seqLen = 16, bos = 1
        let r = try Perplexity.evaluate(exec, ids: ids, maxTokens: 90, seqLen: seqLen, bosId: bos, stride: stride, batchSize: 3)
        var nll = 0.0, n = 0
        for w in Perplexity.windows(count: 90, seqLen: seqLen, bos: true, stride: stride) {
            let logits = try exec.logits([[bos] + Array(ids[w.begin..<w.end])])
            for t in w.scoreFrom..<w.end {
                let row = logits.row(0, t - w.begin).map(Double.init)
                let m = row.max()!
                nll += Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +)) + m - row[ids[t]]
                n += 1
            }
        }
        #expect(r.tokensScored == 90 && n == 90)
        #expect(abs(r.nll - nll / Double(n)) < 1e-6 * nll / Double(n))
        #expect(abs(r.ppl - Foundation.exp(r.nll)) < 1e-12 * r.ppl)
        #expect(r.windows == (stride == nil ? 6 : 16))
    }

    @Test func textIsReadWithUniversalNewlines() throws {
        let dir = TemporaryDirectory("kiln-ppl")
        let path = dir.file("t.txt")
        try Data([0x61, 0x0D, 0x0A, 0x62, 0x0D, 0x63, 0x0A, 0x0D, 0x0D, 0x0A, 0xC3, 0xA9]).write(to: URL(fileURLWithPath: path))
        #expect(Array(try Perplexity.loadText(path).utf8) == [0x61, 0x0A, 0x62, 0x0A, 0x63, 0x0A, 0x0A, 0x0A, 0xC3, 0xA9])
    }

    @Test func badParametersAreRefused() throws {
        let exec = try Executor(model: try SyntheticModel.llama())
        #expect(EngineFixtures.errorText { try Perplexity.evaluate(exec, ids: [1, 2, 3], seqLen: 1, bosId: 1) }
            == "seq-len: expected at least 2, found 1")
        #expect(EngineFixtures.errorText { try Perplexity.evaluate(exec, ids: [1, 2, 3], seqLen: 8, bosId: 1, stride: 8) }
            == "stride: expected 1...7, found 8")
        #expect(EngineFixtures.errorText { try Perplexity.evaluate(exec, ids: [5], seqLen: 8, bosId: nil) }
            == "ids: nothing to score: 1 ids")
    }
}
