import Foundation
import KilnCore

/// The result of a perplexity evaluation.
public struct PerplexityResult: Sendable, Equatable {
    /// Tokens whose probability was scored (each exactly once).
    public var tokensScored: Int
    /// Mean negative log-likelihood per scored token (nats).
    public var nll: Double
    /// `exp(nll)`.
    public var ppl: Double
    /// Forward passes' wall time.
    public var seconds: Double
    /// Windows (sequences fed to the model).
    public var windows: Int

    /// Scored tokens per second of wall time.
    public var tokensPerSecond: Double { seconds > 0 ? Double(tokensScored) / seconds : 0 }
}

/// Perplexity of a causal LM on already tokenized text.
///
/// Protocol **kiln-ppl-v1** (what `golden/ppl.json` records), the default: keep the first
/// `maxTokens` ids, cut them into consecutive chunks of `seqLen − 1`, feed `[BOS] + chunk`,
/// score every chunk token once (the first one predicted from BOS alone):
/// ```
/// NLL = Σ_t −log softmax(logits[t−1])[id_t] / N        ppl = exp(NLL)        (f64 accumulation)
/// ```
/// With `stride` (Hugging Face's sliding-window perplexity): windows of `L = seqLen − (BOS ? 1 : 0)`
/// ids start every `stride` ids; each window scores only the ids the previous one did not reach,
/// so every id is scored once with up to `L − 1` ids of context. `stride = L` is kiln-ppl-v1;
/// without BOS the very first id is never scored (as in HF's recipe).
public enum Perplexity {
    /// The protocol name recorded beside results.
    public static let protocolName = "kiln-ppl-v1"

    /// A UTF-8 text file as the reference scripts see it: Python's `open(path).read()` translates
    /// `\r\n` and lone `\r` to `\n` (universal newlines), and the golden perplexities of
    /// `wikitext2_test_raw.txt` (CRLF line ends) were computed on that text.
    /// - Throws: `KilnError(.io)` when the file cannot be read, `.invalidInput` when it is not UTF-8.
    /// - Complexity: O(bytes).
    public static func loadText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw KilnError(.io, file: path, "cannot read the file")
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(data.count)
        var previousCR = false
        for b in data {
            if b == 0x0A && previousCR { previousCR = false; continue }
            previousCR = b == 0x0D
            bytes.append(previousCR ? 0x0A : b)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw KilnError(.invalidInput, file: path, "expected UTF-8 text")
        }
        return text
    }

    /// One window: ids `begin ..< end` are fed (after BOS if any); ids `scoreFrom ..< end` are scored.
    public struct Window: Equatable, Sendable {
        /// First id fed.
        public var begin: Int
        /// One past the last id fed.
        public var end: Int
        /// First id scored (ids before it were scored by an earlier window or serve as context).
        public var scoreFrom: Int

        /// A window over ids `begin ..< end` scoring `scoreFrom ..< end`.
        public init(begin: Int, end: Int, scoreFrom: Int) {
            self.begin = begin
            self.end = end
            self.scoreFrom = scoreFrom
        }
    }

    /// The windows for `count` ids.
    /// - Parameters:
    ///   - count: ids after the `maxTokens` cut, ≥ 0.
    ///   - seqLen: tokens per fed sequence, BOS included; ≥ 2.
    ///   - bos: whether a BOS token is prepended to every window.
    ///   - stride: ids between window starts, 1 ... L (nil = L: consecutive chunks).
    /// - Complexity: O(count / stride).
    public static func windows(count: Int, seqLen: Int, bos: Bool, stride: Int? = nil) -> [Window] {
        let length = seqLen - (bos ? 1 : 0)
        let step = stride ?? length
        precondition(length >= 1 && step >= 1 && step <= length)
        var result: [Window] = []
        var begin = 0, previousEnd = 0
        while begin < count {
            let end = min(begin + length, count)
            let from = max(previousEnd, begin + (bos ? 0 : 1))
            if from < end { result.append(Window(begin: begin, end: end, scoreFrom: from)) }
            previousEnd = end
            if end == count { break }
            begin += step
        }
        return result
    }

    /// Evaluate `executor` on `ids`.
    /// - Parameters:
    ///   - ids: the tokenized text (no special tokens).
    ///   - maxTokens: keep only the first `maxTokens` ids (nil = all).
    ///   - seqLen: tokens per fed sequence, BOS included (default 512).
    ///   - bosId: prepended to every window; nil for models without BOS.
    ///   - stride: sliding-window step (nil = consecutive chunks, the kiln-ppl-v1 protocol).
    ///   - batchSize: windows per forward pass (fewer when the logits would exceed ~1 GiB).
    ///   - progress: called with (windows done, windows total) after each forward.
    /// - Throws: `KilnError(.invalidInput)` for bad parameters or nothing to score; executor errors.
    /// - Complexity: O(windows · seqLen · parameters) plus attention.
    public static func evaluate(_ executor: any LanguageModel, ids: [Int], maxTokens: Int? = nil, seqLen: Int = 512, bosId: Int?,
                                stride: Int? = nil, batchSize: Int = 8,
                                progress: ((Int, Int) -> Void)? = nil) throws -> PerplexityResult {
        let ids = maxTokens.map { Array(ids.prefix(max(0, $0))) } ?? ids
        let length = seqLen - (bosId == nil ? 0 : 1)
        guard length >= 1, seqLen >= 2 else {
            throw KilnError.mismatch(file: nil, path: ["seq-len"], expected: "at least 2", found: "\(seqLen)")
        }
        if let stride, !(1...length).contains(stride) {
            throw KilnError.mismatch(file: nil, path: ["stride"], expected: "1...\(length)", found: "\(stride)")
        }
        guard batchSize >= 1 else { throw KilnError.mismatch(file: nil, path: ["batch"], expected: "at least 1", found: "\(batchSize)") }
        let plan = windows(count: ids.count, seqLen: seqLen, bos: bosId != nil, stride: stride)
        guard !plan.isEmpty else {
            throw KilnError(.invalidInput, path: ["ids"], "nothing to score: \(ids.count) ids")
        }
        var batch = batchSize
        if let vocab = executor.declaredVocabulary {
            batch = max(1, min(batchSize, (1 << 28) / (seqLen * vocab)))
        }
        let start = DispatchTime.now().uptimeNanoseconds
        var nll = 0.0, scored = 0, done = 0
        for first in Swift.stride(from: 0, to: plan.count, by: batch) {
            let group = Array(plan[first..<min(first + batch, plan.count)])
            let inputs = group.map { w in (bosId.map { [$0] } ?? []) + Array(ids[w.begin..<w.end]) }
            let logits = try executor.logits(inputs)
            // (sequence, row, target) of every scored id, in order.
            var targets: [(row: Int, id: Int)] = []
            for (b, w) in group.enumerated() {
                for t in w.scoreFrom..<w.end {
                    targets.append((b * logits.seq + t - w.begin - (bosId == nil ? 1 : 0), ids[t]))
                }
            }
            nll += try negativeLogLikelihood(logits, targets)
            scored += targets.count
            done += group.count
            progress?(done, plan.count)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let mean = nll / Double(scored)
        return PerplexityResult(tokensScored: scored, nll: mean, ppl: Foundation.exp(mean), seconds: seconds, windows: plan.count)
    }

    /// Σ −log softmax(row)[id] over `targets`, in f64; parallel over chunks of rows, summed in a fixed order.
    static func negativeLogLikelihood(_ logits: Logits, _ targets: [(row: Int, id: Int)]) throws -> Double {
        let vocab = logits.vocab
        if let bad = targets.first(where: { $0.id < 0 || $0.id >= vocab }) {
            throw KilnError.mismatch(file: nil, path: ["ids"], expected: "ids in 0..<\(vocab)", found: "\(bad.id)")
        }
        // Fixed chunks (not one per thread), summed in order: the same bits for any thread count.
        let chunk = 64
        let parts = (targets.count + chunk - 1) / chunk
        var partial = [Double](repeating: 0, count: parts)
        let workers = max(1, min(Executor.threads, parts))
        logits.withUnsafeBufferPointer { all in
            partial.withUnsafeMutableBufferPointer { sums in
                let base = all.baseAddress!, out = sums.baseAddress!
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    var p = w
                    while p < parts {
                        var total = 0.0
                        for k in (p * chunk)..<min(targets.count, (p + 1) * chunk) {
                            let row = base + targets[k].row * vocab
                            total += logSumExp(row, vocab) - Double(row[targets[k].id])
                        }
                        out[p] = total
                        p += workers
                    }
                }
            }
        }
        return partial.reduce(0, +)
    }

    /// `log Σ exp(x)` of one row, in f64 after subtracting the max (unrolled for debug builds).
    @inline(__always)
    static func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        var (m0, m1) = (-Float.infinity, -Float.infinity)
        var i = 0
        while i + 2 <= n {
            if x[i] > m0 { m0 = x[i] }
            if x[i + 1] > m1 { m1 = x[i + 1] }
            i += 2
        }
        if i < n, x[i] > m0 { m0 = x[i] }
        let m = m1 > m0 ? m1 : m0
        var (s0, s1, s2, s3) = (0.0, 0.0, 0.0, 0.0)
        i = 0
        while i + 4 <= n {
            s0 += Foundation.exp(Double(x[i] - m))
            s1 += Foundation.exp(Double(x[i + 1] - m))
            s2 += Foundation.exp(Double(x[i + 2] - m))
            s3 += Foundation.exp(Double(x[i + 3] - m))
            i += 4
        }
        while i < n { s0 += Foundation.exp(Double(x[i] - m)); i += 1 }
        return Foundation.log((s0 + s1) + (s2 + s3)) + Double(m)
    }
}
