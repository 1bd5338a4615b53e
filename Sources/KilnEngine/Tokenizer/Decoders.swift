import KilnCore

/// A tokenizer.json `decoder`: turns token strings back into text, step by step as the
/// reference's `decode_chain` does; the final strings are concatenated.
indirect enum TokenDecoder {
    case sequence([TokenDecoder])
    case byteLevel
    case metaspace(replacement: Unicode.Scalar, prependsFirst: Bool)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case replace(TextPattern, content: String)
    case wordPiece(prefix: String, cleanup: Bool)
    case bpe(suffix: String)
    case ctc(pad: String, wordDelimiter: String, cleanup: Bool)

    static let types = ["Sequence", "ByteLevel", "Metaspace", "ByteFallback", "Fuse", "Strip", "Replace",
                        "WordPiece", "BPEDecoder", "CTC"]

    /// Reads a decoder object.
    /// - Throws: `KilnError(.unsupported)` for an unknown `type`, `KilnError(.invalidInput)`
    ///   for a malformed field; both name the file and path.
    init(_ node: JSONNode) throws {
        switch try node.type(oneOf: TokenDecoder.types) {
        case "Sequence":
            self = .sequence(try node.required("decoders", expected: "an array").elements().map(TokenDecoder.init))
        case "ByteLevel": self = .byteLevel
        case "Metaspace":
            var prepends = try node.bool("add_prefix_space", default: true)
            if let scheme = try node.optionalString("prepend_scheme") { prepends = scheme != "never" }
            self = .metaspace(replacement: try node.required("replacement", expected: "a character").character(),
                              prependsFirst: prepends)
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Strip":
            self = .strip(content: try node.required("content", expected: "a character").character(),
                          start: try node.index("start", default: 0), stop: try node.index("stop", default: 0))
        case "Replace":
            let pattern = try node.required("pattern", expected: "a pattern")
            self = .replace(try TextPattern(PatternSpec(pattern), node: pattern), content: try node.string("content"))
        case "WordPiece":
            self = .wordPiece(prefix: try node.optionalString("prefix") ?? "##", cleanup: try node.bool("cleanup", default: true))
        case "BPEDecoder":
            self = .bpe(suffix: try node.optionalString("suffix") ?? "</w>")
        default:
            self = .ctc(pad: try node.optionalString("pad_token") ?? "<pad>",
                        wordDelimiter: try node.optionalString("word_delimiter_token") ?? "|",
                        cleanup: try node.bool("cleanup", default: true))
        }
    }

    /// The text of `tokens`.
    func decode(_ tokens: [String]) -> String { decodeChain(tokens).joined() }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let steps):
            return steps.reduce(tokens) { $1.decodeChain($0) }
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens { bytes.append(contentsOf: ByteLevelMap.unmap(t) ?? Array(t.utf8)) }
            return [UTF8Bytes.string(bytes)]
        case .metaspace(let replacement, let prependsFirst):
            return tokens.enumerated().map { i, token in
                var out = String.UnicodeScalarView()
                for c in token.unicodeScalars {
                    if c == replacement {
                        if !(i == 0 && prependsFirst) { out.append(" ") }
                    } else {
                        out.append(c)
                    }
                }
                return String(out)
            }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for t in tokens {
                let u = Array(t.utf8)
                if u.count == 6, u.starts(with: [0x3C, 0x30, 0x78]), u[5] == 0x3E,
                    let b = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                let chars = Array(token.unicodeScalars)
                var a = 0
                while a < min(start, chars.count) && chars[a] == content { a += 1 }
                var b = chars.count
                while chars.count - b < stop && b > a && chars[b - 1] == content { b -= 1 }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: chars[a..<b])
                return String(view)
            }
        case .replace(let pattern, let content):
            let replacement = Normalizer.replace(pattern, content: Array(content.utf8))
            return tokens.map { token in
                var bytes = Array(token.utf8)
                replacement.apply(&bytes)
                return UTF8Bytes.string(bytes)
            }
        case .wordPiece(let prefix, let cleanup):
            return tokens.enumerated().map { i, token in
                var t = token
                if i != 0 {
                    if t.hasPrefix(prefix) { t = String(t.dropFirst(prefix.count)) } else { t = " " + t }
                }
                return cleanup ? TokenDecoder.cleanup(t) : t
            }
        case .bpe(let suffix):
            return tokens.enumerated().map { i, token in
                token.replacingAll(suffix, with: i == tokens.count - 1 ? "" : " ")
            }
        case .ctc(let pad, let wordDelimiter, let cleanup):
            var out: [String] = []
            var previous: String?
            for t in tokens {
                defer { previous = t }
                if t == previous { continue }
                var r = t.replacingAll(pad, with: "")
                if cleanup { r = TokenDecoder.cleanup(r).replacingAll(wordDelimiter, with: " ") }
                if !r.isEmpty { out.append(r) }
            }
            return out
        }
    }

    /// The reference's `wordpiece::cleanup`: re-attaches punctuation and contractions.
    static func cleanup(_ s: String) -> String {
        // Every pattern is a space then one of . ? ! , ' n d: most tokens have none.
        let u = Array(s.utf8)
        guard zip(u, u.dropFirst()).contains(where: { $0 == 0x20 && [0x2E, 0x3F, 0x21, 0x2C, 0x27, 0x6E, 0x64].contains($1) })
        else { return s }
        var t = s
        for (a, b) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                       (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            t = t.replacingAll(a, with: b)
        }
        return t
    }
}

fileprivate extension String {
    /// Every non-overlapping occurrence of `target` (by UTF-8 bytes) replaced.
    func replacingAll(_ target: String, with replacement: String) -> String {
        let bytes = Array(utf8)
        let matches = TextPattern.literalMatches(Array(target.utf8), in: bytes)
        guard !matches.isEmpty else { return self }
        var out: [UInt8] = []
        var previous = 0
        for m in matches {
            out.append(contentsOf: bytes[previous..<m.lowerBound])
            out.append(contentsOf: replacement.utf8)
            previous = m.upperBound
        }
        out.append(contentsOf: bytes[previous...])
        return UTF8Bytes.string(out)
    }
}
