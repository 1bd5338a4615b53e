import KilnCore

/// The WordPiece model (BERT): greedy longest-match-first over each word, continuation
/// pieces spelled with `continuing_subword_prefix` (`##`); a word with an unmatchable
/// rest, or longer than `max_input_chars_per_word` characters, becomes `unk_token`.
final class WordPieceModel: @unchecked Sendable {
    let vocab: TokenTable
    let unkToken: String
    private let unkId: Int32
    private let prefix: [UInt8]
    private let maxInputChars: Int

    /// Reads `model` of type WordPiece.
    /// - Throws: `KilnError(.invalidInput)` naming the file and path for a missing or
    ///   malformed vocab, or an `unk_token` that is not in it.
    init(_ node: JSONNode) throws {
        vocab = try TokenTable(vocabOf: node)
        unkToken = try node.optionalString("unk_token") ?? "[UNK]"
        guard let id = vocab.id(unkToken) else {
            throw KilnError(.invalidInput, file: node.file, path: node.path + ["unk_token"],
                            "unk_token \(JSONNode.describe(.string(unkToken))) is not in the vocabulary")
        }
        unkId = id
        prefix = Array((try node.optionalString("continuing_subword_prefix") ?? "##").utf8)
        maxInputChars = try node.index("max_input_chars_per_word", default: 100)
    }

    /// Appends the ids of one pre-tokenized word.
    func tokenize(_ piece: Piece, into ids: inout [Int32]) {
        let word = piece.text
        guard !word.isEmpty else { return }
        var characters = 0
        for b in word where UTF8Bytes.isBoundary(b) { characters += 1 }
        if characters > maxInputChars {
            ids.append(unkId)
            return
        }
        let mark = ids.count
        var scratch: [UInt8] = prefix
        let found: Bool = word.withUnsafeBufferPointer { w in
            var start = 0
            while start < w.count {
                var end = min(w.count, start + vocab.maxTokenBytes)
                while end < w.count && !UTF8Bytes.isBoundary(w[end]) { end -= 1 }
                var id: Int32?
                while end > start {
                    if start == 0 {
                        id = vocab.id(UnsafeBufferPointer(rebasing: w[0..<end]))
                    } else {
                        scratch.removeSubrange(prefix.count...)
                        scratch.append(contentsOf: w[start..<end])
                        id = vocab.id(scratch)
                    }
                    if id != nil { break }
                    end -= 1
                    while end > start && !UTF8Bytes.isBoundary(w[end]) { end -= 1 }
                }
                guard let id else { return false }
                ids.append(id)
                start = end
            }
            return true
        }
        if !found {
            ids.removeSubrange(mark...)
            ids.append(unkId)
        }
    }
}

/// The WordLevel model: each word is one token, or `unk_token`.
final class WordLevelModel: @unchecked Sendable {
    let vocab: TokenTable
    let unkToken: String
    private let unkId: Int32

    /// Reads `model` of type WordLevel.
    /// - Throws: `KilnError(.invalidInput)` for a malformed vocab or a missing unk token.
    init(_ node: JSONNode) throws {
        vocab = try TokenTable(vocabOf: node)
        unkToken = try node.optionalString("unk_token") ?? "<unk>"
        guard let id = vocab.id(unkToken) else {
            throw KilnError(.invalidInput, file: node.file, path: node.path + ["unk_token"],
                            "unk_token \(JSONNode.describe(.string(unkToken))) is not in the vocabulary")
        }
        unkId = id
    }

    func tokenize(_ piece: Piece, into ids: inout [Int32]) {
        let word = piece.text
        guard !word.isEmpty else { return }
        ids.append(vocab.id(word) ?? unkId)
    }
}
