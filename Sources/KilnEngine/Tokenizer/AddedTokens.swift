#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import KilnCore

/// One entry of tokenizer.json's `added_tokens`.
struct AddedToken: Hashable {
    var content: String
    var special: Bool
    var singleWord: Bool
    var lstrip: Bool
    var rstrip: Bool
    var normalized: Bool

    init(_ node: JSONNode) throws {
        content = try node.string("content")
        special = try node.bool("special", default: false)
        singleWord = try node.bool("single_word", default: false)
        lstrip = try node.bool("lstrip", default: false)
        rstrip = try node.bool("rstrip", default: false)
        normalized = try node.bool("normalized", default: !special)
    }
}

/// The tokens added on top of the model's vocabulary, and their extraction from the
/// input before (non-normalized tokens) and after (normalized tokens) normalization, as
/// the reference's `AddedVocabulary` does: leftmost-longest matches, with `single_word`,
/// `lstrip` and `rstrip` applied around each match.
final class AddedVocabulary: @unchecked Sendable {
    /// content → id (`added_tokens_map`).
    private(set) var ids: [ByteKey: Int32] = [:]
    /// id → token (`added_tokens_map_r`).
    private(set) var tokens: [Int32: AddedToken] = [:]
    /// Contents of the special tokens.
    private(set) var specialContents: Set<ByteKey> = []
    /// The normalized spelling of normalized tokens whose normalization changes them: what
    /// decoding shows for them (the reference's `normalized_cache`).
    private var normalizedForms: [Int32: String] = [:]
    private var rawMatcher = Matcher(patterns: [])
    private var normalizedMatcher = Matcher(patterns: [])

    /// Registers `added_tokens` in file order, giving each the id the reference gives it:
    /// its id in the model's vocabulary if there, else the next free id.
    init(_ node: JSONNode?, modelVocab: TokenTable, normalizer: Normalizer?) throws {
        var specialList: [AddedToken] = []
        var plainList: [AddedToken] = []
        var registered: Set<AddedToken> = []  // the values of `tokens`
        var highest: Int32?  // the largest value of `ids`
        for item in try node?.elements() ?? [] {
            let token = try AddedToken(item)
            let key = ByteKey(bytes: Array(token.content.utf8))
            if token.special && !token.content.isEmpty && !specialContents.contains(key) {
                specialList.append(token)
                specialContents.insert(key)
            }
            if token.content.isEmpty || registered.contains(token) { continue }
            let id: Int32
            if let existing = ids[key] ?? modelVocab.id(key.bytes) {
                id = existing
            } else if let highest {
                id = Int(highest) >= modelVocab.count || modelVocab.count == 0 ? highest + 1 : Int32(modelVocab.count)
            } else {
                id = Int32(modelVocab.count)
            }
            guard Int(id) <= TokenizerLimits.maxTokenId else {
                throw item.mismatch(expected: "at most \(TokenizerLimits.maxTokenId + 1) token ids")
            }
            ids[key] = id
            highest = max(highest ?? id, id)
            if let previous = tokens.updateValue(token, forKey: id) { registered.remove(previous) }
            registered.insert(token)
            if token.normalized, let normalizer {
                var bytes = key.bytes
                normalizer.apply(&bytes)
                if bytes != key.bytes { normalizedForms[id] = UTF8Bytes.string(bytes) }
            }
            if !specialContents.contains(key) { plainList.append(token) }
        }
        var raw: [([UInt8], Int32)] = []
        var normalized: [([UInt8], Int32)] = []
        for token in specialList + plainList {
            var bytes = Array(token.content.utf8)
            guard let id = ids[ByteKey(bytes: bytes)] ?? modelVocab.id(bytes) else { continue }
            if token.normalized {
                normalizer?.apply(&bytes)
                normalized.append((bytes, id))
            } else {
                raw.append((bytes, id))
            }
        }
        rawMatcher = Matcher(patterns: raw)
        normalizedMatcher = Matcher(patterns: normalized)
    }

    var isEmpty: Bool { ids.isEmpty }

    /// The ids whose token is a special token (what decoding skips).
    var specialIds: Set<Int32> { Set(specialContents.compactMap { ids[$0] }) }

    /// The spelling of added token `id` as decoding sees it (normalized tokens normalized).
    func decodingForm(of id: Int32) -> String? {
        guard let token = tokens[id] else { return nil }
        return normalizedForms[id] ?? token.content
    }

    /// The text cut into parts covering it: runs of plain text (id nil) and added tokens
    /// (with any whitespace their lstrip / rstrip took).
    /// - Parameter normalizedTokens: match the normalized tokens (second pass) instead of
    ///   the non-normalized ones (first pass).
    func split(_ text: [UInt8], normalizedTokens: Bool) -> [(range: Range<Int>, id: Int32?)] {
        let matcher = normalizedTokens ? normalizedMatcher : rawMatcher
        if matcher.isEmpty || text.isEmpty { return [(0..<text.count, nil)] }
        var out: [(range: Range<Int>, id: Int32?)] = []
        var startOffset = 0
        for (range, id) in matcher.matches(in: text) {
            var start = range.lowerBound, stop = range.upperBound
            let token = tokens[id]
            if token?.singleWord == true {
                let startSpace = start == 0 || !AddedVocabulary.lastIsWord(text, before: start)
                let stopSpace = stop == text.count || !AddedVocabulary.firstIsWord(text, from: stop)
                if !startSpace || !stopSpace { continue }
            }
            if token?.lstrip == true {
                start = max(AddedVocabulary.whitespaceStart(text, before: start), startOffset)
            }
            if token?.rstrip == true {
                stop = AddedVocabulary.whitespaceEnd(text, from: stop)
            }
            if startOffset < start { out.append((startOffset..<start, nil)) }
            out.append((start..<stop, id))
            startOffset = stop
        }
        if startOffset != text.count { out.append((startOffset..<text.count, nil)) }
        return out
    }

    private static func lastScalar(_ text: [UInt8], before end: Int) -> UInt32 {
        var i = end - 1
        while i > 0 && !UTF8Bytes.isBoundary(text[i]) { i -= 1 }
        return text.withUnsafeBufferPointer { UTF8Bytes.decode($0, i).value }
    }

    private static func lastIsWord(_ text: [UInt8], before end: Int) -> Bool {
        UnicodeClass.isWordCharacter(lastScalar(text, before: end))
    }

    private static func firstIsWord(_ text: [UInt8], from start: Int) -> Bool {
        text.withUnsafeBufferPointer { UnicodeClass.isWordCharacter(UTF8Bytes.decode($0, start).value) }
    }

    /// Start of the whitespace run that ends at `end`.
    private static func whitespaceStart(_ text: [UInt8], before end: Int) -> Int {
        text.withUnsafeBufferPointer { p in
            var i = end
            while i > 0 {
                var j = i - 1
                while j > 0 && !UTF8Bytes.isBoundary(p[j]) { j -= 1 }
                guard UnicodeClass.isWhitespace(UTF8Bytes.decode(p, j).value) else { break }
                i = j
            }
            return i
        }
    }

    /// End of the whitespace run that starts at `start`.
    private static func whitespaceEnd(_ text: [UInt8], from start: Int) -> Int {
        text.withUnsafeBufferPointer { p in
            var i = start
            while i < p.count {
                let (v, n) = UTF8Bytes.decode(p, i)
                guard UnicodeClass.isWhitespace(v) else { break }
                i += n
            }
            return i
        }
    }
}

/// Leftmost-longest, non-overlapping matching of a set of byte strings (what the
/// reference's Aho-Corasick automaton with `MatchKind::LeftmostLongest` finds).
struct Matcher {
    /// Patterns by first byte, longest first.
    private var byFirstByte: [[(bytes: [UInt8], id: Int32)]] = Array(repeating: [], count: 256)
    let isEmpty: Bool

    init(patterns: [([UInt8], Int32)]) {
        var any = false
        for (bytes, id) in patterns where !bytes.isEmpty {
            byFirstByte[Int(bytes[0])].append((bytes, id))
            any = true
        }
        for i in 0..<256 where byFirstByte[i].count > 1 {
            // Stable: among equal lengths the first pattern wins.
            byFirstByte[i] = byFirstByte[i].enumerated()
                .sorted { ($0.element.bytes.count, -$0.offset) > ($1.element.bytes.count, -$1.offset) }
                .map(\.element)
        }
        isEmpty = !any
    }

    func matches(in text: [UInt8]) -> [(Range<Int>, Int32)] {
        var out: [(Range<Int>, Int32)] = []
        text.withUnsafeBufferPointer { p in
            var i = 0
            outer: while i < p.count {
                let candidates = byFirstByte[Int(p[i])]
                for c in candidates where c.bytes.count <= p.count - i {
                    if c.bytes.withUnsafeBufferPointer({ memcmp($0.baseAddress!, p.baseAddress! + i, c.bytes.count) == 0 }) {
                        out.append((i..<i + c.bytes.count, c.id))
                        i += c.bytes.count
                        continue outer
                    }
                }
                i += 1
            }
        }
        return out
    }
}
