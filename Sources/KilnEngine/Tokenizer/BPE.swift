import KilnCore

/// The BPE model of tokenizer.json, with the reference's merge order: repeatedly merge the
/// adjacent pair of lowest merge rank (leftmost first), using a priority queue of
/// candidate merges exactly as `tokenizers/src/models/bpe/word.rs` does.
///
/// Supports `unk_token` (with `fuse_unk`), `byte_fallback` (`<0xXX>` tokens),
/// `continuing_subword_prefix`, `end_of_word_suffix` and `ignore_merges`; `dropout` is
/// ignored (encoding is deterministic). An `unk_token` missing from the vocabulary drops
/// unknown characters (the reference fails the encode instead). Results are cached per word.
final class BPEModel: @unchecked Sendable {
    let vocab: TokenTable
    private let merges: PairTable
    let unkToken: String?
    private let unkId: Int32?
    private let fuseUnk: Bool
    private let byteFallback: Bool
    private let ignoreMerges: Bool
    private let prefix: [UInt8]?
    private let suffix: [UInt8]?
    /// Id of each single ASCII character token (−1 if absent).
    private let asciiIds: [Int32]
    /// Id of the byte-level character of each byte (−1 if absent).
    private let byteLevelIds: [Int32]
    /// Id of `<0xXX>` for each byte (−1 if absent).
    private let byteFallbackIds: [Int32]
    /// Byte-level pieces can go straight from bytes to ids.
    private let byteLevelFastPath: Bool
    /// `▁` when no merge can ever cross it (it is a token, and no token has it past its
    /// first character): long words are then merged segment by segment, with the same result.
    private let segmentMark: [UInt8]?

    private var cache: [ByteKey: [Int32]] = [:]
    private var byteLevelCache: [ByteKey: [Int32]] = [:]
    /// Words this long or longer are not cached (the reference's `MAX_LENGTH`).
    static let maxCachedWordBytes = 256
    /// The cache is emptied when it holds this many words.
    static let maxCachedWords = 200_000

    /// Reads `model` of type BPE.
    /// - Throws: `KilnError(.invalidInput)` naming the file and path for a missing or
    ///   malformed vocab or merges, or a merge whose tokens are not in the vocabulary.
    init(_ node: JSONNode) throws {
        let vocab = try TokenTable(vocabOf: node)
        self.vocab = vocab
        let unkToken = try node.optionalString("unk_token")
        self.unkToken = unkToken
        unkId = unkToken.flatMap { vocab.id($0) }
        fuseUnk = try node.bool("fuse_unk", default: false)
        byteFallback = try node.bool("byte_fallback", default: false)
        ignoreMerges = try node.bool("ignore_merges", default: false)
        let p = try node.optionalString("continuing_subword_prefix").map { Array($0.utf8) }
        let s = try node.optionalString("end_of_word_suffix").map { Array($0.utf8) }
        prefix = p?.isEmpty == false ? p : nil
        suffix = s?.isEmpty == false ? s : nil

        let mergesNode = try node.required("merges", expected: "an array")
        guard let list = mergesNode.value.arrayValue else { throw mergesNode.mismatch(expected: "an array") }
        var table = PairTable(capacity: list.count)
        let prefixLength = prefix?.count ?? 0
        for (rank, item) in list.enumerated() {
            func here() -> JSONNode { JSONNode(item, file: node.file, path: mergesNode.path + ["[\(rank)]"]) }
            guard let (a, b) = BPEModel.mergePair(item) else {
                throw here().mismatch(expected: "[\"LEFT\", \"RIGHT\"] or \"LEFT RIGHT\"")
            }
            guard let aId = vocab.id(a) else { throw BPEModel.outOfVocabulary(a, here()) }
            guard let bId = vocab.id(b) else { throw BPEModel.outOfVocabulary(b, here()) }
            let merged = a + (b.count >= prefixLength ? b.dropFirst(prefixLength) : [])
            guard let newId = vocab.id(merged) else { throw BPEModel.outOfVocabulary(merged, here()) }
            table.set(aId, bId, rank: Int32(rank), newId: newId)
        }
        merges = table

        asciiIds = (0..<128).map { vocab.id([UInt8($0)]) ?? -1 }
        byteLevelIds = ByteLevelMap.mappedUTF8.map { vocab.id($0) ?? -1 }
        byteFallbackIds = (0..<256).map { b in
            let hex = String(b, radix: 16, uppercase: true)
            return vocab.id("<0x" + (hex.count == 1 ? "0" + hex : hex) + ">") ?? -1
        }
        byteLevelFastPath = prefix == nil && suffix == nil && !byteLevelIds.contains(-1)
        let mark: [UInt8] = [0xE2, 0x96, 0x81]  // ▁
        var markIsBoundary = prefix == nil && suffix == nil && vocab.id(mark) != nil
        if markIsBoundary {
            // No token may hold ▁ after its first character.
            outer: for (bytes, _) in vocab.entries where bytes.count > 3 {
                var i = bytes.startIndex + 1
                while i + 3 <= bytes.endIndex {
                    if bytes[i] == mark[0] && bytes[i + 1] == mark[1] && bytes[i + 2] == mark[2] {
                        markIsBoundary = false
                        break outer
                    }
                    i += 1
                }
            }
        }
        segmentMark = markIsBoundary ? mark : nil
    }

    /// A merge as `"a b"` (legacy, exactly one space) or `["a", "b"]`.
    private static func mergePair(_ value: JSONValue) -> ([UInt8], [UInt8])? {
        if let line = value.stringValue {
            let parts = line.utf8.split(separator: 0x20, omittingEmptySubsequences: false)
            return parts.count == 2 ? (Array(parts[0]), Array(parts[1])) : nil
        }
        guard let items = value.arrayValue, items.count == 2, let a = items[0].stringValue, let b = items[1].stringValue
        else { return nil }
        return (Array(a.utf8), Array(b.utf8))
    }

    private static func outOfVocabulary(_ token: [UInt8], _ node: JSONNode) -> KilnError {
        KilnError(.invalidInput, file: node.file, path: node.path,
                  "merge token \(JSONNode.describe(.string(UTF8Bytes.string(token)))) is not in the vocabulary")
    }

    // MARK: - Encoding

    /// Appends the ids of one pre-tokenized word.
    func tokenize(_ piece: Piece, into ids: inout [Int32]) {
        guard !piece.bytes.isEmpty else { return }
        if piece.byteLevel && byteLevelFastPath {
            if ignoreMerges, let id = vocab.id(piece.text) {
                ids.append(id)
                return
            }
            let key = ByteKey(bytes: piece.bytes)
            if let hit = byteLevelCache[key] {
                ids.append(contentsOf: hit)
                return
            }
            var symbols = piece.bytes.map { byteLevelIds[Int($0)] }
            merge(&symbols)
            ids.append(contentsOf: symbols)
            store(symbols, for: key, in: &byteLevelCache)
            return
        }
        let text = piece.text
        if ignoreMerges, let id = vocab.id(text) {
            ids.append(id)
            return
        }
        if let mark = segmentMark, text.count > 16 {
            var start = 0
            for m in TextPattern.literalMatches(mark, in: text) where m.lowerBound > start {
                tokenizeWord(Array(text[start..<m.lowerBound]), into: &ids)
                start = m.lowerBound
            }
            tokenizeWord(start == 0 ? text : Array(text[start...]), into: &ids)
        } else {
            tokenizeWord(text, into: &ids)
        }
    }

    private func tokenizeWord(_ word: [UInt8], into ids: inout [Int32]) {
        let key = ByteKey(bytes: word)
        if let hit = cache[key] {
            ids.append(contentsOf: hit)
            return
        }
        var symbols = initialSymbols(word)
        merge(&symbols)
        ids.append(contentsOf: symbols)
        store(symbols, for: key, in: &cache)
    }

    private func store(_ symbols: [Int32], for key: ByteKey, in cache: inout [ByteKey: [Int32]]) {
        guard key.bytes.count < BPEModel.maxCachedWordBytes else { return }
        if cache.count >= BPEModel.maxCachedWords { cache.removeAll(keepingCapacity: true) }
        cache[key] = symbols
    }

    /// One symbol per character (with prefix / suffix), unknown characters as byte
    /// fallback tokens or `unk` (fused if `fuse_unk`), as the reference's `merge_word`.
    private func initialSymbols(_ word: [UInt8]) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        var pendingUnk = false
        var scratch: [UInt8] = []
        word.withUnsafeBufferPointer { w in
            var i = 0
            while i < w.count {
                let (v, n) = UTF8Bytes.decode(w, i)
                let isFirst = i == 0, isLast = i + n == w.count
                var id: Int32 = -1
                let decorated = (!isFirst && prefix != nil) || (isLast && suffix != nil)
                if !decorated {
                    id = v < 128 ? asciiIds[Int(v)] : vocab.id(UnsafeBufferPointer(rebasing: w[i..<i + n])) ?? -1
                } else {
                    scratch.removeAll(keepingCapacity: true)
                    if !isFirst, let prefix { scratch.append(contentsOf: prefix) }
                    scratch.append(contentsOf: w[i..<i + n])
                    if isLast, let suffix { scratch.append(contentsOf: suffix) }
                    id = vocab.id(scratch) ?? -1
                }
                if id >= 0 {
                    if pendingUnk, let unkId { symbols.append(unkId) }
                    pendingUnk = false
                    symbols.append(id)
                } else {
                    if byteFallback {
                        let bytes = decorated ? scratch : Array(w[i..<i + n])
                        if bytes.allSatisfy({ byteFallbackIds[Int($0)] >= 0 }) {
                            for b in bytes { symbols.append(byteFallbackIds[Int(b)]) }
                            i += n
                            continue
                        }
                    }
                    if let unkId {
                        if pendingUnk && !fuseUnk { symbols.append(unkId) }
                        pendingUnk = true
                    }
                }
                i += n
            }
        }
        if pendingUnk, let unkId { symbols.append(unkId) }
        return symbols
    }

    /// Applies the merges to `symbols` in place.
    /// - Complexity: O(n log n) in the number of symbols.
    private func merge(_ symbols: inout [Int32]) {
        let n = symbols.count
        if n < 2 { return }
        if n == 2 {
            if let m = merges.get(symbols[0], symbols[1]) { symbols = [Int32(truncatingIfNeeded: m)] }
            return
        }
        var heap = MergeHeap(capacity: n)
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
            if i + 1 < n, let m = merges.get(symbols[i], symbols[i + 1]) { heap.push(m, position: i) }
        }
        while let (position, newId) = heap.pop() {
            guard symbols[position] >= 0 else { continue }
            let right = Int(next[position])
            guard right >= 0, let m = merges.get(symbols[position], symbols[right]),
                Int32(truncatingIfNeeded: m) == newId
            else { continue }
            symbols[position] = newId
            symbols[right] = -1
            let after = next[right]
            next[position] = after
            if after >= 0 { prev[Int(after)] = Int32(position) }
            let before = Int(prev[position])
            if before >= 0, let m = merges.get(symbols[before], newId) { heap.push(m, position: before) }
            if after >= 0, let m = merges.get(newId, symbols[Int(after)]) { heap.push(m, position: position) }
        }
        symbols.removeAll { $0 < 0 }
    }
}

/// A binary min-heap of candidate merges ordered by (rank, position).
struct MergeHeap {
    /// `rank << 32 | position`.
    private var keys: [UInt64] = []
    private var ids: [Int32] = []

    init(capacity: Int) {
        keys.reserveCapacity(capacity)
        ids.reserveCapacity(capacity)
    }

    /// Adds a merge given as `rank << 32 | new id` at `position`.
    mutating func push(_ merge: UInt64, position: Int) {
        var i = keys.count
        keys.append((merge & 0xFFFF_FFFF_0000_0000) | UInt64(position))
        ids.append(Int32(truncatingIfNeeded: merge))
        while i > 0 {
            let parent = (i - 1) / 2
            guard keys[parent] > keys[i] else { break }
            keys.swapAt(parent, i)
            ids.swapAt(parent, i)
            i = parent
        }
    }

    /// Removes the merge of lowest (rank, position): its position and new id.
    mutating func pop() -> (Int, Int32)? {
        guard let top = keys.first else { return nil }
        let result = (Int(top & 0xFFFF_FFFF), ids[0])
        let last = keys.count - 1
        keys.swapAt(0, last)
        ids.swapAt(0, last)
        keys.removeLast()
        ids.removeLast()
        var i = 0
        let count = keys.count
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < count && keys[l] < keys[m] { m = l }
            if r < count && keys[r] < keys[m] { m = r }
            if m == i { break }
            keys.swapAt(i, m)
            ids.swapAt(i, m)
            i = m
        }
        return result
    }
}
