import KilnCore

/// A piece of text on its way to the model.
struct Piece {
    /// UTF-8 bytes. When `byteLevel` is set these are raw bytes whose logical text is their
    /// GPT-2 byte-level spelling (the BPE model reads them without building that string).
    var bytes: [UInt8]
    /// The piece starts at offset 0 of the original input (Metaspace's `first` scheme).
    var isFirst: Bool
    var byteLevel = false

    /// The logical text as UTF-8 (byte-level pieces spelled out).
    var text: [UInt8] { byteLevel ? ByteLevelMap.map(bytes) : bytes }

    /// The same piece with `byteLevel` spelled out.
    var materialized: Piece { byteLevel ? Piece(bytes: text, isFirst: isFirst) : self }
}

/// A tokenizer.json `pre_tokenizer`: cuts normalized text into the words the model sees.
indirect enum PreTokenizer {
    case sequence([PreTokenizer])
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(TextPattern, SplitBehavior, invert: Bool)
    case metaspace(replacement: UInt32, scheme: PrependScheme, split: Bool)
    case bert
    case whitespace
    case whitespaceSplit
    case digits(individual: Bool)
    case punctuation(SplitBehavior)
    case charDelimiter(UInt32)

    enum PrependScheme: String { case first, always, never }

    static let types = ["Sequence", "ByteLevel", "Split", "Metaspace", "BertPreTokenizer", "Whitespace",
                        "WhitespaceSplit", "Digits", "Punctuation", "CharDelimiterSplit"]

    /// Reads a pre-tokenizer object.
    /// - Throws: `KilnError(.unsupported)` for an unknown `type`, `KilnError(.invalidInput)`
    ///   for a malformed field; both name the file and path.
    init(_ node: JSONNode) throws {
        switch try node.type(oneOf: PreTokenizer.types) {
        case "Sequence":
            self = .sequence(try node.required("pretokenizers", expected: "an array").elements().map(PreTokenizer.init))
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: try node.bool("add_prefix_space", default: true),
                              useRegex: try node.bool("use_regex", default: true))
        case "Split":
            let pattern = try node.required("pattern", expected: "a pattern")
            self = .split(try TextPattern(PatternSpec(pattern), node: pattern),
                          try SplitBehavior(node.required("behavior", expected: "a split behavior")),
                          invert: try node.bool("invert", default: false))
        case "Metaspace":
            let replacement = try node.required("replacement", expected: "a character").character().value
            var scheme = PrependScheme.always
            if let s = node["prepend_scheme"] {
                let name = try s.string()
                guard let parsed = PrependScheme(rawValue: name) else {
                    throw KilnError(.unsupported, file: s.file, path: s.path,
                                    "expected one of \"first\", \"always\", \"never\", found \"\(name)\"")
                }
                scheme = parsed
            } else if try node.bool("add_prefix_space", default: true) == false {
                scheme = .never
            }
            self = .metaspace(replacement: replacement, scheme: scheme, split: try node.bool("split", default: true))
        case "BertPreTokenizer": self = .bert
        case "Whitespace": self = .whitespace
        case "WhitespaceSplit": self = .whitespaceSplit
        case "Digits": self = .digits(individual: try node.bool("individual_digits", default: false))
        case "Punctuation":
            self = .punctuation(try node["behavior"].map(SplitBehavior.init) ?? .isolated)
        default:
            self = .charDelimiter(try node.required("delimiter", expected: "a character").character().value)
        }
    }

    /// Splits every piece (empty results are dropped, as the reference drops them).
    func apply(_ pieces: [Piece]) -> [Piece] {
        if case .sequence(let steps) = self {
            return steps.reduce(pieces) { $1.apply($0) }
        }
        var out: [Piece] = []
        out.reserveCapacity(pieces.count)
        for piece in pieces { split(piece, into: &out) }
        return out
    }

    private func split(_ original: Piece, into out: inout [Piece]) {
        if case .byteLevel(let addPrefixSpace, let useRegex) = self {
            // The words keep their raw bytes and carry the byte-level flag. An already
            // byte-level piece is spelled out first: a second ByteLevel maps that spelling.
            var bytes = original.materialized.bytes
            if addPrefixSpace && bytes.first != 0x20 { bytes.insert(0x20, at: 0) }
            let ranges = useRegex ? SplitScanner.split(bytes, flavor: .gpt2) : [0..<bytes.count]
            emit(bytes, ranges, original, into: &out, byteLevel: true)
            return
        }
        var piece = original.materialized
        let ranges: [Range<Int>]
        switch self {
        case .sequence, .byteLevel:
            preconditionFailure("handled above and in apply")
        case .split(let pattern, let behavior, let invert):
            let matches = pattern.matches(in: piece.bytes)
            ranges = behavior.apply(SplitBehavior.parts(matches: matches, count: piece.bytes.count, invert: invert))
        case .metaspace(let replacement, let scheme, let split):
            var replacementBytes: [UInt8] = []
            UTF8Bytes.append(replacement, to: &replacementBytes)
            if piece.bytes.contains(0x20) {
                var replaced: [UInt8] = []
                replaced.reserveCapacity(piece.bytes.count + 8)
                for b in piece.bytes {
                    if b == 0x20 { replaced.append(contentsOf: replacementBytes) } else { replaced.append(b) }
                }
                piece.bytes = replaced
            }
            let startsWithReplacement = piece.bytes.starts(with: replacementBytes)
            switch scheme {
            case .always where !startsWithReplacement, .first where !startsWithReplacement && piece.isFirst:
                piece.bytes.insert(contentsOf: replacementBytes, at: 0)
            default: break
            }
            ranges = split
                ? SplitBehavior.mergedWithNext.apply(SplitBehavior.parts(piece.bytes) { $0 == replacement })
                : [0..<piece.bytes.count]
        case .bert:
            var words: [Piece] = []
            PreTokenizer.whitespaceSplit.split(piece, into: &words)
            for w in words {
                emit(w.bytes, SplitBehavior.isolated.apply(SplitBehavior.parts(w.bytes, where: UnicodeClass.isBertPunctuation)),
                     w, into: &out)
            }
            return
        case .whitespace:
            ranges = PreTokenizer.wordRuns(piece.bytes)
        case .whitespaceSplit:
            ranges = SplitBehavior.removed.apply(SplitBehavior.parts(piece.bytes, where: UnicodeClass.isWhitespace))
        case .digits(let individual):
            let behavior: SplitBehavior = individual ? .isolated : .contiguous
            ranges = behavior.apply(SplitBehavior.parts(piece.bytes, where: UnicodeClass.isNumber))
        case .punctuation(let behavior):
            ranges = behavior.apply(SplitBehavior.parts(piece.bytes, where: UnicodeClass.isBertPunctuation))
        case .charDelimiter(let delimiter):
            ranges = SplitBehavior.removed.apply(SplitBehavior.parts(piece.bytes) { $0 == delimiter })
        }
        emit(piece.bytes, ranges, piece, into: &out)
    }

    private func emit(_ bytes: [UInt8], _ ranges: [Range<Int>], _ parent: Piece, into out: inout [Piece],
                      byteLevel: Bool = false) {
        if ranges.count == 1, ranges[0] == 0..<bytes.count {
            if !bytes.isEmpty { out.append(Piece(bytes: bytes, isFirst: parent.isFirst, byteLevel: byteLevel)) }
            return
        }
        for r in ranges where !r.isEmpty {
            out.append(Piece(bytes: Array(bytes[r]), isFirst: parent.isFirst && r.lowerBound == 0, byteLevel: byteLevel))
        }
    }

    /// `\w+|[^\w\s]+` runs (the Whitespace pre-tokenizer keeps these and drops the rest).
    private static func wordRuns(_ text: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        text.withUnsafeBufferPointer { p in
            var i = 0
            var runStart = -1, runIsWord = false
            while i < p.count {
                let (v, n) = UTF8Bytes.decode(p, i)
                let isWord = UnicodeClass.isWordCharacter(v)
                let isSpace = !isWord && UnicodeClass.isWhitespace(v)
                if runStart >= 0 && (isSpace || isWord != runIsWord) {
                    out.append(runStart..<i)
                    runStart = -1
                }
                if !isSpace && runStart < 0 {
                    runStart = i
                    runIsWord = isWord
                }
                i += n
            }
            if runStart >= 0 { out.append(runStart..<p.count) }
        }
        return out
    }
}
