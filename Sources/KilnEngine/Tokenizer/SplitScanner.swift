/// Hand-written matchers for the pre-tokenizer regexes of GPT-2 and Llama 3 / Qwen2, with
/// the exact leftmost-first backtracking results of the regex (checked against Swift
/// `Regex` on the same pattern in the tests):
///
/// ```
/// GPT-2:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// Llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
///         | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+        (Qwen2: \p{N})
/// ```
///
/// Every character is a letter, a number, whitespace or "other", so the matches of both
/// patterns tile the text: the scanners return consecutive ranges.
enum SplitScanner {
    enum Flavor: Equatable {
        case gpt2
        /// Llama 3 (`maxDigits` 3) and Qwen2 (`maxDigits` 1).
        case llama3(maxDigits: Int)
    }

    // Class bits per character.
    private static let L: UInt8 = 1, N: UInt8 = 2, S: UInt8 = 4, NL: UInt8 = 8

    @inline(__always)
    private static func classify(_ v: UInt32) -> UInt8 {
        if v < 128 {
            let bits = UnicodeClass.asciiTable[Int(v)]
            var c: UInt8 = 0
            if bits & UnicodeClass.letter != 0 { c |= L }
            if bits & UnicodeClass.number != 0 { c |= N }
            if bits & UnicodeClass.space != 0 { c |= S }
            if bits & UnicodeClass.newline != 0 { c |= NL }
            return c
        }
        guard let p = Unicode.Scalar(v)?.properties else { return 0 }
        var c: UInt8 = p.isWhitespace ? S : 0
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: c |= L
        case .decimalNumber, .letterNumber, .otherNumber: c |= N
        default: break
        }
        return c
    }

    /// The byte ranges of the pre-tokens of `text`.
    static func split(_ text: [UInt8], flavor: Flavor) -> [Range<Int>] {
        // Decode once: class and byte offset of every character (offsets has one extra entry).
        var cls: [UInt8] = []
        var offsets: [Int32] = []
        var scalars: [UInt32] = []
        cls.reserveCapacity(text.count)
        offsets.reserveCapacity(text.count + 1)
        scalars.reserveCapacity(text.count)
        text.withUnsafeBufferPointer { p in
            var i = 0
            while i < p.count {
                let (v, n) = UTF8Bytes.decode(p, i)
                cls.append(classify(v))
                offsets.append(Int32(i))
                scalars.append(v)
                i += n
            }
        }
        offsets.append(Int32(text.count))
        var ends: [Int] = []
        cls.withUnsafeBufferPointer { c in
            scalars.withUnsafeBufferPointer { s in
                switch flavor {
                case .gpt2: ends = scanGPT2(c, s)
                case .llama3(let maxDigits): ends = scanLlama3(c, s, maxDigits: maxDigits)
                }
            }
        }
        var out: [Range<Int>] = []
        out.reserveCapacity(ends.count)
        var start = 0
        for e in ends {
            out.append(Int(offsets[start])..<Int(offsets[e]))
            start = e
        }
        return out
    }

    /// Length of a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at `i`, or 0.
    @inline(__always)
    private static func contraction(_ s: UnsafeBufferPointer<UInt32>, _ i: Int, ignoreCase: Bool) -> Int {
        guard s[i] == 0x27, i + 1 < s.count else { return 0 }
        @inline(__always) func lower(_ v: UInt32) -> UInt32 {
            guard ignoreCase else { return v }
            if v >= 0x41 && v <= 0x5A { return v + 0x20 }
            if v == 0x17F { return 0x73 }  // ſ folds to s
            return v
        }
        let a = lower(s[i + 1])
        switch a {
        case 0x73, 0x74, 0x6D, 0x64: return 2                                   // s t m d
        case 0x72, 0x76: return i + 2 < s.count && lower(s[i + 2]) == 0x65 ? 3 : 0  // re ve
        case 0x6C: return i + 2 < s.count && lower(s[i + 2]) == 0x6C ? 3 : 0        // ll
        default: return 0
        }
    }

    /// End of the whitespace alternatives `\s+(?!\S)|\s+` at `i` (a whitespace character).
    @inline(__always)
    private static func whitespaceEnd(_ c: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        var j = i + 1
        while j < c.count && c[j] & S != 0 { j += 1 }
        if j == c.count || j - 1 == i { return j }
        return j - 1  // leave the last space to the word that follows
    }

    private static func scanGPT2(_ c: UnsafeBufferPointer<UInt8>, _ s: UnsafeBufferPointer<UInt32>) -> [Int] {
        let n = c.count
        var ends: [Int] = []
        ends.reserveCapacity(n / 3 + 1)
        var i = 0
        while i < n {
            let k = contraction(s, i, ignoreCase: false)
            if k > 0 {
                i += k
                ends.append(i)
                continue
            }
            let ci = c[i]
            if s[i] == 0x20 && i + 1 < n && c[i + 1] & S == 0 {
                // ` ?X+` with its space, X = letters, numbers or other (neither of those nor space).
                let next = c[i + 1]
                let kind = next & L != 0 ? L : next & N != 0 ? N : 0
                i += 2
                if kind == 0 {
                    while i < n && c[i] & (L | N | S) == 0 { i += 1 }
                } else {
                    while i < n && c[i] & kind != 0 { i += 1 }
                }
            } else if ci & (L | N) != 0 {
                let kind = ci & L != 0 ? L : N
                i += 1
                while i < n && c[i] & kind != 0 { i += 1 }
            } else if ci & S == 0 {
                i += 1
                while i < n && c[i] & (L | N | S) == 0 { i += 1 }
            } else {
                i = whitespaceEnd(c, i)
            }
            ends.append(i)
        }
        return ends
    }

    private static func scanLlama3(_ c: UnsafeBufferPointer<UInt8>, _ s: UnsafeBufferPointer<UInt32>, maxDigits: Int) -> [Int] {
        let n = c.count
        var ends: [Int] = []
        ends.reserveCapacity(n / 3 + 1)
        var i = 0
        while i < n {
            let start = i
            let k = contraction(s, i, ignoreCase: true)
            let ci = c[i]
            if k > 0 {
                i += k
            } else if ci & L != 0 {
                // [^\r\n\p{L}\p{N}]?\p{L}+ starting with a letter.
                i += 1
                while i < n && c[i] & L != 0 { i += 1 }
            } else if ci & (NL | N) == 0 && i + 1 < n && c[i + 1] & L != 0 {
                // One non-letter, non-number, non-newline character, then letters.
                i += 2
                while i < n && c[i] & L != 0 { i += 1 }
            } else if ci & N != 0 {
                i += 1
                while i < n && i - start < maxDigits && c[i] & N != 0 { i += 1 }
            } else if ci & (L | N | S) == 0 || (s[i] == 0x20 && i + 1 < n && c[i + 1] & (L | N | S) == 0) {
                // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
                i += s[i] == 0x20 ? 2 : 1
                while i < n && c[i] & (L | N | S) == 0 { i += 1 }
                while i < n && c[i] & NL != 0 { i += 1 }
            } else {
                // Whitespace: `\s*[\r\n]+` ends after the last newline of the run;
                // otherwise `\s+(?!\S)|\s+`.
                var j = i
                var lastNewline = -1
                while j < n && c[j] & S != 0 {
                    if c[j] & NL != 0 { lastNewline = j }
                    j += 1
                }
                i = lastNewline >= 0 ? lastNewline + 1 : whitespaceEnd(c, i)
            }
            ends.append(i)
        }
        return ends
    }
}
