import KilnCore

/// A sentencepiece `tokenizer.model` (protobuf `ModelProto`) of type BPE, turned into the
/// tokenizer.json that Hugging Face's converter (`LlamaConverter`) writes for it, so that
/// it runs through the same pipeline:
///
/// - normalizer: strip and collapse spaces (`remove_extra_whitespaces`), prepend `▁`
///   (`add_dummy_prefix`), spaces → `▁` (`escape_whitespaces`);
/// - model: BPE over the pieces, merges generated from the piece scores (every split of a
///   piece into two pieces, highest score first), `byte_fallback` from the trainer spec;
/// - added tokens: the unknown and control pieces (special), user-defined pieces;
/// - post-processor: BOS before the sequence; decoder: `▁` → space, byte fallback, fuse,
///   strip the dummy prefix.
///
/// Unigram models and normalizers with a precompiled character map are refused.
struct SentencePieceModel {
    struct Piece {
        var text: String
        var score: Float
        var type: Int  // 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused, 6 byte
    }

    let file: String
    var pieces: [Piece] = []
    var modelType = 1  // 1 unigram, 2 BPE, 3 word, 4 char
    var byteFallback = false
    var unkId = 0, bosId = 1, eosId = 2
    var addDummyPrefix = true
    var removeExtraWhitespaces = true
    var escapeWhitespaces = true
    var normalizerName = ""
    var hasCharsMap = false

    /// Parses the protobuf.
    /// - Throws: `KilnError(.invalidInput)` with the byte offset for malformed protobuf;
    ///   `KilnError(.unsupported)` for a non-BPE model or a precompiled normalizer.
    init(_ bytes: [UInt8], file: String) throws {
        self.file = file
        var reader = ProtobufReader(bytes: bytes, file: file, range: 0..<bytes.count)
        while let (field, wire) = try reader.nextField() {
            switch (field, wire) {
            case (1, 2):
                var sub = try reader.submessage()
                var piece = Piece(text: "", score: 0, type: 1)
                while let (f, w) = try sub.nextField() {
                    switch (f, w) {
                    case (1, 2): piece.text = String(decoding: try sub.lengthDelimited(), as: UTF8.self)
                    case (2, 5): piece.score = Float(bitPattern: try sub.fixed32())
                    case (3, 0): piece.type = Int(try sub.varint())
                    default: try sub.skip(w)
                    }
                }
                pieces.append(piece)
            case (2, 2):
                var sub = try reader.submessage()
                while let (f, w) = try sub.nextField() {
                    switch (f, w) {
                    case (3, 0): modelType = Int(try sub.varint())
                    case (35, 0): byteFallback = try sub.varint() != 0
                    case (40, 0): unkId = Int(Int32(truncatingIfNeeded: try sub.varint()))
                    case (41, 0): bosId = Int(Int32(truncatingIfNeeded: try sub.varint()))
                    case (42, 0): eosId = Int(Int32(truncatingIfNeeded: try sub.varint()))
                    default: try sub.skip(w)
                    }
                }
            case (3, 2):
                var sub = try reader.submessage()
                while let (f, w) = try sub.nextField() {
                    switch (f, w) {
                    case (1, 2): normalizerName = String(decoding: try sub.lengthDelimited(), as: UTF8.self)
                    case (2, 2): hasCharsMap = !(try sub.lengthDelimited()).isEmpty
                    case (3, 0): addDummyPrefix = try sub.varint() != 0
                    case (4, 0): removeExtraWhitespaces = try sub.varint() != 0
                    case (5, 0): escapeWhitespaces = try sub.varint() != 0
                    default: try sub.skip(w)
                    }
                }
            default:
                try reader.skip(wire)
            }
        }
        guard modelType == 2 else {
            let names = [1: "unigram", 2: "BPE", 3: "word", 4: "char"]
            throw KilnError(.unsupported, file: file, path: ["trainer_spec", "model_type"],
                            "expected \"BPE\", found \"\(names[modelType] ?? String(modelType))\"")
        }
        guard !hasCharsMap || normalizerName == "identity" else {
            throw KilnError(.unsupported, file: file, path: ["normalizer_spec", "precompiled_charsmap"],
                            "expected the identity normalizer, found \"\(normalizerName)\" (a precompiled character map)")
        }
        guard !pieces.isEmpty else {
            throw KilnError.mismatch(file: file, path: ["pieces"], expected: "at least one piece", found: "none")
        }
    }

    /// The equivalent tokenizer.json document.
    func tokenizerJSON() throws -> JSONValue {
        var vocab = JSONObject()
        var ids: [ByteKey: Int] = [:]
        for (i, p) in pieces.enumerated() {
            vocab[p.text] = .int(Int64(i))
            ids[ByteKey(bytes: Array(p.text.utf8))] = i
        }
        func piece(_ id: Int) -> String? { pieces.indices.contains(id) ? pieces[id].text : nil }

        // Merges: every split of every piece into two pieces, by the merged piece's score
        // (highest first), ties in piece order then by the ids of the two halves.
        var merges: [(left: String, right: String, score: Float, order: Int)] = []
        for p in pieces {
            let scalars = Array(p.text.unicodeScalars)
            var local: [(String, String, Int, Int)] = []
            for cut in 1..<max(1, scalars.count) {
                let l = String(String.UnicodeScalarView(scalars[..<cut]))
                let r = String(String.UnicodeScalarView(scalars[cut...]))
                if let li = ids[ByteKey(bytes: Array(l.utf8))], let ri = ids[ByteKey(bytes: Array(r.utf8))] {
                    local.append((l, r, li, ri))
                }
            }
            local.sort { ($0.2, $0.3) < ($1.2, $1.3) }
            for (l, r, _, _) in local { merges.append((l, r, p.score, merges.count)) }
        }
        merges.sort { $0.score != $1.score ? $0.score > $1.score : $0.order < $1.order }

        var added: [JSONValue] = []
        for (i, p) in pieces.enumerated() where p.type == 2 || p.type == 3 || p.type == 4 {
            added.append([
                "id": .int(Int64(i)), "content": .string(p.text), "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": .bool(p.type != 4),
            ])
        }
        var normalizers: [JSONValue] = []
        if removeExtraWhitespaces {
            normalizers.append(["type": "Replace", "pattern": ["Regex": #"\A +| +\z"#], "content": ""])
            normalizers.append(["type": "Replace", "pattern": ["Regex": " {2,}"], "content": " "])
        }
        if addDummyPrefix { normalizers.append(["type": "Prepend", "prepend": "▁"]) }
        if escapeWhitespaces { normalizers.append(["type": "Replace", "pattern": ["String": " "], "content": "▁"]) }

        var single: [JSONValue] = []
        var specials = JSONObject()
        if let bos = piece(bosId) {
            single.append(["SpecialToken": ["id": .string(bos), "type_id": 0]])
            specials[bos] = ["id": .string(bos), "ids": [.int(Int64(bosId))], "tokens": [.string(bos)]]
        }
        single.append(["Sequence": ["id": "A", "type_id": 0]])

        var decoders: [JSONValue] = [["type": "Replace", "pattern": ["String": "▁"], "content": " "]]
        if byteFallback { decoders.append(["type": "ByteFallback"]) }
        decoders.append(["type": "Fuse"])
        if addDummyPrefix { decoders.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }

        return [
            "version": "1.0",
            "added_tokens": .array(added),
            "normalizer": ["type": "Sequence", "normalizers": .array(normalizers)],
            "pre_tokenizer": nil,
            "post_processor": ["type": "TemplateProcessing", "single": .array(single), "special_tokens": .object(specials)],
            "decoder": ["type": "Sequence", "decoders": .array(decoders)],
            "model": [
                "type": "BPE", "unk_token": piece(unkId).map(JSONValue.string) ?? .null, "fuse_unk": true,
                "byte_fallback": .bool(byteFallback), "vocab": .object(vocab),
                "merges": .array(merges.map { [.string($0.left), .string($0.right)] }),
            ],
        ]
    }
}

/// A minimal protobuf wire-format reader over a byte range.
struct ProtobufReader {
    let bytes: [UInt8]
    let file: String
    var position: Int
    let end: Int

    init(bytes: [UInt8], file: String, range: Range<Int>) {
        self.bytes = bytes
        self.file = file
        position = range.lowerBound
        end = range.upperBound
    }

    private func truncated() -> KilnError {
        KilnError(.invalidInput, file: file, offset: position, "protobuf: expected more bytes, found the end of the message")
    }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < end, shift < 64 else { throw truncated() }
            let b = bytes[position]
            position += 1
            value |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return value }
            shift += 7
        }
    }

    /// The next (field number, wire type), or nil at the end.
    mutating func nextField() throws -> (Int, Int)? {
        guard position < end else { return nil }
        let key = try varint()
        return (Int(key >> 3), Int(key & 7))
    }

    mutating func fixed32() throws -> UInt32 {
        guard end - position >= 4 else { throw truncated() }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(bytes[position + k]) << (8 * k) }
        position += 4
        return v
    }

    mutating func lengthDelimited() throws -> ArraySlice<UInt8> {
        let n = try varint()
        guard n <= UInt64(end - position) else { throw truncated() }
        defer { position += Int(n) }
        return bytes[position..<position + Int(n)]
    }

    mutating func submessage() throws -> ProtobufReader {
        let slice = try lengthDelimited()
        return ProtobufReader(bytes: bytes, file: file, range: slice.startIndex..<slice.endIndex)
    }

    mutating func skip(_ wire: Int) throws {
        switch wire {
        case 0: _ = try varint()
        case 1:
            guard end - position >= 8 else { throw truncated() }
            position += 8
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default:
            throw KilnError(.invalidInput, file: file, offset: position, "protobuf: expected wire type 0, 1, 2 or 5, found \(wire)")
        }
    }
}
