extension JSONValue {
    /// The value as JSON text, deterministic for a given value and options.
    ///
    /// - Compact (`pretty == false`): no whitespace, `{"a":1,"b":[true,null]}`
    ///   (Python's `separators=(",", ":")`).
    /// - Pretty: 2-space indent, `": "` after keys, empty containers as `[]` / `{}`;
    ///   byte-identical to Python's `json.dumps(v, indent=2, ensure_ascii=False)`.
    /// - No trailing newline in either form.
    ///
    /// Strings are escaped as Python's `ensure_ascii=False`: `\"`, `\\`, `\b \f \n \r \t`,
    /// other control characters as `\u00xx`; non-ASCII is written as UTF-8.
    /// Ints are written as integers; doubles in the shortest form that reads back
    /// exactly (Swift's `description`: `0.1`, `10000.0`, `1e-05`, `1e+16`), laid out as
    /// Python's `repr` (plain below 1e16; Swift alone switches at 2^53). A non-finite
    /// double (`nan`, `±inf`) has no JSON form and is written as `null`, as JavaScript's
    /// `JSON.stringify` does; the parser never produces one.
    ///
    /// - Parameters:
    ///   - pretty: indent with 2 spaces per level.
    ///   - sortKeys: write object keys in Unicode code point order (UTF-8 byte order, as
    ///     Python's `sort_keys=True`) instead of insertion order.
    /// - Complexity: O(n) in the size of the output (O(k log k) per object of k keys
    ///   when `sortKeys`).
    public func serialized(pretty: Bool = false, sortKeys: Bool = false) -> String {
        var writer = JSONWriter(pretty: pretty, sortKeys: sortKeys)
        writer.write(self, level: 0)
        return String(decoding: writer.out, as: UTF8.self)
    }

    /// The value as UTF-8 JSON bytes; see ``serialized(pretty:sortKeys:)``.
    public func serializedBytes(pretty: Bool = false, sortKeys: Bool = false) -> [UInt8] {
        var writer = JSONWriter(pretty: pretty, sortKeys: sortKeys)
        writer.write(self, level: 0)
        return writer.out
    }
}

/// Appends JSON text to a byte buffer.
struct JSONWriter {
    let pretty: Bool
    let sortKeys: Bool
    var out: [UInt8] = []

    init(pretty: Bool, sortKeys: Bool) {
        self.pretty = pretty
        self.sortKeys = sortKeys
    }

    mutating func write(_ value: JSONValue, level: Int) {
        switch value {
        case .null: append("null")
        case .bool(let b): append(b ? "true" : "false")
        case .int(let i): writeInt(i)
        case .double(let d): writeDouble(d)
        case .string(let s): writeString(s)
        case .array(let items):
            guard !items.isEmpty else { return append("[]") }
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                write(item, level: level + 1)
            }
            newline(level)
            out.append(UInt8(ascii: "]"))
        case .object(let object):
            guard !object.isEmpty else { return append("{}") }
            out.append(UInt8(ascii: "{"))
            var members = Array(object)
            if sortKeys {
                members.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            }
            for (i, member) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(level + 1)
                writeString(member.key)
                out.append(UInt8(ascii: ":"))
                if pretty { out.append(UInt8(ascii: " ")) }
                write(member.value, level: level + 1)
            }
            newline(level)
            out.append(UInt8(ascii: "}"))
        }
    }

    /// In pretty mode, a line break and `level` × 2 spaces.
    mutating func newline(_ level: Int) {
        guard pretty else { return }
        out.append(0x0A)
        out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * level))
    }

    mutating func writeInt(_ value: Int64) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes >= 20 digits
        var count = 0
        withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                count += 1
                buffer[24 - count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude != 0
            out.append(contentsOf: buffer[(24 - count)...])
        }
    }

    /// Shortest round-trip digits (Swift's `description`), laid out as Python's `repr`:
    /// the two differ only in [2^53, 1e16), where Swift writes `9.007199254740992e+15`
    /// and Python `9007199254740992.0`. Non-finite values are written as `null`.
    mutating func writeDouble(_ value: Double) {
        guard value.isFinite else { return append("null") }
        let text = value.description
        guard value.magnitude >= 0x1p53, value.magnitude < 1e16 else { return append(text) }
        // text is "[-]d.ddde+15" with at most 16 digits; the value is an integer.
        var digits = text.utf8.prefix { $0 != UInt8(ascii: "e") }.filter { $0 != UInt8(ascii: ".") }
        let sign = digits.first == UInt8(ascii: "-") ? 1 : 0
        digits.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: 16 + sign - digits.count))
        out.append(contentsOf: digits)
        append(".0")
    }

    mutating func append(_ text: String) {
        out.append(contentsOf: text.utf8)
    }
}
