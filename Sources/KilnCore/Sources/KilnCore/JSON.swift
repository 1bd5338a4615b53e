/// A JSON value, as read by ``parse(_:maxDepth:rejectDuplicateKeys:)`` and written by
/// ``serialized(pretty:sortKeys:)``.
///
/// Numbers keep the distinction the text makes: an integer literal that fits `Int64`
/// (no fraction, no exponent) is ``int(_:)``; every other number is ``double(_:)``.
///
/// Equality is exact, so that equal values serialize to equal bytes: strings and
/// object keys compare by their UTF-8 bytes (not by Swift's canonical equivalence),
/// objects compare in order, and `.int(1) != .double(1)`. Doubles compare with `==`
/// (`nan != nan`).
///
/// Frozen: JSON has exactly these seven kinds, so clients switch exhaustively.
@frozen
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// An integer literal that fits `Int64` (no fraction or exponent).
    case int(Int64)
    /// Any other number. Parsed values are always finite.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.string(a), .string(b)): return utf8Equal(a, b)
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)): return a == b
        default: return false
        }
    }
}

/// A JSON object: string keys in insertion order, with O(1) lookup by key.
///
/// Keys are distinct by their UTF-8 bytes: `"é"` (U+00E9) and `"e\u{301}"` are two
/// keys, as they are in Python's `dict` and in every tokenizer vocabulary.
/// Equality is order-sensitive (as swift-collections' `OrderedDictionary`).
public struct JSONObject: Equatable, Sendable, Sequence {
    public typealias Element = (key: String, value: JSONValue)

    /// Objects this small are searched linearly and carry no hash index.
    static let linearSearchLimit = 8

    private var entries: [Element] = []
    /// Key → position in `entries`; empty while `entries.count <= linearSearchLimit`.
    private var index: [JSONKey: Int] = [:]

    /// An empty object.
    public init() {}

    /// An object holding `pairs` in order. A repeated key keeps its first position and
    /// takes its last value (as Python's `dict(pairs)`).
    /// - Complexity: O(n).
    public init(_ pairs: [(String, JSONValue)]) {
        entries.reserveCapacity(pairs.count)
        for (key, value) in pairs { self[key] = value }
    }

    /// The value for `key`, or nil. Setting a new key appends it at the end; setting an
    /// existing key replaces its value in place; setting nil removes the key.
    /// - Complexity: get and set O(1) (amortized); removal O(n).
    public subscript(key: String) -> JSONValue? {
        get { position(of: key).map { entries[$0].value } }
        set {
            if let newValue {
                if let i = position(of: key) {
                    entries[i].value = newValue
                } else {
                    append(key, newValue)
                }
            } else if let i = position(of: key) {
                entries.remove(at: i)
                rebuildIndex()
            }
        }
    }

    /// The keys in order.
    /// - Complexity: O(n).
    public var keys: [String] { entries.map(\.key) }

    /// The values in key order.
    /// - Complexity: O(n).
    public var values: [JSONValue] { entries.map(\.value) }

    /// The number of keys.
    public var count: Int { entries.count }

    /// True if the object has no keys.
    public var isEmpty: Bool { entries.isEmpty }

    /// Iterates the `(key, value)` pairs in order.
    public func makeIterator() -> IndexingIterator<[Element]> { entries.makeIterator() }

    public var underestimatedCount: Int { entries.count }

    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.entries.count == rhs.entries.count else { return false }
        for (a, b) in zip(lhs.entries, rhs.entries) where !utf8Equal(a.key, b.key) || a.value != b.value {
            return false
        }
        return true
    }

    // MARK: Internals shared with the parser

    /// Where `key` is, by exact UTF-8 bytes.
    func position(of key: String) -> Int? {
        if entries.count <= Self.linearSearchLimit {
            return entries.firstIndex { utf8Equal($0.key, key) }
        }
        return index[JSONKey(key)]
    }

    /// Adds `key` at the end unless present; returns the existing position if present.
    /// - Complexity: O(1) amortized.
    mutating func insertIfAbsent(_ key: String, _ value: JSONValue) -> Int? {
        if entries.count < Self.linearSearchLimit {
            if let i = entries.firstIndex(where: { utf8Equal($0.key, key) }) { return i }
            entries.append((key, value))
            return nil
        }
        if index.isEmpty { buildIndex() }
        if let existing = index.updateValue(entries.count, forKey: JSONKey(key)) {
            index[JSONKey(key)] = existing
            return existing
        }
        entries.append((key, value))
        return nil
    }

    /// Replaces the value at a position returned by ``insertIfAbsent(_:_:)``.
    mutating func replaceValue(at position: Int, with value: JSONValue) {
        entries[position].value = value
    }

    private mutating func append(_ key: String, _ value: JSONValue) {
        entries.append((key, value))
        if entries.count == Self.linearSearchLimit + 1 {
            rebuildIndex()
        } else if entries.count > Self.linearSearchLimit + 1 {
            index[JSONKey(key)] = entries.count - 1
        }
    }

    /// Drops the index for small objects, rebuilds it for large ones.
    private mutating func rebuildIndex() {
        if entries.count > Self.linearSearchLimit { buildIndex() } else { index = [:] }
    }

    private mutating func buildIndex() {
        index.removeAll(keepingCapacity: true)
        index.reserveCapacity(entries.count + 1)
        for (i, entry) in entries.enumerated() { index[JSONKey(entry.key)] = i }
    }
}

/// A dictionary key that hashes and compares a string by its UTF-8 bytes.
struct JSONKey: Hashable, Sendable {
    let string: String
    init(_ string: String) { self.string = string }

    static func == (lhs: JSONKey, rhs: JSONKey) -> Bool { utf8Equal(lhs.string, rhs.string) }

    func hash(into hasher: inout Hasher) {
        let done: Void? = string.utf8.withContiguousStorageIfAvailable {
            hasher.combine(bytes: UnsafeRawBufferPointer($0))
        }
        if done == nil { Array(string.utf8).withUnsafeBytes { hasher.combine(bytes: $0) } }
    }
}

/// Byte-wise string equality (Swift's `==` treats canonically equivalent strings as equal).
@inline(__always)
func utf8Equal(_ a: String, _ b: String) -> Bool {
    let au = a.utf8, bu = b.utf8
    guard au.count == bu.count else { return false }
    let fast: Bool? = au.withContiguousStorageIfAvailable { pa in
        bu.withContiguousStorageIfAvailable { pb in pa.elementsEqual(pb) }
    } ?? nil
    return fast ?? au.elementsEqual(bu)
}

// MARK: - Accessors

extension JSONValue {
    /// The member `key` of an object; nil if this is not an object or has no such key.
    public subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// The element at `index` of an array; nil if this is not an array or `index` is out
    /// of range.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let array) = self, array.indices.contains(index) { return array[index] }
        return nil
    }

    /// The string, if this is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer, if this is an int, or a double that is integral and exactly
    /// representable as `Int64`.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }

    /// The number as a `Double`, if this is a number (ints beyond 2^53 round to nearest).
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The boolean, if this is a bool.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The elements, if this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The object, if this is an object.
    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// True if this is `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

// MARK: - Literals

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }

    /// An object with the literal's keys in the literal's order.
    /// A repeated key is a programmer error and traps, as in a `Dictionary` literal.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var object = JSONObject()
        for (key, value) in elements {
            precondition(object.insertIfAbsent(key, value) == nil, "duplicate key \"\(key)\" in JSON literal")
        }
        self = .object(object)
    }
}

extension JSONValue: CustomStringConvertible {
    /// The compact serialization (``serialized(pretty:sortKeys:)``).
    public var description: String { serialized() }
}
