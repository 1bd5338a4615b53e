/// Limits of the JSON parser.
public enum JSONLimits {
    /// Default nesting limit for arrays and objects.
    public static let defaultMaxDepth = 256
    /// The largest `maxDepth` accepted (Python's recursion limit is 1000). The parser
    /// recurses once per level: about 200 bytes of stack each in release builds (200 KB at
    /// the ceiling), 2.5 KB in debug builds (2.5 MB).
    public static let maxDepthCeiling = 1024
}

extension JSONValue {
    /// Parses UTF-8 JSON text (RFC 8259), strictly.
    ///
    /// Rejected, each with the byte offset of the problem and the path to it
    /// (`["\"weight\"", "data_offsets", "[1]"]`): trailing content after the value;
    /// a byte order mark; ill-formed UTF-8 in strings; unescaped control characters
    /// (U+0000–U+001F) in strings; unknown escapes and `\u` without 4 hex digits; lone
    /// surrogate escapes (Python accepts these, but a Swift `String` cannot hold them);
    /// leading zeros, `NaN`, `Infinity`, and numbers too large for a finite `Double`
    /// (Python gives `inf`); trailing commas; nesting deeper than `maxDepth`; and, when
    /// `rejectDuplicateKeys`, a key repeated in one object (keys compare by UTF-8 bytes).
    ///
    /// Integer literals that fit `Int64` become ``int(_:)``; larger ones and every number
    /// with a fraction or exponent become ``double(_:)`` (correctly rounded).
    ///
    /// - Parameters:
    ///   - bytes: the UTF-8 text; only read during the call.
    ///   - maxDepth: how many arrays/objects may nest, 0...``JSONLimits/maxDepthCeiling``
    ///     (0 admits only a scalar).
    ///   - rejectDuplicateKeys: throw on a repeated key; if false the last value wins and
    ///     the key keeps its first position (as Python's `json.loads`).
    /// - Throws: ``KilnError`` of kind `.invalidInput` with `offset` and `path` set and
    ///   `file` nil (callers attach it with ``KilnError/inFile(_:)``).
    /// - Complexity: O(n) in the length of the text.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, maxDepth: Int = JSONLimits.defaultMaxDepth,
        rejectDuplicateKeys: Bool = true
    ) throws -> JSONValue {
        precondition((0...JSONLimits.maxDepthCeiling).contains(maxDepth), "maxDepth \(maxDepth) out of range")
        guard let base = bytes.baseAddress, !bytes.isEmpty else {
            throw KilnError(.invalidInput, offset: 0, "expected a JSON value, found end of input")
        }
        var parser = JSONParser(
            bytes: base.assumingMemoryBound(to: UInt8.self), end: bytes.count, maxDepth: maxDepth,
            rejectDuplicateKeys: rejectDuplicateKeys)
        do {
            return try parser.parseDocument()
        } catch {
            throw KilnError(.invalidInput, offset: error.offset, path: error.pathInnermostFirst.reversed(), error.message)
        }
    }

    /// Parses UTF-8 JSON bytes; see the `UnsafeRawBufferPointer` overload.
    public static func parse(
        _ data: [UInt8], maxDepth: Int = JSONLimits.defaultMaxDepth, rejectDuplicateKeys: Bool = true
    ) throws -> JSONValue {
        try data.withUnsafeBytes { try parse($0, maxDepth: maxDepth, rejectDuplicateKeys: rejectDuplicateKeys) }
    }

    /// Parses JSON text; offsets in errors count UTF-8 bytes. See the
    /// `UnsafeRawBufferPointer` overload.
    public static func parse(
        _ string: String, maxDepth: Int = JSONLimits.defaultMaxDepth, rejectDuplicateKeys: Bool = true
    ) throws -> JSONValue {
        var text = string
        return try text.withUTF8 {
            try parse(UnsafeRawBufferPointer($0), maxDepth: maxDepth, rejectDuplicateKeys: rejectDuplicateKeys)
        }
    }
}

/// A parse error on its way up: smaller than ``KilnError``, so the recursive frames that
/// pass it stay small. The path is collected innermost first.
struct JSONParseFailure: Error {
    var offset: Int
    var message: String
    var pathInnermostFirst: [String] = []

    /// The same failure, inside the container member `component` (`"[3]"`, `"\"key\""`).
    @inline(never)
    func inside(_ component: @autoclosure () -> String) -> JSONParseFailure {
        var copy = self
        copy.pathInnermostFirst.append(component())
        return copy
    }
}

/// Recursive-descent parser over a byte buffer. Errors carry the offset; each container
/// level adds its path component while the error unwinds.
struct JSONParser {
    let bytes: UnsafePointer<UInt8>
    let end: Int
    let maxDepth: Int
    let rejectDuplicateKeys: Bool
    var pos = 0
    /// Reused buffer for strings with escapes.
    var scratch: [UInt8] = []

    init(bytes: UnsafePointer<UInt8>, end: Int, maxDepth: Int, rejectDuplicateKeys: Bool) {
        self.bytes = bytes
        self.end = end
        self.maxDepth = maxDepth
        self.rejectDuplicateKeys = rejectDuplicateKeys
    }

    mutating func parseDocument() throws(JSONParseFailure) -> JSONValue {
        if end >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            throw fail(0, "expected a JSON value, found a UTF-8 byte order mark")
        }
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard pos == end else { throw fail(pos, "expected end of input, found \(found(at: pos))") }
        return value
    }

    /// Parses the value at `pos` (whitespace already skipped). `depth` counts the
    /// containers enclosing it.
    mutating func parseValue(depth: Int) throws(JSONParseFailure) -> JSONValue {
        guard pos < end else { throw fail(pos, "expected a JSON value, found end of input") }
        switch bytes[pos] {
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        default: throw fail(pos, "expected a JSON value, found \(found(at: pos))" + nonFiniteNote(at: pos))
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseFailure) -> JSONValue {
        try checkDepth(depth)
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if pos < end, bytes[pos] == UInt8(ascii: "]") {
            pos += 1
            return .array(items)
        }
        while true {
            do {
                items.append(try parseValue(depth: depth))
            } catch {
                throw error.inside("[\(items.count)]")
            }
            skipWhitespace()
            guard pos < end else {
                throw fail(pos, "expected ',' or ']' after array element, found end of input")
            }
            let c = bytes[pos]
            pos += 1
            if c == UInt8(ascii: "]") { return .array(items) }
            guard c == UInt8(ascii: ",") else {
                throw fail(pos - 1, "expected ',' or ']' after array element, found \(found(at: pos - 1))")
            }
            skipWhitespace()
            if pos < end, bytes[pos] == UInt8(ascii: "]") {
                throw fail(pos, "expected a JSON value after ',', found ']' (trailing comma)")
            }
        }
    }

    mutating func parseObject(depth: Int) throws(JSONParseFailure) -> JSONValue {
        try checkDepth(depth)
        let open = pos
        pos += 1
        var object = JSONObject()
        skipWhitespace()
        if pos < end, bytes[pos] == UInt8(ascii: "}") {
            pos += 1
            return .object(object)
        }
        while true {
            guard pos < end, bytes[pos] == UInt8(ascii: "\"") else {
                throw fail(pos, "expected a string key, found \(found(at: pos))")
            }
            let keyOffset = pos
            let key = try parseString()
            skipWhitespace()
            guard pos < end, bytes[pos] == UInt8(ascii: ":") else {
                throw fail(pos, "expected ':' after key \(JSONWriter.quoted(key)), found \(found(at: pos))")
            }
            pos += 1
            skipWhitespace()
            let value: JSONValue
            do {
                value = try parseValue(depth: depth)
            } catch {
                throw error.inside(JSONWriter.quoted(key))
            }
            if let existing = object.insertIfAbsent(key, value) {
                if rejectDuplicateKeys {
                    let first = firstKeyOffset(objectStart: open, index: existing)
                    throw fail(keyOffset, "duplicate key \(JSONWriter.quoted(key)) (first at offset \(first))")
                }
                object.replaceValue(at: existing, with: value)
            }
            skipWhitespace()
            guard pos < end else {
                throw fail(pos, "expected ',' or '}' after object member, found end of input")
            }
            let c = bytes[pos]
            pos += 1
            if c == UInt8(ascii: "}") { return .object(object) }
            guard c == UInt8(ascii: ",") else {
                throw fail(pos - 1, "expected ',' or '}' after object member, found \(found(at: pos - 1))")
            }
            skipWhitespace()
            if pos < end, bytes[pos] == UInt8(ascii: "}") {
                throw fail(pos, "expected a string key after ',', found '}' (trailing comma)")
            }
        }
    }

    // MARK: Scalars

    mutating func expectLiteral(_ word: StaticString) throws(JSONParseFailure) {
        let n = word.utf8CodeUnitCount
        let w = word.utf8Start
        var i = 0
        while i < n, pos + i < end, bytes[pos + i] == w[i] { i += 1 }
        guard i == n else { throw fail(pos, "expected '\(word)', found \(found(at: pos))") }
        pos += n
    }

    /// Parses a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    mutating func parseNumber() throws(JSONParseFailure) -> JSONValue {
        let start = pos
        let negative = bytes[pos] == UInt8(ascii: "-")
        if negative { pos += 1 }
        guard pos < end, isDigit(bytes[pos]) else {
            throw fail(pos, "expected a digit after '-', found \(found(at: pos))" + nonFiniteNote(at: pos))
        }
        let intStart = pos
        if bytes[pos] == UInt8(ascii: "0") {
            pos += 1
            if pos < end, isDigit(bytes[pos]) {
                throw fail(start, "expected a number, found \(found(at: start)) (leading zeros are not allowed)")
            }
        } else {
            while pos < end, isDigit(bytes[pos]) { pos += 1 }
        }
        let intEnd = pos
        var fractionEnd = intEnd
        if pos < end, bytes[pos] == UInt8(ascii: ".") {
            pos += 1
            try expectDigits(after: "'.'")
            fractionEnd = pos
        }
        var exponent = 0
        var hasExponent = false
        if pos < end, bytes[pos] | 0x20 == UInt8(ascii: "e") {
            hasExponent = true
            pos += 1
            var exponentNegative = false
            if pos < end, bytes[pos] == UInt8(ascii: "-") || bytes[pos] == UInt8(ascii: "+") {
                exponentNegative = bytes[pos] == UInt8(ascii: "-")
                pos += 1
            }
            let digitsStart = pos
            try expectDigits(after: "the exponent marker")
            for i in digitsStart..<pos where exponent < 100_000 {
                exponent = exponent * 10 + Int(bytes[i] &- UInt8(ascii: "0"))
            }
            if exponentNegative { exponent = -exponent }
        }
        if fractionEnd == intEnd, !hasExponent, let value = int64(intStart..<intEnd, negative: negative) {
            return .int(value)
        }
        let fraction = fractionEnd == intEnd ? intEnd..<intEnd : intEnd + 1..<fractionEnd
        let value = fastDouble(intStart..<intEnd, fraction: fraction, exponent: exponent)
            .map { negative ? -$0 : $0 } ?? slowDouble(start..<pos)
        guard value.isFinite else {
            throw fail(start, "expected a number within the range of Double, found \(text(start..<pos))")
        }
        return .double(value)
    }

    mutating func expectDigits(after what: String) throws(JSONParseFailure) {
        guard pos < end, isDigit(bytes[pos]) else {
            throw fail(pos, "expected a digit after \(what), found \(found(at: pos))")
        }
        while pos < end, isDigit(bytes[pos]) { pos += 1 }
    }

    /// The integer in `digits`, or nil if it does not fit `Int64`.
    func int64(_ digits: Range<Int>, negative: Bool) -> Int64? {
        var value: Int64 = 0
        if digits.count <= 18 {
            for i in digits { value = value &* 10 &+ Int64(bytes[i] &- UInt8(ascii: "0")) }
            return negative ? -value : value
        }
        // Accumulate toward the sign so that Int64.min fits.
        for i in digits {
            let digit = Int64(bytes[i] &- UInt8(ascii: "0"))
            let (scaled, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = negative ? scaled.subtractingReportingOverflow(digit) : scaled.addingReportingOverflow(digit)
            if o1 || o2 { return nil }
            value = next
        }
        return value
    }

    /// Clinger's fast path: exact when the significand fits 2^53 and |exponent| <= 22,
    /// because one IEEE multiply or divide rounds correctly. Nil otherwise.
    func fastDouble(_ integer: Range<Int>, fraction: Range<Int>, exponent: Int) -> Double? {
        var significand: UInt64 = 0
        var digits = 0
        for i in integer where significand != 0 || bytes[i] != UInt8(ascii: "0") {
            significand = significand &* 10 &+ UInt64(bytes[i] &- UInt8(ascii: "0"))
            digits += 1
        }
        for i in fraction {
            significand = significand &* 10 &+ UInt64(bytes[i] &- UInt8(ascii: "0"))
            if significand != 0 { digits += 1 }
        }
        guard digits <= 15 else { return nil }  // 10^15 < 2^53: no overflow, exact
        let e = exponent - fraction.count
        guard (-22...22).contains(e) else { return significand == 0 ? 0 : nil }
        let d = Double(significand)
        return e < 0 ? d / Self.powersOfTen[-e] : d * Self.powersOfTen[e]
    }

    static let powersOfTen: [Double] = (0...22).map { e in (0..<e).reduce(1.0) { acc, _ in acc * 10 } }

    /// Correctly rounded conversion by the standard library (already validated text).
    func slowDouble(_ range: Range<Int>) -> Double {
        Double(text(range)) ?? .nan
    }

    // MARK: Helpers

    @inline(__always)
    mutating func skipWhitespace() {
        while pos < end {
            switch bytes[pos] {
            case 0x20, 0x0A, 0x0D, 0x09: pos += 1
            default: return
            }
        }
    }

    @inline(__always)
    func isDigit(_ c: UInt8) -> Bool { c &- UInt8(ascii: "0") < 10 }

    func checkDepth(_ depth: Int) throws(JSONParseFailure) {
        guard depth <= maxDepth else {
            throw fail(pos, "expected nesting depth at most \(maxDepth), found \(depth)")
        }
    }

    /// The error for `offset`. Out of line, with the message built lazily, so that error
    /// text does not enlarge the frames of the recursive functions.
    @inline(never)
    func fail(_ offset: Int, _ message: @autoclosure () -> String) -> JSONParseFailure {
        JSONParseFailure(offset: offset, message: message())
    }

    func text(_ range: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(start: bytes + range.lowerBound, count: range.count), as: UTF8.self)
    }

    /// The offset of the `index`-th key of the object starting at `objectStart`
    /// (error path only: re-reads text already accepted).
    func firstKeyOffset(objectStart: Int, index: Int) -> Int {
        var scan = JSONParser(bytes: bytes, end: end, maxDepth: maxDepth, rejectDuplicateKeys: false)
        scan.pos = objectStart + 1
        for _ in 0..<index {
            scan.skipWhitespace()
            _ = try? scan.parseString()
            scan.skipWhitespace()
            scan.pos += 1  // ':'
            scan.skipWhitespace()
            _ = try? scan.parseValue(depth: 0)
            scan.skipWhitespace()
            scan.pos += 1  // ','
        }
        scan.skipWhitespace()
        return scan.pos
    }
}
