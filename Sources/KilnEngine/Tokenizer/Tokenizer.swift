import Foundation
import KilnCore

/// A text tokenizer read from a Hugging Face `tokenizer.json`, giving the same ids as the
/// `tokenizers` library (`Tokenizer.from_file(path).encode(text).ids`).
///
/// The pipeline is the reference's: added tokens are cut out of the raw text, each
/// remaining part is normalized, normalized added tokens are cut out, the rest is
/// pre-tokenized into words, each word is split by the model (BPE, WordPiece or
/// WordLevel), and the post-processor adds special tokens on request. Truncation and
/// padding settings in the file are ignored (callers window the ids themselves).
///
/// A sentencepiece `tokenizer.model` of type BPE is read as the tokenizer.json Hugging
/// Face's converter makes of it (see `SentencePieceModel`).
///
/// Safe to share between threads: encoding is serialized by a lock around the word cache.
public final class Tokenizer: @unchecked Sendable {
    /// The tokenizer.json (or tokenizer.model) this was read from.
    public let path: String
    /// The number of distinct tokens, added tokens included (`get_vocab_size(True)`).
    public let vocabSize: Int
    /// Beginning-of-sequence id: tokenizer_config.json, special_tokens_map.json,
    /// config.json, generation_config.json, or the post-processor's leading special token.
    public let bosTokenId: Int32?
    /// End-of-sequence id, from the same sources (the post-processor's trailing token last).
    public let eosTokenId: Int32?
    /// Unknown-token id: tokenizer_config.json, special_tokens_map.json, the model's
    /// `unk_token`, config.json.
    public let unkTokenId: Int32?

    let model: TokenizerModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: TokenDecoder?
    let added: AddedVocabulary
    /// Ids of special tokens (skipped by `decode` unless asked not to).
    private let specialIds: Set<Int32>
    private let lock = NSLock()

    /// Builds the tokenizer from parsed tokenizer.json.
    /// - Parameters:
    ///   - json: the whole tokenizer.json document.
    ///   - file: its path, for error messages.
    ///   - folder: where to look for tokenizer_config.json and friends (nil: nowhere).
    /// - Throws: `KilnError(.unsupported)` for a component type Kiln does not implement,
    ///   `KilnError(.invalidInput)` for a malformed file; both name the file and JSON path.
    init(json: JSONValue, file: String, folder: String?) throws {
        path = file
        let root = JSONNode(json, file: file)
        guard json.objectValue != nil else { throw root.mismatch(expected: "a tokenizer.json object") }
        let normalizer = try root["normalizer"].map(Normalizer.init)
        self.normalizer = normalizer
        preTokenizer = try root["pre_tokenizer"].map(PreTokenizer.init)
        postProcessor = try root["post_processor"].map(PostProcessor.init)
        decoder = try root["decoder"].map(TokenDecoder.init)
        model = try TokenizerModel(root.required("model", expected: "a model object"))
        added = try AddedVocabulary(root["added_tokens"], modelVocab: model.vocab, normalizer: normalizer)
        specialIds = added.specialIds

        var size = model.vocab.count
        for key in added.ids.keys where model.vocab.id(key.bytes) == nil { size += 1 }
        vocabSize = size

        let configs = try SpecialTokenSources(folder: folder)
        let lookup: (String) -> Int32? = { [added, model] name in
            added.ids[ByteKey(bytes: Array(name.utf8))] ?? model.vocab.id(name)
        }
        bosTokenId = configs.names("bos_token").lazy.compactMap(lookup).first
            ?? configs.ids("bos_token_id").first ?? postProcessor?.leadingSpecial
        eosTokenId = configs.names("eos_token").lazy.compactMap(lookup).first
            ?? configs.ids("eos_token_id").first ?? postProcessor?.trailingSpecial
        unkTokenId = configs.names("unk_token").lazy.compactMap(lookup).first
            ?? model.unkToken.flatMap(lookup) ?? configs.ids("unk_token_id").first
    }

    /// The ids of `text`.
    /// - Parameters:
    ///   - text: any string (empty gives no ids, or only the special tokens).
    ///   - addSpecialTokens: let the post-processor add its special tokens (BOS, CLS/SEP…).
    /// - Complexity: O(n log n) in the length of the text (BPE merges per word; words are cached).
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int32] {
        lock.lock()
        defer { lock.unlock() }
        let input = Array(text.utf8)
        var ids: [Int32] = []
        ids.reserveCapacity(input.count / 3 + 2)
        for part in added.split(input, normalizedTokens: false) {
            if let id = part.id {
                ids.append(id)
                continue
            }
            guard !part.range.isEmpty else { continue }
            var bytes = part.range.count == input.count ? input : Array(input[part.range])
            normalizer?.apply(&bytes)
            guard !bytes.isEmpty else { continue }
            let isFirst = part.range.lowerBound == 0
            for sub in added.split(bytes, normalizedTokens: true) {
                if let id = sub.id {
                    ids.append(id)
                    continue
                }
                guard !sub.range.isEmpty else { continue }
                let piece = Piece(bytes: sub.range.count == bytes.count ? bytes : Array(bytes[sub.range]),
                                  isFirst: isFirst && sub.range.lowerBound == 0)
                if let preTokenizer {
                    for word in preTokenizer.apply([piece]) { model.tokenize(word, into: &ids) }
                } else {
                    model.tokenize(piece, into: &ids)
                }
            }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.apply(ids) }
        return ids
    }

    /// The text of `ids`, through the tokenizer's decoder (ids that name no token are
    /// skipped, as the reference skips them). Bytes that do not form UTF-8 (a partial
    /// character at the end of a generation step) come out as U+FFFD.
    /// - Parameter skipSpecialTokens: leave out special tokens (BOS, EOS, padding…).
    /// - Complexity: O(n) in the number of ids.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = true) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids where !(skipSpecialTokens && specialIds.contains(id)) {
            if let token = self.token(id) { tokens.append(token) }
        }
        if let decoder { return decoder.decode(tokens) }
        return tokens.joined(separator: " ")
    }

    /// The id of the token spelled exactly `token` (added tokens first, then the model's
    /// vocabulary), or nil. Spellings compare by UTF-8 bytes, not canonical equivalence.
    public func id(of token: String) -> Int32? {
        added.ids[ByteKey(bytes: Array(token.utf8))] ?? model.vocab.id(token)
    }

    /// The spelling of token `id` as the decoder sees it (byte-level and `▁` forms are not
    /// decoded; a normalized added token is shown normalized), or nil.
    public func token(_ id: Int32) -> String? {
        added.decodingForm(of: id) ?? model.vocab.string(of: id)
    }
}

/// The model of a tokenizer.json.
enum TokenizerModel {
    case bpe(BPEModel)
    case wordPiece(WordPieceModel)
    case wordLevel(WordLevelModel)

    init(_ node: JSONNode) throws {
        switch try node.type(oneOf: ["BPE", "WordPiece", "WordLevel"]) {
        case "BPE": self = .bpe(try BPEModel(node))
        case "WordPiece": self = .wordPiece(try WordPieceModel(node))
        default: self = .wordLevel(try WordLevelModel(node))
        }
    }

    var vocab: TokenTable {
        switch self {
        case .bpe(let m): return m.vocab
        case .wordPiece(let m): return m.vocab
        case .wordLevel(let m): return m.vocab
        }
    }

    var unkToken: String? {
        switch self {
        case .bpe(let m): return m.unkToken
        case .wordPiece(let m): return m.unkToken
        case .wordLevel(let m): return m.unkToken
        }
    }

    @inline(__always)
    func tokenize(_ piece: Piece, into ids: inout [Int32]) {
        switch self {
        case .bpe(let m): m.tokenize(piece, into: &ids)
        case .wordPiece(let m): m.tokenize(piece, into: &ids)
        case .wordLevel(let m): m.tokenize(piece, into: &ids)
        }
    }
}
