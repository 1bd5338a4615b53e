import Foundation
import KilnCore

/// A tokenizer.json `normalizer`, applied to UTF-8 text as the reference applies it (the
/// reference also tracks offsets; Kiln only needs the ids, so it keeps none).
indirect enum Normalizer {
    case sequence([Normalizer])
    case bert(cleanText: Bool, chineseChars: Bool, stripAccents: Bool, lowercase: Bool)
    case lowercase
    case unicode(Form)
    case strip(left: Bool, right: Bool)
    case stripAccents
    case replace(TextPattern, content: [UInt8])
    case prepend([UInt8])
    case append([UInt8])
    case nmt
    case byteLevel

    enum Form { case nfc, nfd, nfkc, nfkd }

    static let types = ["Sequence", "BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "Strip",
                        "StripAccents", "Replace", "Prepend", "Append", "Nmt", "ByteLevel"]

    /// Reads a normalizer object.
    /// - Throws: `KilnError(.unsupported)` for an unknown `type` (e.g. `Precompiled`),
    ///   `KilnError(.invalidInput)` for a malformed field; both name the file and path.
    init(_ node: JSONNode) throws {
        switch try node.type(oneOf: Normalizer.types) {
        case "Sequence":
            self = .sequence(try node.required("normalizers", expected: "an array").elements().map(Normalizer.init))
        case "BertNormalizer":
            let lowercase = try node.bool("lowercase", default: true)
            self = .bert(cleanText: try node.bool("clean_text", default: true),
                         chineseChars: try node.bool("handle_chinese_chars", default: true),
                         stripAccents: try node.bool("strip_accents", default: lowercase),
                         lowercase: lowercase)
        case "Lowercase": self = .lowercase
        case "NFC": self = .unicode(.nfc)
        case "NFD": self = .unicode(.nfd)
        case "NFKC": self = .unicode(.nfkc)
        case "NFKD": self = .unicode(.nfkd)
        case "Strip":
            self = .strip(left: try node.bool("strip_left", default: true), right: try node.bool("strip_right", default: true))
        case "StripAccents": self = .stripAccents
        case "Replace":
            let pattern = try node.required("pattern", expected: "a pattern")
            self = .replace(try TextPattern(PatternSpec(pattern), node: pattern), content: Array(try node.string("content").utf8))
        case "Prepend": self = .prepend(Array(try node.string("prepend").utf8))
        case "Append": self = .append(Array(try node.string("append").utf8))
        case "Nmt": self = .nmt
        default: self = .byteLevel
        }
    }

    /// Normalizes `text` in place.
    func apply(_ text: inout [UInt8]) {
        switch self {
        case .sequence(let steps):
            for step in steps { step.apply(&text) }
        case .bert(let cleanText, let chineseChars, let stripAccents, let lowercase):
            if cleanText { text = Normalizer.bertClean(text) }
            if chineseChars { text = Normalizer.mapScalars(text) { v, out in
                if UnicodeClass.isChinese(v) { out.append(0x20); out.append(v); out.append(0x20) } else { out.append(v) }
            } }
            if stripAccents {
                Normalizer.unicode(.nfd).apply(&text)
                Normalizer.stripAccents.apply(&text)
            }
            if lowercase { Normalizer.lowercase.apply(&text) }
        case .lowercase:
            text = Normalizer.mapScalars(text) { v, out in
                if v < 128 {
                    out.append(v >= 0x41 && v <= 0x5A ? v + 0x20 : v)
                } else if let s = Unicode.Scalar(v) {
                    for l in s.properties.lowercaseMapping.unicodeScalars { out.append(l.value) }
                }
            }
        case .unicode(let form):
            guard text.contains(where: { $0 >= 0x80 }) else { return }
            let s = UTF8Bytes.string(text)
            switch form {
            case .nfc: text = Array(s.precomposedStringWithCanonicalMapping.utf8)
            case .nfd: text = Array(s.decomposedStringWithCanonicalMapping.utf8)
            case .nfkc: text = Array(s.precomposedStringWithCompatibilityMapping.utf8)
            case .nfkd: text = Array(s.decomposedStringWithCompatibilityMapping.utf8)
            }
        case .strip(let left, let right):
            var scalars = UTF8Bytes.scalars(text)
            var a = 0, b = scalars.count
            if left { while a < b && UnicodeClass.isWhitespace(scalars[a]) { a += 1 } }
            if right { while b > a && UnicodeClass.isWhitespace(scalars[b - 1]) { b -= 1 } }
            if a > 0 || b < scalars.count {
                scalars = Array(scalars[a..<b])
                text = UTF8Bytes.encode(scalars)
            }
        case .stripAccents:
            guard text.contains(where: { $0 >= 0x80 }) else { return }
            text = Normalizer.mapScalars(text) { v, out in if !UnicodeClass.isNonspacingMark(v) { out.append(v) } }
        case .replace(let pattern, let content):
            let matches = pattern.matches(in: text)
            guard !matches.isEmpty else { return }
            var out: [UInt8] = []
            out.reserveCapacity(text.count)
            var previous = 0
            for m in matches {
                out.append(contentsOf: text[previous..<m.lowerBound])
                out.append(contentsOf: content)
                previous = m.upperBound
            }
            out.append(contentsOf: text[previous...])
            text = out
        case .prepend(let prefix):
            if !text.isEmpty { text.insert(contentsOf: prefix, at: 0) }
        case .append(let suffix):
            if !text.isEmpty { text.append(contentsOf: suffix) }
        case .nmt:
            text = Normalizer.mapScalars(text) { v, out in
                switch v {
                case 0x01...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0x8F, 0x9F: break
                case 0x09, 0x0A, 0x0C, 0x0D, 0x1680, 0x200B...0x200F, 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD:
                    out.append(0x20)
                default: out.append(v)
                }
            }
        case .byteLevel:
            text = ByteLevelMap.map(text)
        }
    }

    /// BERT's clean_text: drop NUL, U+FFFD and control characters (except \t \n \r), then
    /// turn every whitespace character into a space.
    private static func bertClean(_ text: [UInt8]) -> [UInt8] {
        mapScalars(text) { v, out in
            if v == 0x09 || v == 0x0A || v == 0x0D { out.append(0x20); return }
            if v == 0 || v == 0xFFFD || UnicodeClass.isOther(v) { return }
            out.append(UnicodeClass.isWhitespace(v) ? 0x20 : v)
        }
    }

    /// Rebuilds `text` from a per-scalar transformation (ASCII-only text takes a fast path
    /// through the same closure).
    private static func mapScalars(_ text: [UInt8], _ body: (UInt32, inout [UInt32]) -> Void) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count + text.count / 8)
        var buffer: [UInt32] = []
        buffer.reserveCapacity(4)
        text.withUnsafeBufferPointer { p in
            var i = 0
            while i < p.count {
                let (v, n) = UTF8Bytes.decode(p, i)
                i += n
                buffer.removeAll(keepingCapacity: true)
                body(v, &buffer)
                for w in buffer { UTF8Bytes.append(w, to: &out) }
            }
        }
        return out
    }
}
