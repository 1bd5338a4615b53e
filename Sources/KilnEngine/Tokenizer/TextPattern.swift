import KilnCore

/// A pattern of a Replace normalizer or a Split pre-tokenizer: finds its matches (byte
/// ranges, in order, non-overlapping) in UTF-8 text, as the reference's `onig` regex does.
///
/// The pre-tokenizer regexes of GPT-2, Llama 3 and Qwen2 and the whitespace regexes that
/// sentencepiece conversions write are recognised by their exact text and run by
/// hand-written scanners; any other regex runs on Swift `Regex` with Unicode-scalar
/// semantics (same backtracking, leftmost-first semantics, much slower).
final class TextPattern: @unchecked Sendable {
    enum Kind {
        case literal([UInt8])
        case scanner(SplitScanner.Flavor)
        /// `\A +| +\z`: leading and trailing runs of U+0020.
        case edgeSpaces
        /// ` {n,}`: runs of at least n spaces.
        case spaceRuns(Int)
        case regex(Regex<AnyRegexOutput>)
    }

    let kind: Kind

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init(kind: Kind) { self.kind = kind }

    /// The pattern `spec` from tokenizer.json (`node` is where it is, for errors).
    /// - Throws: `KilnError(.unsupported)` if Swift `Regex` cannot compile the regex.
    convenience init(_ spec: PatternSpec, node: JSONNode) throws {
        switch spec {
        case .string(let s):
            self.init(kind: .literal(Array(s.utf8)))
        case .regex(let r):
            if let kind = TextPattern.known(r) {
                self.init(kind: kind)
                return
            }
            do {
                let regex = try Regex(r).matchingSemantics(.unicodeScalar)
                self.init(kind: .regex(regex))
            } catch {
                throw KilnError(.unsupported, file: node.file, path: node.path,
                                "cannot compile regex \(JSONNode.describe(.string(r))): \(error)")
            }
        }
    }

    private static func known(_ r: String) -> Kind? {
        switch r {
        case gpt2Regex: return .scanner(.gpt2)
        case llama3Regex: return .scanner(.llama3(maxDigits: 3))
        case qwen2Regex: return .scanner(.llama3(maxDigits: 1))
        case #"\A +| +\z"#: return .edgeSpaces
        default: break
        }
        // " {n,}"
        if r.hasPrefix(" {"), r.hasSuffix(",}"), let n = Int(r.dropFirst(2).dropLast(2)), n >= 1 {
            return .spaceRuns(n)
        }
        if r == " +" { return .spaceRuns(1) }
        return nil
    }

    /// The matches in `text`, as byte ranges.
    func matches(in text: [UInt8]) -> [Range<Int>] {
        switch kind {
        case .literal(let needle):
            return TextPattern.literalMatches(needle, in: text)
        case .scanner(let flavor):
            return SplitScanner.split(text, flavor: flavor)
        case .edgeSpaces:
            var out: [Range<Int>] = []
            var a = 0
            while a < text.count && text[a] == 0x20 { a += 1 }
            if a > 0 { out.append(0..<a) }
            var b = text.count
            while b > a && text[b - 1] == 0x20 { b -= 1 }
            if b < text.count { out.append(b..<text.count) }
            return out
        case .spaceRuns(let n):
            var out: [Range<Int>] = []
            var i = 0
            while i < text.count {
                if text[i] == 0x20 {
                    var j = i + 1
                    while j < text.count && text[j] == 0x20 { j += 1 }
                    if j - i >= n { out.append(i..<j) }
                    i = j
                } else {
                    i += 1
                }
            }
            return out
        case .regex(let regex):
            let s = UTF8Bytes.string(text)
            let utf8 = s.utf8
            return s.matches(of: regex).map {
                utf8.distance(from: utf8.startIndex, to: $0.range.lowerBound)
                    ..< utf8.distance(from: utf8.startIndex, to: $0.range.upperBound)
            }
        }
    }

    /// Non-overlapping occurrences of `needle`, left to right (none for an empty needle).
    static func literalMatches(_ needle: [UInt8], in text: [UInt8]) -> [Range<Int>] {
        guard !needle.isEmpty, text.count >= needle.count else { return [] }
        var out: [Range<Int>] = []
        let first = needle[0], m = needle.count
        var i = 0
        while i + m <= text.count {
            if text[i] == first && text[i..<i + m].elementsEqual(needle) {
                out.append(i..<i + m)
                i += m
            } else {
                i += 1
            }
        }
        return out
    }
}

/// How a split treats the matched delimiters (the reference's `SplitDelimiterBehavior`).
/// On `the-final--countdown` split at `-`:
/// removed `the|final|countdown`; isolated `the|-|final|-|-|countdown`;
/// mergedWithPrevious `the-|final-|-|countdown`; mergedWithNext `the|-final|-|-countdown`;
/// contiguous `the|-|final|--|countdown`.
enum SplitBehavior: String, CaseIterable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"

    init(_ node: JSONNode) throws {
        let name = try node.string()
        guard let b = SplitBehavior(rawValue: name) else {
            throw KilnError(.unsupported, file: node.file, path: node.path,
                            "expected one of \(SplitBehavior.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), found \"\(name)\"")
        }
        self = b
    }

    /// The pieces to keep, given the text cut into (range, is-a-match) parts that cover it.
    func apply(_ parts: [(range: Range<Int>, isMatch: Bool)]) -> [Range<Int>] {
        switch self {
        case .isolated:
            return parts.map(\.range)
        case .removed:
            return parts.filter { !$0.isMatch }.map(\.range)
        case .contiguous:
            var out: [Range<Int>] = []
            var previous = false
            for p in parts {
                if p.isMatch == previous, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<p.range.upperBound
                } else {
                    out.append(p.range)
                }
                previous = p.isMatch
            }
            return out
        case .mergedWithPrevious:
            var out: [Range<Int>] = []
            var previous = false
            for p in parts {
                if p.isMatch && !previous, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<p.range.upperBound
                } else {
                    out.append(p.range)
                }
                previous = p.isMatch
            }
            return out
        case .mergedWithNext:
            var out: [Range<Int>] = []
            var previous = false
            for p in parts.reversed() {
                if p.isMatch && !previous, let last = out.last {
                    out[out.count - 1] = p.range.lowerBound..<last.upperBound
                } else {
                    out.append(p.range)
                }
                previous = p.isMatch
            }
            return out.reversed()
        }
    }

    /// Parts from a list of matches: the gaps between them are the non-matches.
    static func parts(matches: [Range<Int>], count: Int, invert: Bool = false) -> [(range: Range<Int>, isMatch: Bool)] {
        if count == 0 { return [(0..<0, invert)] }
        var out: [(range: Range<Int>, isMatch: Bool)] = []
        out.reserveCapacity(matches.count * 2 + 1)
        var previous = 0
        for m in matches {
            if previous != m.lowerBound { out.append((previous..<m.lowerBound, invert)) }
            out.append((m, !invert))
            previous = m.upperBound
        }
        if previous != count { out.append((previous..<count, invert)) }
        return out
    }

    /// Parts where every character satisfying `isDelimiter` is a match on its own.
    static func parts(_ text: [UInt8], invert: Bool = false, where isDelimiter: (UInt32) -> Bool) -> [(range: Range<Int>, isMatch: Bool)] {
        var matches: [Range<Int>] = []
        text.withUnsafeBufferPointer { p in
            var i = 0
            while i < p.count {
                let (v, n) = UTF8Bytes.decode(p, i)
                if isDelimiter(v) { matches.append(i..<i + n) }
                i += n
            }
        }
        return parts(matches: matches, count: text.count, invert: invert)
    }
}
