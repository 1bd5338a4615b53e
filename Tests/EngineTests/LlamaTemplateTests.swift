import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// Real models against transformers' golden logits, and the template's validation errors.
///
/// Logits criterion ("within 1e-4 relative, max over the sequence"): for each position p,
/// `max_v |kiln[p, v] − ref[p, v]| / max_v |ref[p, v]|`; the maximum of that over the 64 positions
/// must be < 1e-4.
@Suite struct LlamaTemplateTests {
    @Test func stories260KMatchesGoldenLogits() throws {
        let dir = try TestEnvironment.sharedModel("stories260K")
        let golden = try EngineFixtures.goldenLogits(dir)
        let model = try EngineFixtures.load(dir)
        let exec = try Executor(model: model)
        let logits = try exec.logits([golden.ids])
        #expect(logits.vocab == golden.vocab && logits.seq == golden.ids.count)
        let err = EngineFixtures.maxRelativeError(logits.values, golden.logits, rowLength: golden.vocab)
        print("stories260K golden logits: max relative error \(err)")
        #expect(err < 1e-4)
    }

    @Test func smolLM2MatchesGoldenLogits() throws {
        let dir = try TestEnvironment.smolLM2
        let golden = try EngineFixtures.goldenLogits(try TestEnvironment.sharedModel("SmolLM2-135M"))
        let model = try EngineFixtures.load(dir)
        let exec = try Executor(model: model)
        let logits = try exec.logits([golden.ids])
        let err = EngineFixtures.maxRelativeError(logits.values, golden.logits, rowLength: golden.vocab)
        print("SmolLM2-135M golden logits: max relative error \(err)")
        #expect(err < 1e-4)
        // The KV-cache path gives the same last-position scores.
        let last = try exec.prefill(golden.ids)
        let ref = Array(golden.logits[(golden.ids.count - 1) * golden.vocab ..< golden.ids.count * golden.vocab])
        #expect(EngineFixtures.maxRelativeError(last, ref, rowLength: golden.vocab) < 1e-4)
    }

    @Test func stories260KGreedyTextMatchesReadme() throws {
        // README: greedy from BOS gives "Once upon a time, there was a little girl named Lily. ..."
        let dir = try TestEnvironment.sharedModel("stories260K")
        let python = try TestEnvironment.python
        let text = TemporaryDirectory("kiln-engine")
        let path = text.file("prefix.txt")
        try "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.".write(toFile: path, atomically: true, encoding: .utf8)
        guard let expected = try EngineFixtures.tokenize(python: python, tokenizer: dir + "/tokenizer.json", text: path, maxTokens: 0) else {
            try TestEnvironment.skip("python `tokenizers` is absent from KILN_TEST_PYTHON's venv")
        }
        let exec = try Executor(model: try EngineFixtures.load(dir))
        let generated = try exec.generate(prompt: [1], maxNewTokens: expected.count, eos: 2)
        #expect(generated == expected)
    }

    @Test func graphUsesHuggingFaceNamesAndTiesTheHead() throws {
        let model = try SyntheticModel.llama()
        let graph = try Architectures.graph(for: model)
        #expect(graph.inputs.map(\.name) == ["input_ids", "position_ids"])
        #expect(graph.outputs.map(\.name) == ["logits"])
        let names = graph.nodes.map(\.name)
        #expect(names.contains("model.layers.1.self_attn.q_proj") && names.contains("model.layers.0.mlp.down_proj"))
        #expect(graph.nodes.last?.inputs == ["model.norm", "model.embed_tokens.weight"])
        #expect(graph.nodes.filter { KilnOp.qualifiedName(of: $0) == "kiln.Attention" }.count == 2)
        #expect(Set(graph.initializerNames) == Set(model.tensorNames))

        var shape = SyntheticModel.LlamaShape()
        shape.tiedEmbeddings = false
        let untied = try Architectures.graph(for: try SyntheticModel.llama(shape))
        #expect(untied.nodes.last?.inputs == ["model.norm", "lm_head.weight"])
        // tie_word_embeddings false but no lm_head.weight: tied all the same.
        let model2 = try SyntheticModel.llama()
        model2.config = EngineFixtures.editing(model2.config!, ["tie_word_embeddings": false])
        #expect(try Architectures.graph(for: model2).nodes.last?.inputs.last == "model.embed_tokens.weight")
    }

    @Test func configErrorsNameTheField() throws {
        let model = try SyntheticModel.llama()
        func message(_ edits: [String: JSONValue?]) -> String {
            let m = try! SyntheticModel.llama()
            m.config = EngineFixtures.editing(model.config!, edits)
            do {
                _ = try Architectures.graph(for: m)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(message(["num_key_value_heads": 3]) == "config.json: num_key_value_heads: expected a divisor of num_attention_heads (8), found 3")
        #expect(message(["hidden_size": nil]) == "config.json: hidden_size: expected a positive integer, found no value")
        #expect(message(["hidden_size": "64"]) == "config.json: hidden_size: expected a positive integer, found \"64\"")
        #expect(message(["num_attention_heads": 7]) == "config.json: num_attention_heads: expected a divisor of hidden_size (64), found 7")
        #expect(message(["intermediate_size": 0]) == "config.json: intermediate_size: expected a positive integer, found 0")
        #expect(message(["hidden_act": "gelu"]) == "config.json: hidden_act: expected silu, found \"gelu\"")
        #expect(message(["rope_scaling": ["rope_type": "yarn", "factor": 4.0]])
            == "config.json: rope_scaling › rope_type: expected one of default, linear, llama3, found \"yarn\"")
        #expect(message(["rope_scaling": ["rope_type": "llama3", "factor": 8.0]])
            == "config.json: rope_scaling › low_freq_factor: expected a positive number for rope type llama3, found no value")
        #expect(message(["architectures": ["FalconForCausalLM"]])
            == "config.json: architectures: no template for \"FalconForCausalLM\"; supported: LlamaForCausalLM, MistralForCausalLM, "
            + "Qwen2ForCausalLM, GPT2LMHeadModel, BertModel, BertForMaskedLM (a plugin can register more)")
        #expect(message(["architectures": nil]) == "config.json: architectures: expected a list of architecture names, found no value")
        // A registered builder (as a host wires a plugin's) is found by name, and listed afterwards.
        // (Kept after the verbatim "supported:" check above: the registry is process-wide.)
        Architectures.register(architectures: ["TestOnlyForCausalLM"], origin: "test") { _, _ in Graph(name: "test-only") }
        let custom = EngineFixtures.editing(model.config!, ["architectures": ["TestOnlyForCausalLM"]])
        #expect(try Architectures.template(for: custom).origin == "test")
        #expect(try Architectures.template(for: model.config!).origin == "built-in")
        #expect(Architectures.supported.last == "TestOnlyForCausalLM")
    }

    @Test func weightErrorsNameTheTensorAndBothShapes() throws {
        let wrong = try SyntheticModel.llama()
        wrong.set(Tensor(name: "model.layers.0.self_attn.q_proj.weight", dtype: .f32, shape: [32, 64], values: [Float](repeating: 0, count: 2048)))
        #expect(throws: KilnError.self) { try Architectures.graph(for: wrong) }
        #expect(EngineFixtures.errorText { try Architectures.graph(for: wrong) }
            == "tensor \"model.layers.0.self_attn.q_proj.weight\" › shape: expected [64, 64], found [32, 64] (from config.json: num_attention_heads 8 × head_dim 8, hidden_size 64)")
        let kv = try SyntheticModel.llama()
        kv.set(Tensor(name: "model.layers.1.self_attn.v_proj.weight", dtype: .f32, shape: [64, 64], values: [Float](repeating: 0, count: 4096)))
        #expect(EngineFixtures.errorText { try Architectures.graph(for: kv) }
            == "tensor \"model.layers.1.self_attn.v_proj.weight\" › shape: expected [32, 64], found [64, 64] (from config.json: num_key_value_heads 4 × head_dim 8, hidden_size 64)")
        let missing = try SyntheticModel.llama()
        missing.remove("model.norm.weight")
        #expect(EngineFixtures.errorText { try Architectures.graph(for: missing) }
            == "tensor \"model.norm.weight\": missing (LlamaForCausalLM with num_hidden_layers 2 needs it)")
        let qwen = try SyntheticModel.llama()
        qwen.config = EngineFixtures.editing(qwen.config!, ["architectures": ["Qwen2ForCausalLM"]])
        #expect(EngineFixtures.errorText { try Architectures.graph(for: qwen) }
            == "tensor \"model.layers.0.self_attn.q_proj.bias\": missing (Qwen2ForCausalLM with num_hidden_layers 2 needs it)")
    }

    /// Whole models against an f64 scalar forward: Qwen2 q/k/v biases, Llama attention/mlp biases with
    /// llama3 RoPE, Mistral's sliding window, an untied head.
    @Test(arguments: ["qwen2", "llama-biases-llama3", "mistral-window", "untied"])
    func wholeModelMatchesScalarReference(_ variant: String) throws {
        var shape = SyntheticModel.LlamaShape()
        shape.tiedEmbeddings = variant != "untied"
        let model = try SyntheticModel.llama(shape)
        var edits: [String: JSONValue?] = [:]
        var biases: [String] = []
        switch variant {
        case "qwen2":
            edits = ["architectures": ["Qwen2ForCausalLM"], "rope_theta": 1000000.0]
            biases = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]
        case "llama-biases-llama3":
            edits = ["attention_bias": true, "mlp_bias": true,
                     "rope_scaling": ["rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 64]]
            biases = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
        case "mistral-window":
            edits = ["architectures": ["MistralForCausalLM"], "sliding_window": 4]
        default:
            break
        }
        model.config = EngineFixtures.editing(model.config!, edits)
        var rng = SplitMix64(seed: 9)
        for l in 0..<shape.layers {
            for b in biases {
                let rows = model["model.layers.\(l).\(b).weight"]!.shape[0]
                model.set(Tensor(name: "model.layers.\(l).\(b).bias", dtype: .f32, shape: [rows], values: (0..<rows).map { _ in 0.2 * rng.nextSigned() }))
            }
        }
        let ids = [1, 45, 300, 7, 7, 128, 64, 3, 500, 21]
        let got = try Executor(model: model).logits([ids]).values
        let ref = try ReferenceLlama.logits(model, ids: ids).map(Float.init)
        let err = EngineFixtures.maxRelativeError(got, ref, rowLength: shape.vocab)
        #expect(err < 1e-5, "\(variant): \(err)")
        // The variant's feature changes the result (the comparison is not vacuous).
        var plainShape = shape
        plainShape.tiedEmbeddings = true
        let plain = try Executor(model: try SyntheticModel.llama(plainShape)).logits([ids]).values
        #expect(EngineFixtures.maxRelativeError(got, plain, rowLength: shape.vocab) > 1e-3)
    }

    @Test func configReadsBothRopeKeyStyles() throws {
        let v5 = try LlamaConfig(config: EngineFixtures.editing(try SyntheticModel.llama().config!, [
            "rope_theta": nil,
            "rope_parameters": ["rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192],
        ]))
        #expect(v5.rope == RopeParameters(theta: 500000, kind: .llama3, factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        let v4 = try LlamaConfig(config: EngineFixtures.editing(try SyntheticModel.llama().config!, [
            "rope_theta": 20000.0, "rope_scaling": ["type": "linear", "factor": 2.0],
        ]))
        #expect(v4.rope == RopeParameters(theta: 20000, kind: .linear, factor: 2))
        let mistral = try LlamaConfig(config: EngineFixtures.editing(try SyntheticModel.llama().config!, [
            "architectures": ["MistralForCausalLM"], "sliding_window": 4096,
        ]))
        #expect(mistral.slidingWindow == [4096, 4096] && mistral.variant == .mistral)
    }
}

/// Shared helpers of the engine tests: real models, golden data through python, comparisons.
enum EngineFixtures {
    struct GoldenLogits {
        var ids: [Int]
        var logits: [Float]
        var vocab: Int
    }

    /// A folder read by the safetensors reader plugin.
    static func load(_ dir: String) throws -> Model {
        try TestEnvironment.plugins.reader(for: dir).read(path: dir, context: KilnContext())
    }

    /// `golden/logits.npz` of a model folder, read through python.
    /// - Throws: cancels the current test without python or without the file; `KilnError(.internal)` when
    ///   the script fails (numpy is part of the test venv: a failure here is a real failure, not a reason to skip).
    static func goldenLogits(_ modelDir: String) throws -> GoldenLogits {
        let python = try TestEnvironment.python
        let npz = modelDir + "/golden/logits.npz"
        guard FileSystem.exists(npz) else { try TestEnvironment.skip("\(npz) is absent") }
        let tmp = TemporaryDirectory("kiln-golden")
        let r = try runVerifyScript(python, "engine_golden.py", ["npz", npz, tmp.path])
        guard r.status == 0 else { throw KilnError(.internal, "engine_golden.py npz failed: \(r.stdout) \(r.stderr)") }
        let info = try JSONValue.parse(Array(r.stdout.utf8))
        let vocab = Int(info["logits"]?["shape"]?[1]?.intValue ?? 0)
        let ids: [Int64] = try raw(tmp.file("ids.bin"))
        let logits: [Float] = try raw(tmp.file("logits.bin"))
        return GoldenLogits(ids: ids.map { Int($0) }, logits: logits, vocab: vocab)
    }

    /// Ids of a text file by the `tokenizers` package (whole file, no special tokens); nil when python has no `tokenizers`.
    /// - Throws: `KilnError(.internal)` when the script fails otherwise.
    static func tokenize(python: String, tokenizer: String, text: String, maxTokens: Int) throws -> [Int]? {
        let tmp = TemporaryDirectory("kiln-ids")
        let r = try runVerifyScript(python, "engine_golden.py", ["tokenize", tokenizer, text, String(maxTokens), tmp.file("ids.bin")])
        guard r.status == 0 else {
            if r.stderr.contains("No module named 'tokenizers'") { return nil }
            throw KilnError(.internal, "engine_golden.py tokenize failed: \(r.stdout) \(r.stderr)")
        }
        let ids: [Int64] = try raw(tmp.file("ids.bin"))
        return ids.map { Int($0) }
    }

    /// Ids of a text file (whole file, no special tokens): from python `tokenizers` (the reference)
    /// when the test venv is there, else from Kiln's own ``Tokenizer``.
    static func ids(tokenizer: String, text: String) throws -> [Int] {
        if let python = TestEnvironment.pythonIfPresent, let ids = try tokenize(python: python, tokenizer: tokenizer, text: text, maxTokens: 0) {
            return ids
        }
        print("tokenizing \(text) with Kiln's Tokenizer (no python tokenizers)")
        return try Tokenizer.load(path: tokenizer).encode(try Perplexity.loadText(text), addSpecialTokens: false).map { Int($0) }
    }

    static func raw<T>(_ path: String) throws -> [T] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return data.withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
    }

    /// Max over rows of `max|got − ref| / max|ref|`.
    static func maxRelativeError(_ got: [Float], _ ref: [Float], rowLength: Int) -> Double {
        precondition(got.count == ref.count && rowLength > 0)
        var worst = 0.0
        for start in stride(from: 0, to: ref.count, by: rowLength) {
            var diff = 0.0, scale = 0.0
            for i in start..<(start + rowLength) {
                diff = max(diff, Double(abs(got[i] - ref[i])))
                scale = max(scale, Double(abs(ref[i])))
            }
            worst = max(worst, diff / max(scale, 1e-30))
        }
        return worst
    }

    /// `config` with top-level keys replaced (nil removes the key).
    static func editing(_ config: JSONValue, _ edits: [String: JSONValue?]) -> JSONValue {
        var object = config.objectValue!
        for (k, v) in edits { object[k] = v }
        return .object(object)
    }

    /// The description of the error `body` throws ("no error" if none).
    static func errorText(_ body: () throws -> Any) -> String {
        do {
            _ = try body()
            return "no error"
        } catch {
            return "\(error)"
        }
    }
}

/// A direct f64 transcription of transformers' Llama/Mistral/Qwen2 forward, one sequence.
enum ReferenceLlama {
    static func logits(_ model: Model, ids: [Int]) throws -> [Double] {
        let cfg = try LlamaConfig(config: model.config!)
        func w(_ name: String) -> [Double]? { (try? model[name]?.floats())?.map(Double.init) }
        func linear(_ x: [[Double]], _ name: String) -> [[Double]] {
            let weight = w(name + ".weight")!, bias = w(name + ".bias")
            let inF = x[0].count, outF = weight.count / inF
            return x.map { row in
                (0..<outF).map { o -> Double in
                    var sum: Double = bias?[o] ?? 0
                    for i in 0..<inF { sum += row[i] * weight[o * inF + i] }
                    return sum
                }
            }
        }
        func norm(_ x: [[Double]], _ name: String) -> [[Double]] {
            let g = w(name)!
            return x.map { row in
                let inv = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(row.count) + cfg.rmsNormEps).squareRoot()
                return row.indices.map { row[$0] * inv * g[$0] }
            }
        }
        let inv = OpGraph.referenceInverseFrequencies(cfg.rope, headDim: cfg.headDim)
        func rope(_ x: [[Double]], heads: Int) -> [[Double]] {
            let (hd, half) = (cfg.headDim, cfg.headDim / 2)
            return x.enumerated().map { p, row in
                var out = row
                for h in 0..<heads {
                    for i in 0..<half {
                        let (a, b) = (row[h * hd + i], row[h * hd + i + half]), t = inv[i] * Double(p)
                        out[h * hd + i] = a * cos(t) - b * sin(t)
                        out[h * hd + i + half] = b * cos(t) + a * sin(t)
                    }
                }
                return out
            }
        }
        let embed = w("model.embed_tokens.weight")!, h = cfg.hiddenSize, hd = cfg.headDim
        var x = ids.map { Array(embed[($0 * h)..<(($0 + 1) * h)]) }
        for l in 0..<cfg.layers {
            let p = "model.layers.\(l)."
            let n = norm(x, p + "input_layernorm.weight")
            let q = rope(linear(n, p + "self_attn.q_proj"), heads: cfg.heads), k = rope(linear(n, p + "self_attn.k_proj"), heads: cfg.kvHeads)
            let v = linear(n, p + "self_attn.v_proj")
            let attn: [[Double]] = ids.indices.map { i in
                (0..<cfg.heads).flatMap { head -> [Double] in
                    let kh = head / (cfg.heads / cfg.kvHeads)
                    let keys = (0...i).filter { j in cfg.slidingWindow[l].map { i - j < $0 } ?? true }
                    let s = keys.map { j in (0..<hd).reduce(0.0) { $0 + q[i][head * hd + $1] * k[j][kh * hd + $1] } / Double(hd).squareRoot() }
                    let m = s.max()!, e = s.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                    return (0..<hd).map { d in zip(keys, e).reduce(0.0) { $0 + $1.1 / z * v[$1.0][kh * hd + d] } }
                }
            }
            let o = linear(attn, p + "self_attn.o_proj")
            x = x.indices.map { i in x[i].indices.map { x[i][$0] + o[i][$0] } }
            let m = norm(x, p + "post_attention_layernorm.weight")
            let g = linear(m, p + "mlp.gate_proj"), u = linear(m, p + "mlp.up_proj")
            let act = g.indices.map { i in g[i].indices.map { g[i][$0] / (1 + Foundation.exp(-g[i][$0])) * u[i][$0] } }
            let d = linear(act, p + "mlp.down_proj")
            x = x.indices.map { i in x[i].indices.map { x[i][$0] + d[i][$0] } }
        }
        let head = model["lm_head.weight"] != nil ? "lm_head" : "model.embed_tokens"
        return linear(norm(x, "model.norm.weight"), head).flatMap { $0 }
    }
}
