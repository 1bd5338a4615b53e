import KilnCore

/// Calibration sequences: token ids cut from a text or jsonl file.
///
/// ```
/// ids     = tokenize(text, no special tokens)        jsonl: the "text" fields joined by "\n\n"
/// sample i = [BOS] + ids[i·(L−1) ..< (i+1)·(L−1)]    for i < N (fewer when the text runs out)
/// ```
public struct CalibrationData: Sendable {
    public let sequences: [[Int]]
    /// Tokens in all sequences (BOS included).
    public var tokenCount: Int { sequences.reduce(0) { $0 + $1.count } }

    /// Cut `samples` sequences of `sequenceLength` tokens from `path`.
    /// - Throws: `KilnError(.invalidInput)` naming the file for empty text, bad jsonl or too little text
    ///   for a single sequence.
    public static func load(path: String, tokenizer: Tokenizer, samples: Int, sequenceLength: Int) throws -> CalibrationData {
        guard samples >= 1 else { throw KilnError.mismatch(file: nil, path: ["calib-samples"], expected: "at least 1", found: "\(samples)") }
        guard sequenceLength >= 2 else {
            throw KilnError.mismatch(file: nil, path: ["calib-seq-len"], expected: "at least 2", found: "\(sequenceLength)")
        }
        let text = try readText(path)
        let ids = tokenizer.encode(text, addSpecialTokens: false).map(Int.init)
        let bos = tokenizer.bosTokenId.map(Int.init)
        let length = sequenceLength - (bos == nil ? 0 : 1)
        guard ids.count >= length else {
            throw KilnError.mismatch(file: path, path: ["text"], expected: "at least \(length) tokens for one calibration sequence",
                                     found: "\(ids.count)")
        }
        var sequences: [[Int]] = []
        var at = 0
        while sequences.count < samples, at + length <= ids.count {
            sequences.append((bos.map { [$0] } ?? []) + ids[at..<(at + length)])
            at += length
        }
        return CalibrationData(sequences: sequences)
    }

    /// The text of a plain-text file, or the `"text"` fields of a jsonl file joined by blank lines.
    static func readText(_ path: String) throws -> String {
        let text = try Perplexity.loadText(path)
        guard path.hasSuffix(".jsonl") else {
            guard !text.isEmpty else { throw KilnError(.invalidInput, file: path, "the calibration text is empty") }
            return text
        }
        var parts: [String] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let value: JSONValue
            do { value = try JSONValue.parse(String(line)) } catch let error as KilnError {
                throw error.inFile(path).adding(context: "line \(i + 1)")
            }
            guard let t = value["text"]?.stringValue else {
                throw KilnError.mismatch(file: path, path: ["line \(i + 1)", "text"], expected: "a string field \"text\"", found: "none")
            }
            parts.append(t)
        }
        guard !parts.isEmpty else { throw KilnError(.invalidInput, file: path, "no lines with a \"text\" field") }
        return parts.joined(separator: "\n\n")
    }
}
