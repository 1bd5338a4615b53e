#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A vocabulary: token strings (compared by their UTF-8 bytes, never by Swift's canonical
/// equivalence) to ids, and back. Lookups take a byte buffer, so no string is built on
/// the hot path.
///
/// Open addressing with linear probing over a power-of-two slot array, FNV-1a hashing.
struct TokenTable {
    /// All token bytes, back to back.
    private(set) var pool: [UInt8] = []
    /// Entry i is `pool[starts[i]..<starts[i + 1]]` with id `ids[i]`.
    private var starts: [Int32] = [0]
    private var ids: [Int32] = []
    /// Entry index + 1 per slot; 0 = empty.
    private var slots: [Int32]
    private var mask: Int
    /// id → entry index (−1 = no token has that id).
    private var entryOfId: [Int32] = []

    /// The number of distinct token strings.
    var count: Int { ids.count }
    /// The largest id + 1 (0 if empty).
    var idLimit: Int { entryOfId.count }
    /// The longest token, in bytes.
    private(set) var maxTokenBytes = 0

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    static func hash(_ p: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// The id of the token spelled `p`, if any.
    func id(_ p: UnsafeBufferPointer<UInt8>) -> Int32? {
        var slot = TokenTable.hash(p) & mask
        return pool.withUnsafeBufferPointer { pool in
            while true {
                let e = Int(slots[slot])
                if e == 0 { return nil }
                let s = Int(starts[e - 1]), t = Int(starts[e])
                if t - s == p.count && (p.isEmpty || memcmp(pool.baseAddress! + s, p.baseAddress!, p.count) == 0) {
                    return ids[e - 1]
                }
                slot = (slot + 1) & mask
            }
        }
    }

    /// The id of the token spelled `bytes`, if any.
    func id(_ bytes: [UInt8]) -> Int32? { bytes.withUnsafeBufferPointer { id($0) } }

    /// The id of the token `s`, if any.
    func id(_ s: String) -> Int32? { id(Array(s.utf8)) }

    /// The bytes of the token with `id`, if any.
    func bytes(of id: Int32) -> ArraySlice<UInt8>? {
        guard id >= 0, Int(id) < entryOfId.count else { return nil }
        let e = Int(entryOfId[Int(id)])
        guard e >= 0 else { return nil }
        return pool[Int(starts[e])..<Int(starts[e + 1])]
    }

    /// The token with `id` as a string, if any.
    func string(of id: Int32) -> String? { bytes(of: id).map { String(decoding: $0, as: UTF8.self) } }

    /// Adds `bytes` → `id`; a repeated spelling keeps its first entry but takes the new id
    /// (a JSON object's last value wins).
    mutating func insert(_ bytes: [UInt8], id: Int32) {
        precondition(id >= 0)
        if (ids.count + 1) * 2 > slots.count { grow() }
        var slot = bytes.withUnsafeBufferPointer { TokenTable.hash($0) } & mask
        while slots[slot] != 0 {
            let e = Int(slots[slot]) - 1
            if pool[Int(starts[e])..<Int(starts[e + 1])].elementsEqual(bytes) {
                ids[e] = id
                setEntry(of: id, e)
                return
            }
            slot = (slot + 1) & mask
        }
        pool.append(contentsOf: bytes)
        starts.append(Int32(pool.count))
        ids.append(id)
        slots[slot] = Int32(ids.count)
        setEntry(of: id, ids.count - 1)
        maxTokenBytes = max(maxTokenBytes, bytes.count)
    }

    private mutating func setEntry(of id: Int32, _ e: Int) {
        if Int(id) >= entryOfId.count {
            entryOfId.append(contentsOf: repeatElement(-1, count: Int(id) + 1 - entryOfId.count))
        }
        entryOfId[Int(id)] = Int32(e)
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = [Int32](repeating: 0, count: size)
        mask = size - 1
        for e in 0..<ids.count {
            let s = Int(starts[e]), t = Int(starts[e + 1])
            var slot = pool.withUnsafeBufferPointer { TokenTable.hash(UnsafeBufferPointer(rebasing: $0[s..<t])) } & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(e + 1)
        }
    }

    /// Every (spelling, id) pair in insertion order.
    var entries: [(bytes: ArraySlice<UInt8>, id: Int32)] {
        (0..<ids.count).map { (pool[Int(starts[$0])..<Int(starts[$0 + 1])], ids[$0]) }
    }
}

/// BPE merges: (left id, right id) → (rank, merged id), open addressing on packed keys.
struct PairTable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private var mask: Int
    private(set) var count = 0
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: PairTable.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Sets the merge of (a, b); a repeated pair takes the later rank (as the reference's
    /// `HashMap` collect does).
    mutating func set(_ a: Int32, _ b: Int32, rank: Int32, newId: Int32) {
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        var s = PairTable.slot(key, mask)
        while keys[s] != PairTable.empty && keys[s] != key { s = (s + 1) & mask }
        if keys[s] == PairTable.empty { count += 1 }
        keys[s] = key
        values[s] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: newId))
    }

    /// (rank, merged id) of the pair (a, b), packed as `rank << 32 | id`, or nil.
    @inline(__always)
    func get(_ a: Int32, _ b: Int32) -> UInt64? {
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        var s = PairTable.slot(key, mask)
        while true {
            let k = keys[s]
            if k == key { return values[s] }
            if k == PairTable.empty { return nil }
            s = (s + 1) & mask
        }
    }
}

/// A byte string usable as a dictionary key (hashes and compares its bytes).
struct ByteKey: Hashable {
    let bytes: [UInt8]

    static func == (a: ByteKey, b: ByteKey) -> Bool {
        a.bytes.count == b.bytes.count && a.bytes.withUnsafeBufferPointer { pa in
            b.bytes.withUnsafeBufferPointer { pb in pa.isEmpty || memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0 }
        }
    }

    func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}
