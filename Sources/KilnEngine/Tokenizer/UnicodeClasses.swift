/// Character classes as the reference `tokenizers` (Rust `char` methods, the `regex` and
/// `onig` crates, `unicode_categories`) define them, on scalar values. ASCII is answered
/// from a table; everything else from the stdlib's Unicode properties.
enum UnicodeClass {
    // Bits of `asciiTable`.
    static let letter: UInt16 = 1 << 0        // \p{L}
    static let number: UInt16 = 1 << 1        // \p{N}
    static let space: UInt16 = 1 << 2         // White_Space (Rust is_whitespace, regex/onig \s)
    static let newline: UInt16 = 1 << 3       // \r or \n
    static let punctuation: UInt16 = 1 << 4   // \p{P}
    static let asciiPunct: UInt16 = 1 << 5    // Rust is_ascii_punctuation
    static let word: UInt16 = 1 << 6          // Rust regex \w
    static let control: UInt16 = 1 << 7       // Cc

    static let asciiTable: [UInt16] = (0..<128).map { v in
        let c = UInt8(v)
        var bits: UInt16 = 0
        let isLetter = (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
        let isDigit = c >= 0x30 && c <= 0x39
        if isLetter { bits |= letter | word }
        if isDigit { bits |= number | word }
        if c == 0x5F { bits |= word | punctuation }  // '_' is Pc
        if (c >= 0x09 && c <= 0x0D) || c == 0x20 { bits |= space }
        if c == 0x0A || c == 0x0D { bits |= newline }
        if c < 0x20 || c == 0x7F { bits |= control }
        if (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E) {
            bits |= asciiPunct
            // The ASCII symbols $ + < = > ^ ` | ~ are Sc/Sm/Sk, not \p{P}.
            if !"$+<=>^`|~".utf8.contains(c) { bits |= punctuation }
        }
        return bits
    }

    @inline(__always)
    static func properties(_ v: UInt32) -> Unicode.Scalar.Properties? { Unicode.Scalar(v)?.properties }

    /// `\p{L}`: Lu, Ll, Lt, Lm, Lo.
    static func isLetter(_ v: UInt32) -> Bool {
        if v < 128 { return asciiTable[Int(v)] & letter != 0 }
        switch properties(v)?.generalCategory {
        case .uppercaseLetter?, .lowercaseLetter?, .titlecaseLetter?, .modifierLetter?, .otherLetter?: return true
        default: return false
        }
    }

    /// `\p{N}` and Rust `char::is_numeric`: Nd, Nl, No.
    static func isNumber(_ v: UInt32) -> Bool {
        if v < 128 { return asciiTable[Int(v)] & number != 0 }
        switch properties(v)?.generalCategory {
        case .decimalNumber?, .letterNumber?, .otherNumber?: return true
        default: return false
        }
    }

    /// The White_Space property (Rust `char::is_whitespace`, `\s` in regex and onig).
    static func isWhitespace(_ v: UInt32) -> Bool {
        if v < 128 { return asciiTable[Int(v)] & space != 0 }
        return properties(v)?.isWhitespace ?? false
    }

    /// `\p{P}`: Pc, Pd, Ps, Pe, Pi, Pf, Po.
    static func isPunctuation(_ v: UInt32) -> Bool {
        if v < 128 { return asciiTable[Int(v)] & punctuation != 0 }
        switch properties(v)?.generalCategory {
        case .connectorPunctuation?, .dashPunctuation?, .openPunctuation?, .closePunctuation?,
            .initialPunctuation?, .finalPunctuation?, .otherPunctuation?:
            return true
        default: return false
        }
    }

    /// BERT's punctuation: ASCII punctuation (incl. `$+<=>^`|~`) or `\p{P}`.
    static func isBertPunctuation(_ v: UInt32) -> Bool {
        if v < 128 { return asciiTable[Int(v)] & asciiPunct != 0 }
        return isPunctuation(v)
    }

    /// unicode_categories' `is_other`: Cc, Cf, Co, Cs — not Cn (unassigned code points stay).
    static func isOther(_ v: UInt32) -> Bool {
        if v < 128 { return asciiTable[Int(v)] & control != 0 }
        guard let p = properties(v) else { return true }
        switch p.generalCategory {
        case .control, .format, .privateUse, .surrogate: return true
        default: return false
        }
    }

    /// Rust regex `\w`: Alphabetic, marks, Nd, Pc, Join_Control.
    static func isWordCharacter(_ v: UInt32) -> Bool {
        if v < 128 { return asciiTable[Int(v)] & word != 0 }
        guard let p = properties(v) else { return false }
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// Mn (what StripAccents removes).
    static func isNonspacingMark(_ v: UInt32) -> Bool {
        v >= 0x300 && properties(v)?.generalCategory == .nonspacingMark
    }

    /// The CJK ideograph blocks BERT surrounds with spaces.
    static func isChinese(_ v: UInt32) -> Bool {
        switch v {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
            0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default: return false
        }
    }
}

// MARK: - UTF-8 on byte buffers

/// UTF-8 helpers on byte arrays that are known to hold well-formed UTF-8 (they come from
/// Swift strings and from transformations that keep UTF-8 well-formed).
enum UTF8Bytes {
    /// The scalar starting at `i` and its length in bytes.
    @inline(__always)
    static func decode(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> (value: UInt32, length: Int) {
        let b0 = UInt32(p[i])
        if b0 < 0x80 { return (b0, 1) }
        let n = p.count
        if b0 < 0xE0, i + 1 < n { return ((b0 & 0x1F) << 6 | UInt32(p[i + 1] & 0x3F), 2) }
        if b0 < 0xF0, i + 2 < n {
            return ((b0 & 0x0F) << 12 | UInt32(p[i + 1] & 0x3F) << 6 | UInt32(p[i + 2] & 0x3F), 3)
        }
        if i + 3 < n {
            return ((b0 & 0x07) << 18 | UInt32(p[i + 1] & 0x3F) << 12 | UInt32(p[i + 2] & 0x3F) << 6
                | UInt32(p[i + 3] & 0x3F), 4)
        }
        return (0xFFFD, 1)
    }

    /// Appends the UTF-8 encoding of scalar value `v`.
    @inline(__always)
    static func append(_ v: UInt32, to out: inout [UInt8]) {
        if v < 0x80 {
            out.append(UInt8(v))
        } else if v < 0x800 {
            out.append(UInt8(0xC0 | v >> 6)); out.append(UInt8(0x80 | v & 0x3F))
        } else if v < 0x10000 {
            out.append(UInt8(0xE0 | v >> 12)); out.append(UInt8(0x80 | (v >> 6) & 0x3F))
            out.append(UInt8(0x80 | v & 0x3F))
        } else {
            out.append(UInt8(0xF0 | v >> 18)); out.append(UInt8(0x80 | (v >> 12) & 0x3F))
            out.append(UInt8(0x80 | (v >> 6) & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
        }
    }

    /// The scalar values of `bytes`.
    static func scalars(_ bytes: [UInt8]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(bytes.count)
        bytes.withUnsafeBufferPointer { p in
            var i = 0
            while i < p.count {
                let (v, n) = decode(p, i)
                out.append(v)
                i += n
            }
        }
        return out
    }

    /// UTF-8 of a list of scalar values.
    static func encode(_ scalars: [UInt32]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(scalars.count)
        for v in scalars { append(v, to: &out) }
        return out
    }

    /// True for a byte that starts a scalar (not a continuation byte).
    @inline(__always)
    static func isBoundary(_ b: UInt8) -> Bool { b & 0xC0 != 0x80 }

    /// A Swift string from bytes (ill-formed sequences become U+FFFD, as `from_utf8_lossy`).
    static func string(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
}
