import KilnCore

/// Limits on what a tokenizer file may ask for, checked before allocating.
enum TokenizerLimits {
    /// The largest token id accepted (ids index dense tables; real vocabularies stay far below).
    static let maxTokenId = (1 << 24) - 1
}

/// A value inside tokenizer.json together with where it is, so that every refusal names
/// the file and the path (`pre_tokenizer › pretokenizers › [1] › type`).
struct JSONNode {
    let value: JSONValue
    let file: String
    let path: [String]

    init(_ value: JSONValue, file: String, path: [String] = []) {
        self.value = value
        self.file = file
        self.path = path
    }

    /// The member `key`, or nil when it is absent or `null` (serde reads both as `None`).
    subscript(key: String) -> JSONNode? {
        guard let child = value[key], !child.isNull else { return nil }
        return JSONNode(child, file: file, path: path + [key])
    }

    /// True if the member is present (even if `null`).
    func has(_ key: String) -> Bool { value[key] != nil }

    /// The elements of this array.
    func elements() throws -> [JSONNode] {
        guard let items = value.arrayValue else { throw mismatch(expected: "an array") }
        return items.enumerated().map { JSONNode($1, file: file, path: path + ["[\($0)]"]) }
    }

    /// The members of this object, in file order.
    func members() throws -> [(key: String, node: JSONNode)] {
        guard let object = value.objectValue else { throw mismatch(expected: "an object") }
        return object.map { ($0.key, JSONNode($0.value, file: file, path: path + [$0.key])) }
    }

    /// This value as a string.
    func string() throws -> String {
        guard let s = value.stringValue else { throw mismatch(expected: "a string") }
        return s
    }

    /// This value as a non-negative integer that fits `Int32` (counts, lengths).
    func index() throws -> Int {
        guard let i = value.intValue, i >= 0, i <= Int64(Int32.max) else {
            throw mismatch(expected: "an integer in 0...\(Int32.max)")
        }
        return Int(i)
    }

    /// This value as a token id, 0...``TokenizerLimits/maxTokenId``.
    func tokenId() throws -> Int32 {
        guard let i = value.intValue, i >= 0, i <= Int64(TokenizerLimits.maxTokenId) else {
            throw mismatch(expected: "a token id in 0...\(TokenizerLimits.maxTokenId)")
        }
        return Int32(i)
    }

    /// This value as a boolean.
    func bool() throws -> Bool {
        guard let b = value.boolValue else { throw mismatch(expected: "true or false") }
        return b
    }

    /// The required string member `key`.
    func string(_ key: String) throws -> String {
        guard let child = self[key] else { throw missing(key, expected: "a string") }
        return try child.string()
    }

    /// The optional string member `key` (absent or null → nil).
    func optionalString(_ key: String) throws -> String? { try self[key]?.string() }

    /// The boolean member `key`, or `fallback` when absent or null.
    func bool(_ key: String, default fallback: Bool) throws -> Bool { try self[key]?.bool() ?? fallback }

    /// The integer member `key`, or `fallback` when absent or null.
    func index(_ key: String, default fallback: Int) throws -> Int { try self[key]?.index() ?? fallback }

    /// The required member `key`.
    func required(_ key: String, expected: String) throws -> JSONNode {
        guard let child = self[key] else { throw missing(key, expected: expected) }
        return child
    }

    /// Reads the `type` member and checks it is one of `known`.
    /// - Throws: `KilnError(.unsupported)` naming the file and the path of `type`.
    func type(oneOf known: [String]) throws -> String {
        guard let typeNode = self["type"] else { throw missing("type", expected: "a string") }
        let name = try typeNode.string()
        guard known.contains(name) else {
            throw KilnError(
                .unsupported, file: file, path: typeNode.path,
                "expected one of \(known.map { "\"\($0)\"" }.joined(separator: ", ")), found \"\(name)\"")
        }
        return name
    }

    /// A single character (Metaspace replacement, Strip content).
    func character() throws -> Unicode.Scalar {
        let s = try string()
        guard s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else {
            throw mismatch(expected: "a single character")
        }
        return c
    }

    /// "expected X, found <this value>" at this node.
    func mismatch(expected: String) -> KilnError {
        KilnError.mismatch(file: file, path: path, expected: expected, found: JSONNode.describe(value))
    }

    /// "expected X, found nothing" for the absent member `key`.
    func missing(_ key: String, expected: String) -> KilnError {
        KilnError.mismatch(file: file, path: path + [key], expected: expected, found: "nothing")
    }

    /// A short description of a JSON value for error messages.
    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s):
            let shown = s.unicodeScalars.count > 40 ? String(String.UnicodeScalarView(s.unicodeScalars.prefix(40))) + "…" : s
            return "\"\(shown)\""
        case .array(let a): return "an array of \(a.count)"
        case .object: return "an object"
        }
    }
}

/// A pattern as tokenizer.json writes it: `{"String": "…"}` or `{"Regex": "…"}`.
enum PatternSpec {
    case string(String)
    case regex(String)

    init(_ node: JSONNode) throws {
        if let s = node["String"] {
            self = .string(try s.string())
        } else if let r = node["Regex"] {
            self = .regex(try r.string())
        } else {
            throw node.mismatch(expected: "{\"String\": …} or {\"Regex\": …}")
        }
    }
}

extension TokenTable {
    /// The `vocab` object of a model node (`{"token": id, …}`).
    /// - Throws: `KilnError(.invalidInput)` naming the file and path if it is missing or an
    ///   id is not an integer in 0...``TokenizerLimits/maxTokenId``.
    init(vocabOf node: JSONNode) throws {
        let vocabNode = try node.required("vocab", expected: "an object")
        guard case .object(let object) = vocabNode.value else { throw vocabNode.mismatch(expected: "an object") }
        self.init(capacity: object.count)
        for (token, value) in object {
            let id: Int32
            if let i = value.intValue, i >= 0, i <= Int64(TokenizerLimits.maxTokenId) {
                id = Int32(i)
            } else {
                id = try JSONNode(value, file: node.file, path: vocabNode.path + [token]).tokenId()  // throws
            }
            insert(Array(token.utf8), id: id)
        }
    }
}
