import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// Tokenizers against Hugging Face `tokenizers` (Tools/verify/tokenize_ids.py in the test venv):
/// whole text files, tricky strings, and variants of the real files made by editing their
/// JSON (other pre-tokenizers, normalizers, models, added-token options). Ids must be equal.
@Suite struct TokenizerTests {
    static let models = ["stories260K", "SmolLM2-135M", "paraphrase-MiniLM-L3-v2-onnx"]
    static let texts = ["tinystories_valid_eval", "tinystories_valid_calib", "wikitext2_test_raw", "tinyshakespeare"]

    static let tricky: [String] = [
        "Hello world", " Hello  world ", "", " ", "   ", "\n", "\n\n", "\t", "a\tb\t\tc", "  leading", "trailing   ",
        "multiple     spaces  and\n\n\nnewlines \n \n", "line1\nline2\r\nline3\rline4",
        "🥰 😀👍🏽 👨‍👩‍👧 I ❤️ NY", "東京は日本の首都です。", "中文测试，标点！", "한국어 텍스트",
        "café naïve résumé Ångström", "cafe\u{301} e\u{301}\u{301}", "İstanbul ΣΑΣ ς ǅ ﬁ",
        "1234567890 3.14159 1,000,000 ٣٤٥ ½ Ⅻ 12345678", "don't I'll we've they're she'd it's I'M DON'T 'quoted' ''s rock'n'roll",
        "'ſ 'S 'Ll it'ſt 'Ste 'LLama x'D", "<s>hello</s> <unk> x", "<|endoftext|>Hello<|im_start|>user\nhi<|im_end|>", "[CLS] hi [SEP] [MASK] [UNK]",
        "a\u{A0}b\u{3000}c\u{2009}d\u{85}e\u{2028}f a\u{2009}\u{2009}b", "\u{0}\u{1}x\u{FFFD}y\u{200B}z\u{FEFF}w\u{E000}\u{378}",
        "Hello!!! What?! (yes) [no] {maybe} — “quotes” «guillemets» ... $100 + 5% = <tag>^ `x` ~ |", String(repeating: "a", count: 300),
        "supercalifragilisticexpialidocious " + String(repeating: "x", count: 150), "def f(x):\n    return x**2  # comment\n",
        "▁already▁has▁metaspace ▁ ▁▁", "𝔾𝕠𝕠𝕕 𝕞𝕠𝕣𝕟𝕚𝕟𝕘", " = Robert Boulter = \n The <unk> @-@ starring",
        "a <mask> b x  <mask>  y", "Robert Roberts Robert. w [[sep]]  z Hello HelloHello hello", "say hello there",
    ]

    // MARK: - Whole files and tricky strings

    /// The files of `texts` in ../shared/data that are there.
    /// - Throws: cancels the current test when none is.
    static var textFiles: [String] {
        get throws {
            let files = texts.map { TestEnvironment.shared + "/data/\($0).txt" }.filter(FileSystem.exists)
            guard !files.isEmpty else { try TestEnvironment.skip("no text files in \(TestEnvironment.shared)/data") }
            return files
        }
    }

    @Test(.requires { try TestEnvironment.python }, .requires { try models.map(TestEnvironment.sharedModel) },
          .requires { try textFiles }, arguments: models)
    func wholeTextFilesMatchReference(model: String) throws {
        let python = try TestEnvironment.python
        let folder = try TestEnvironment.sharedModel(model)
        let texts = try Self.textFiles
        let tokenizer = try Tokenizer.load(path: folder)
        let dir = TemporaryDirectory("kiln-tokenizer")
        let outputs = texts.indices.map { dir.file("\($0).bin") }
        try runReference(python, [folder + "/tokenizer.json"] + zip(texts, outputs).flatMap { [$0, $1] })
        for (text, output) in zip(texts, outputs) {
            let ours = tokenizer.encode(String(decoding: try FileSystem.readBytes(text), as: UTF8.self))
            let reference = try FileSystem.readBytes(output).withUnsafeBytes { raw in
                (0..<raw.count / 4).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            }
            #expect(ours.count > 10_000)
            #expect(mismatch(tokenizer, ours, reference) == nil, "\(model) × \(text)")
        }
    }

    @Test(.requires { try TestEnvironment.python }, .requires { try models.map(TestEnvironment.sharedModel) }, arguments: models)
    func trickyStringsMatchReference(model: String) throws {
        let python = try TestEnvironment.python
        let folder = try TestEnvironment.sharedModel(model)
        let tokenizer = try Tokenizer.load(path: folder)
        let reference = try referenceCases(python, [folder + "/tokenizer.json"], cases: Self.tricky)[0]
        compare(tokenizer, reference, cases: Self.tricky, label: model)
    }

    @Test func byteLevelRoundTrip() throws {
        let folder = try TestEnvironment.sharedModel("SmolLM2-135M")
        let tokenizer = try Tokenizer.load(path: folder)
        for text in Self.tricky {
            #expect(tokenizer.decode(tokenizer.encode(text), skipSpecialTokens: false) == text)
        }
    }

    @Test func specialTokens() throws {
        do {
            let t = try Tokenizer.load(path: try TestEnvironment.sharedModel("stories260K"))
            #expect((t.bosTokenId, t.eosTokenId, t.unkTokenId, t.vocabSize) == (1, 2, 0, 512))
            #expect(t.encode("Hello world", addSpecialTokens: true) == [1] + t.encode("Hello world"))
            #expect(t.encode("", addSpecialTokens: true) == [1])
            #expect(t.decode([1, 346, 306, 414, 2]) == "Hello")
            #expect(t.id(of: "<s>") == 1 && t.id(of: "▁He") == 346 && t.id(of: "nope") == nil)
        }
        do {
            let t = try Tokenizer.load(path: try TestEnvironment.sharedModel("SmolLM2-135M"))
            #expect((t.bosTokenId, t.eosTokenId, t.unkTokenId, t.vocabSize) == (1, 2, 0, 49152))
            // Its post-processor adds nothing: callers prepend bosTokenId themselves (kiln-ppl-v1).
            #expect(t.encode("Hello world", addSpecialTokens: true) == [19556, 905])
            #expect(t.encode("<|im_start|>Hi") == [1] + t.encode("Hi"))
        }
        do {
            let t = try Tokenizer.load(path: try TestEnvironment.sharedModel("paraphrase-MiniLM-L3-v2-onnx"))
            #expect((t.bosTokenId, t.eosTokenId, t.unkTokenId, t.vocabSize) == (101, 102, 100, 30522))
            #expect(t.encode("Hello world", addSpecialTokens: true) == [101, 7592, 2088, 102])
        }
    }

    @Test func sentencePieceModelMatchesTokenizerJSON() throws {
        let folder = try TestEnvironment.sharedModel("stories260K")
        let json = try Tokenizer.load(path: folder + "/tokenizer.json")
        let model = try Tokenizer.load(path: folder + "/tokenizer.model")
        #expect((model.bosTokenId, model.eosTokenId, model.unkTokenId, model.vocabSize) == (1, 2, 0, 512))
        var texts = Self.tricky
        for name in Self.texts where FileSystem.exists(TestEnvironment.shared + "/data/\(name).txt") {
            texts.append(String(decoding: try FileSystem.readBytes(TestEnvironment.shared + "/data/\(name).txt"), as: UTF8.self))
        }
        for text in texts {
            let ids = json.encode(text, addSpecialTokens: true)
            #expect(mismatch(json, model.encode(text, addSpecialTokens: true), ids) == nil)
            let head = Array(ids.prefix(2_000))
            #expect(model.decode(head) == json.decode(head))
        }
    }

    // MARK: - Variants of the real files

    @Test func variantsMatchReference() throws {
        let python = try TestEnvironment.python
        let smol = try base("SmolLM2-135M"), stories = try base("stories260K"), bert = try base("paraphrase-MiniLM-L3-v2-onnx")
        let variants = Self.variants(smol: smol, stories: stories, bert: bert)
        var cases = Self.tricky
        let wiki = TestEnvironment.shared + "/data/wikitext2_test_raw.txt"
        if FileSystem.exists(wiki) { cases.append(String(decoding: try FileSystem.readBytes(wiki).prefix(40_000), as: UTF8.self)) }
        let dir = TemporaryDirectory("kiln-tokenizer")
        var files: [String] = []
        for (name, json) in variants {
            files.append(dir.file(name + ".json"))
            try Data(json.serializedBytes()).write(to: URL(fileURLWithPath: files.last!))
        }
        let references = try referenceCases(python, files, cases: cases)
        for ((name, _), (file, reference)) in zip(variants, zip(files, references)) {
            if let error = reference["error"]?.stringValue { Issue.record("\(name): reference refused it: \(error)"); continue }
            compare(try Tokenizer.load(path: file), reference, cases: cases, label: name)
        }
    }

    static func variants(smol: JSONValue, stories: JSONValue, bert: JSONValue) -> [(String, JSONValue)] {
        let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen2 = llama3.replacingOccurrences(of: #"\p{N}{1,3}"#, with: #"\p{N}"#)
        let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
        func split(_ regex: String, _ behavior: String = "Isolated", invert: Bool = false) -> JSONValue {
            ["type": "Split", "pattern": ["Regex": .string(regex)], "behavior": .string(behavior), "invert": .bool(invert)]
        }
        let byteLevelNoRegex: JSONValue = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false]
        func sequence(_ items: [JSONValue]) -> JSONValue { ["type": "Sequence", "pretokenizers": .array(items)] }
        func added(_ id: Int64, _ content: String, special: Bool = false, single: Bool = false, l: Bool = false,
                   r: Bool = false, normalized: Bool = false) -> JSONValue {
            ["id": .int(id), "content": .string(content), "single_word": .bool(single), "lstrip": .bool(l),
             "rstrip": .bool(r), "normalized": .bool(normalized), "special": .bool(special)]
        }
        let smolAdded = (smol["added_tokens"]?.arrayValue ?? []) + [
            added(49152, "<mask>", special: true, l: true), added(49153, "Robert", single: true, normalized: true),
            added(49154, "[[sep]]", l: true, r: true), added(49155, "Hello", normalized: true),
        ]
        let metaspace: JSONValue = ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false]
        let bertVocab = bert["model"]?["vocab"]?.objectValue ?? JSONObject()
        var prefixMerges: [JSONValue] = []
        for (token, _) in bertVocab {
            let body = token.hasPrefix("##") ? String(token.dropFirst(2)) : token
            let chars = Array(body.unicodeScalars).map { String($0) }
            guard chars.count == 2 else { continue }
            let pair = token.hasPrefix("##") ? ["##" + chars[0], "##" + chars[1]] : [chars[0], "##" + chars[1]]
            if bertVocab[pair[0]] != nil && bertVocab[pair[1]] != nil { prefixMerges.append([.string(pair[0]), .string(pair[1])]) }
        }
        var suffixVocab = bertVocab
        for (k, c) in "abcdefghijklmnopqrstuvwxyz".enumerated() { suffixVocab["\(c)</w>"] = .int(Int64(30522 + k)) }
        let bpeOverBert: JSONValue = ["type": "BPE", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                                      "vocab": .object(bertVocab), "merges": .array(prefixMerges)]
        return [
            ("smol-llama3", edit(smol, (["pre_tokenizer"], sequence([split(llama3), byteLevelNoRegex])), (["model", "ignore_merges"], true))),
            ("smol-llama3-swift-regex", edit(smol, (["pre_tokenizer"], sequence([split("(?:" + llama3 + ")"), byteLevelNoRegex])),
                                              (["model", "ignore_merges"], true))),
            ("smol-gpt2-swift-regex", edit(smol, (["pre_tokenizer"], sequence([split("(?:" + gpt2 + ")"), byteLevelNoRegex])))),
            ("smol-qwen2-nfc", edit(smol, (["pre_tokenizer"], sequence([split(qwen2), byteLevelNoRegex])), (["normalizer"], ["type": "NFC"]))),
            ("smol-added-prefix-space", edit(smol, (["added_tokens"], .array(smolAdded)), (["normalizer"], ["type": "Lowercase"]),
                                              (["pre_tokenizer", "add_prefix_space"], true))),
            ("smol-splits", edit(smol, (["pre_tokenizer"], sequence([
                ["type": "Digits", "individual_digits": true], ["type": "Punctuation", "behavior": "MergedWithPrevious"],
                split(#"\s+"#, "MergedWithNext"), split("e", "Contiguous"), split(#"[aeiou]"#, "Removed", invert: true),
                ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true]])),
                (["post_processor"], ["type": "RobertaProcessing", "sep": ["<|im_end|>", 2], "cls": ["<|im_start|>", 1],
                                      "trim_offsets": true, "add_prefix_space": false]))),
            ("stories-metaspace-first", edit(stories, (["normalizer"], .null), (["pre_tokenizer"], metaspace),
                                             (["decoder"], ["type": "Sequence", "decoders": [metaspace, ["type": "ByteFallback"], ["type": "Fuse"]]]))),
            ("stories-metaspace-always-unk", edit(stories, (["normalizer"], .null),
                                                  (["pre_tokenizer"], ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true]),
                                                  (["model", "byte_fallback"], false), (["model", "fuse_unk"], false))),
            ("stories-fused-unk-added", edit(stories, (["model", "byte_fallback"], false),
                                             (["added_tokens"], .array((stories["added_tokens"]?.arrayValue ?? []) + [added(3, "hello", normalized: true)])))),
            ("bert-nfd-sequence", edit(bert, (["normalizer"], ["type": "Sequence", "normalizers": [
                ["type": "NFD"], ["type": "Lowercase"], ["type": "StripAccents"], ["type": "Strip", "strip_left": true, "strip_right": true],
                ["type": "Replace", "pattern": ["String": "``"], "content": "\""]]]),
                (["pre_tokenizer"], sequence([["type": "WhitespaceSplit"], ["type": "Punctuation"], ["type": "Digits", "individual_digits": false]])),
                (["post_processor"], ["type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]]))),
            ("bert-nfkc-whitespace", edit(bert, (["normalizer"], ["type": "Sequence", "normalizers": [["type": "NFKC"], [
                "type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": false, "strip_accents": false, "lowercase": false]]]),
                (["pre_tokenizer"], ["type": "Whitespace"]), (["model", "max_input_chars_per_word"], 10))),
            ("bert-wordlevel", edit(bert, (["model"], ["type": "WordLevel", "vocab": .object(bertVocab), "unk_token": "[UNK]"]),
                                    (["normalizer"], ["type": "Lowercase"]), (["pre_tokenizer"], ["type": "Whitespace"]), (["decoder"], .null))),
            ("bert-bpe-prefix", edit(bert, (["model"], bpeOverBert))),
            ("bert-bpe-suffix", edit(bert, (["model"], edit(bpeOverBert, (["continuing_subword_prefix"], .null), (["merges"], []),
                                                              (["end_of_word_suffix"], "</w>"), (["vocab"], .object(suffixVocab)))))),
        ]
    }

    // MARK: - Refusals

    @Test func refusesUnsupportedComponents() throws {
        let stories = try base("stories260K")
        let dir = TemporaryDirectory("kiln-tokenizer")
        let file = dir.file("tokenizer.json")
        func error(_ json: JSONValue) throws -> KilnError? {
            try Data(json.serializedBytes()).write(to: URL(fileURLWithPath: file))
            do { _ = try Tokenizer.load(path: file) } catch let e as KilnError { return e }
            return nil
        }
        let model = try error(edit(stories, (["model", "type"], "Unigram")))
        #expect(model?.kind == .unsupported)
        #expect(model?.description == "\(file): model › type: expected one of \"BPE\", \"WordPiece\", \"WordLevel\", found \"Unigram\"")
        let pre = try error(edit(stories, (["pre_tokenizer"], ["type": "Sequence", "pretokenizers": [["type": "Whitespace"], ["type": "UnicodeScripts"]]])))
        #expect(pre?.kind == .unsupported)
        #expect(pre?.description.hasPrefix("\(file): pre_tokenizer › pretokenizers › [1] › type: expected one of \"Sequence\", \"ByteLevel\"") == true)
        #expect(pre?.description.hasSuffix(", found \"UnicodeScripts\"") == true)
        let normalizer = try error(edit(stories, (["normalizer"], ["type": "Precompiled", "precompiled_charsmap": "AAAA"])))
        #expect(normalizer?.kind == .unsupported && normalizer?.path == ["normalizer", "type"])
        let vocab = try error(edit(stories, (["model", "vocab"], nil)))
        #expect(vocab?.description == "\(file): model › vocab: expected an object, found nothing")
        let merge = try error(edit(stories, (["model", "merges"], [["▁", "zz"]])))
        #expect(merge?.description == "\(file): model › merges › [0]: merge token \"zz\" is not in the vocabulary")
        try Data("{\"model\": ".utf8).write(to: URL(fileURLWithPath: file))
        #expect(throws: KilnError.self) { try Tokenizer.load(path: file) }
        do { _ = try Tokenizer.load(path: file) } catch let e as KilnError { #expect(e.kind == .invalidInput && e.file == file) }
        #expect(throws: KilnError.self) { try Tokenizer.load(path: dir.file("absent")) }
    }

    // MARK: - Helpers

    private func base(_ model: String) throws -> JSONValue {
        try JSONValue.parse(FileSystem.readBytes(try TestEnvironment.sharedModel(model) + "/tokenizer.json"), rejectDuplicateKeys: false)
    }

    private func runReference(_ python: String, _ arguments: [String]) throws {
        let result = try runVerifyScript(python, "tokenize_ids.py", arguments)
        try #require(result.status == 0, "tokenize_ids.py failed: \(result.stderr)")
    }

    /// The reference's results for `cases` with each tokenizer file.
    private func referenceCases(_ python: String, _ files: [String], cases: [String]) throws -> [JSONValue] {
        let dir = TemporaryDirectory("kiln-tokenizer")
        try Data(JSONValue.array(cases.map(JSONValue.string)).serializedBytes()).write(to: URL(fileURLWithPath: dir.file("cases.json")))
        let outputs = files.indices.map { dir.file("out\($0).json") }
        try runReference(python, ["--cases", dir.file("cases.json")] + zip(files, outputs).flatMap { [$0, $1] })
        return try outputs.map { try JSONValue.parse(FileSystem.readBytes($0)) }
    }

    private func compare(_ tokenizer: Tokenizer, _ reference: JSONValue, cases: [String], label: String) {
        #expect(tokenizer.vocabSize == Int(reference["vocab_size"]?.intValue ?? -1), "\(label): vocab size")
        for (i, text) in cases.enumerated() {
            guard let r = reference["cases"]?[i] else { Issue.record("\(label): no reference for case \(i)"); return }
            func ids(_ key: String) -> [Int32] { (r[key]?.arrayValue ?? []).map { Int32($0.intValue ?? -1) } }
            let shown = String(text.prefix(60)).debugDescription
            let ours = tokenizer.encode(text)
            #expect(mismatch(tokenizer, ours, ids("ids")) == nil, "\(label): \(shown)")
            #expect(tokenizer.encode(text, addSpecialTokens: true) == ids("special_ids"), "\(label): \(shown) with special tokens")
            #expect(tokenizer.decode(ids("ids")) == r["decoded"]?.stringValue, "\(label): decode \(shown)")
            #expect(tokenizer.decode(ids("ids"), skipSpecialTokens: false) == r["decoded_all"]?.stringValue, "\(label): decode all \(shown)")
        }
    }
}

/// The first difference between our ids and the reference's, with the tokens and text around it.
private func mismatch(_ tokenizer: Tokenizer, _ ours: [Int32], _ reference: [Int32]) -> String? {
    guard let i = (0..<min(ours.count, reference.count)).first(where: { ours[$0] != reference[$0] })
        ?? (ours.count != reference.count ? min(ours.count, reference.count) : nil)
    else { return nil }
    let window = max(0, i - 6)..<min(i + 6, reference.count)
    let show = { (ids: ArraySlice<Int32>) in ids.map { "\($0)\(tokenizer.token($0).map { " \($0.debugDescription)" } ?? "")" } }
    return "first mismatch at id \(i) (ours \(ours.count) ids, reference \(reference.count)): "
        + "ours \(show(ours[min(window.lowerBound, ours.count)..<min(window.upperBound, ours.count)])), "
        + "reference \(show(reference[window])), text \(tokenizer.decode(Array(reference[window]), skipSpecialTokens: false).debugDescription)"
}

/// `json` with the values at the given key paths replaced (nil removes the key).
private func edit(_ json: JSONValue, _ edits: ([String], JSONValue?)...) -> JSONValue {
    func set(_ value: JSONValue?, _ path: ArraySlice<String>, _ node: JSONValue) -> JSONValue {
        guard let key = path.first else { return value ?? .null }
        var object = node.objectValue ?? JSONObject()
        object[key] = path.count == 1 ? value : set(value, path.dropFirst(), object[key] ?? .object(JSONObject()))
        return .object(object)
    }
    return edits.reduce(json) { set($1.1, $1.0[...], $0) }
}
