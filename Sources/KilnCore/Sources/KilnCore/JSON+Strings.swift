// JSON text in both directions: reading string literals (escapes, UTF-8 validation,
// surrogate pairs), writing them (Python `json.dumps(ensure_ascii=False)` escaping), and
// quoting input for error messages.

extension JSONParser {
    /// Parses the string literal at `pos` (which holds `"`).
    ///
    /// Fast path: no escapes, so the string is made straight from the input bytes after
    /// they are checked. Strings with escapes are rebuilt in `scratch`.
    mutating func parseString() throws(JSONParseFailure) -> String {
        let start = pos + 1
        var p = start
        while p < end {
            let c = bytes[p]
            if c == UInt8(ascii: "\"") {
                pos = p + 1
                return String(decoding: UnsafeBufferPointer(start: bytes + start, count: p - start), as: UTF8.self)
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw controlCharacter(at: p) }
            p = c < 0x80 ? p + 1 : try validateUTF8(at: p)
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(start: bytes + start, count: p - start))
        while p < end {
            let c = bytes[p]
            if c == UInt8(ascii: "\"") {
                pos = p + 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if c == UInt8(ascii: "\\") {
                p = try parseEscape(at: p)
            } else if c < 0x20 {
                throw controlCharacter(at: p)
            } else if c < 0x80 {
                scratch.append(c)
                p += 1
            } else {
                let next = try validateUTF8(at: p)
                scratch.append(contentsOf: UnsafeBufferPointer(start: bytes + p, count: next - p))
                p = next
            }
        }
        throw fail(end, "expected '\"' to close the string at offset \(start - 1), found end of input")
    }

    /// Decodes the escape at `p` (a backslash) into `scratch`; returns the offset after it.
    mutating func parseEscape(at p: Int) throws(JSONParseFailure) -> Int {
        guard p + 1 < end else {
            throw fail(p + 1, "expected an escape character after '\\', found end of input")
        }
        let simple: UInt8
        switch bytes[p + 1] {
        case UInt8(ascii: "\""): simple = UInt8(ascii: "\"")
        case UInt8(ascii: "\\"): simple = UInt8(ascii: "\\")
        case UInt8(ascii: "/"): simple = UInt8(ascii: "/")
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"):
            let unit = try hex4(at: p)
            var scalar = UInt32(unit)
            var next = p + 6
            if (0xDC00...0xDFFF).contains(unit) {
                throw fail(p, "expected a high surrogate before \\u\(Self.hex(unit, width: 4)), found none (lone low surrogate)")
            }
            if (0xD800...0xDBFF).contains(unit) {
                var low: UInt16?
                if next + 1 < end, bytes[next] == UInt8(ascii: "\\"), bytes[next + 1] == UInt8(ascii: "u") {
                    low = try hex4(at: next)
                }
                guard let low, (0xDC00...0xDFFF).contains(low) else {
                    throw fail(
                        p, "expected a low surrogate \\uDC00-\\uDFFF after \\u\(Self.hex(unit, width: 4)), "
                            + "found \(low.map { "\\u" + Self.hex($0, width: 4) } ?? found(at: next)) (lone high surrogate)")
                }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                next += 6
            }
            appendUTF8(Unicode.Scalar(scalar)!)
            return next
        default:
            throw fail(p, "expected an escape character (\" \\ / b f n r t u) after '\\', found \(found(at: p + 1))")
        }
        scratch.append(simple)
        return p + 2
    }

    /// The 4 hex digits after the `\u` at `p`.
    func hex4(at p: Int) throws(JSONParseFailure) -> UInt16 {
        var value: UInt16 = 0
        for i in p + 2..<p + 6 {
            guard i < end, let digit = hexDigit(bytes[i]) else {
                throw fail(p, "expected 4 hex digits after \\u, found \(found(at: p + 2))")
            }
            value = value << 4 | UInt16(digit)
        }
        return value
    }

    func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    mutating func appendUTF8(_ scalar: Unicode.Scalar) {
        for unit in UTF8.encode(scalar)! { scratch.append(unit) }
    }

    /// Checks the UTF-8 sequence whose lead byte (>= 0x80) is at `p`; returns the offset
    /// after it. Rejects overlong forms, surrogates, values above U+10FFFF and truncation
    /// (Unicode Table 3-7, well-formed byte sequences).
    @inline(__always)
    func validateUTF8(at p: Int) throws(JSONParseFailure) -> Int {
        @inline(__always) func byte(_ i: Int, in range: ClosedRange<UInt8>) -> Bool {
            i < end && range.contains(bytes[i])
        }
        let tail: ClosedRange<UInt8> = 0x80...0xBF
        let ok: Bool
        let length: Int
        switch bytes[p] {
        case 0xC2...0xDF: length = 2; ok = byte(p + 1, in: tail)
        case 0xE0: length = 3; ok = byte(p + 1, in: 0xA0...0xBF) && byte(p + 2, in: tail)
        case 0xE1...0xEC, 0xEE...0xEF: length = 3; ok = byte(p + 1, in: tail) && byte(p + 2, in: tail)
        case 0xED: length = 3; ok = byte(p + 1, in: 0x80...0x9F) && byte(p + 2, in: tail)
        case 0xF0: length = 4; ok = byte(p + 1, in: 0x90...0xBF) && byte(p + 2, in: tail) && byte(p + 3, in: tail)
        case 0xF1...0xF3: length = 4; ok = byte(p + 1, in: tail) && byte(p + 2, in: tail) && byte(p + 3, in: tail)
        case 0xF4: length = 4; ok = byte(p + 1, in: 0x80...0x8F) && byte(p + 2, in: tail) && byte(p + 3, in: tail)
        default: length = 1; ok = false
        }
        guard ok else {
            throw fail(p, "expected UTF-8 text in string, found ill-formed sequence starting with byte 0x\(Self.hex(bytes[p], width: 2))")
        }
        return p + length
    }

    func controlCharacter(at p: Int) -> JSONParseFailure {
        fail(p, "expected a printable character or escape in string, found control character U+\(Self.hex(bytes[p], width: 4))")
    }
}

extension JSONWriter {
    /// Writes `string` quoted, escaping as Python's `json.dumps(ensure_ascii=False)`:
    /// `\"`, `\\`, `\b \f \n \r \t`, other U+0000–U+001F as lowercase `\u00xx`; everything
    /// else (including non-ASCII and U+007F) verbatim.
    mutating func writeString(_ string: String) {
        out.append(UInt8(ascii: "\""))
        var s = string
        s.withUTF8 { utf8 in
            var runStart = 0
            for (i, c) in utf8.enumerated() where c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i]))
                runStart = i + 1
                out.append(UInt8(ascii: "\\"))
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(c)
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x0C: out.append(UInt8(ascii: "f"))
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                default:
                    let digits: [UInt8] = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [UInt8(ascii: "u"), 0x30, 0x30, digits[Int(c >> 4)], digits[Int(c & 15)]])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension JSONWriter {
    /// `"key"` with the key escaped as in serialized JSON, for paths and messages.
    static func quoted(_ key: String) -> String {
        var writer = JSONWriter(pretty: false, sortKeys: false)
        writer.writeString(key)
        return String(decoding: writer.out, as: UTF8.self)
    }
}

extension JSONParser {
    /// Describes the input at `offset` for "found ..." (a word, a character, or a byte).
    func found(at offset: Int) -> String {
        guard offset < end else { return "end of input" }
        let c = bytes[offset]
        var wordEnd = offset
        while wordEnd < end, wordEnd - offset < 24, isWordByte(bytes[wordEnd]) { wordEnd += 1 }
        if wordEnd > offset + 1 { return "'\(text(offset..<wordEnd))'" }
        if c > 0x20, c < 0x7F { return "'\(Character(Unicode.Scalar(c)))'" }
        return "byte 0x" + Self.hex(c, width: 2)
    }

    func isWordByte(_ c: UInt8) -> Bool {
        isDigit(c) || (c | 0x20) &- UInt8(ascii: "a") < 26 || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
            || c == UInt8(ascii: ".")
    }

    func nonFiniteNote(at offset: Int) -> String {
        guard offset < end, bytes[offset] == UInt8(ascii: "N") || bytes[offset] == UInt8(ascii: "I") else { return "" }
        return " (NaN and Infinity are not JSON)"
    }

    /// `value` in uppercase hex, zero-padded to `width` digits.
    static func hex(_ value: some BinaryInteger, width: Int) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
