import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// GPT2LMHeadModel against an independent numpy transcription of transformers' GPT-2 forward
/// (Tools/verify/arch_check.py) on a tiny random checkpoint the script writes; the CLI on it; bad input.
///
/// No real GPT-2 weights ship in ../shared and no PyPI package bundling a small one was found, so
/// the model is random (n_embd 32, 4 heads, 2 layers, 48 positions, a 320-token byte-level BPE
/// trained by `tokenizers` on the calibration text).
@Suite struct GPT2TemplateTests {
    static let ids = [[5, 17, 200, 33, 41, 9, 120, 77, 3, 250, 64, 12], [300, 2, 45, 45, 18, 99, 7, 160, 88, 21, 30, 150]]

    @Test func logitsMatchTheNumpyReference() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-gpt2")
        let folder = try ArchFixture.gpt2(python, in: dir)
        try ArchFixture.writeIDs(Self.ids, to: dir.file("ids.json"))
        try ArchFixture.run(python, ["gpt2-forward", folder, dir.file("ids.json"), dir.file("ref.f32")])
        let ref = try ArchFixture.floats(dir.file("ref.f32"))
        let model = try EngineFixtures.load(folder)
        let exec = try Executor(model: model)
        let logits = try exec.logits(Self.ids)
        let err = EngineFixtures.maxRelativeError(logits.values, ref, rowLength: logits.vocab)
        print("tiny GPT-2 vs numpy reference: max relative error \(err)")
        #expect(logits.vocab == 320 && logits.seq == 12)
        #expect(err < 1e-4)

        // The KV cache: prefill then one token at a time gives the same scores at every position.
        let seq = Self.ids[0]
        var rows = [try exec.prefill(Array(seq.prefix(4)))]
        for id in seq.dropFirst(4) { rows.append(try exec.step(id)) }
        let cached = rows.flatMap { $0 }
        let expected = Array(ref[(3 * 320)..<(12 * 320)])
        #expect(EngineFixtures.maxRelativeError(cached, expected, rowLength: 320) < 1e-4)

        // GPT2Model-style names (no "transformer." prefix, as the original gpt2 checkpoint) give the same graph values.
        let bare = try Model(tensors: model.tensors.map { t in
            var r = t
            if t.name.hasPrefix("transformer.") { r.name = String(t.name.dropFirst("transformer.".count)) }
            return r
        }, config: model.config)
        #expect(try Executor(model: bare).logits(Self.ids).values == logits.values)
    }

    /// GPT2Config's attention scaling switches, against the reference with the same config.
    @Test(.requires { try TestEnvironment.python }, .requires { try ArchFixture.gpt2Text },
          arguments: [["scale_attn_weights": false], ["scale_attn_by_inverse_layer_idx": true]] as [[String: Bool]])
    func attentionScalingFollowsTheConfig(_ edit: [String: Bool]) throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-gpt2")
        let folder = try ArchFixture.gpt2(python, in: dir)
        try CheckpointFixture.editJSON(folder + "/config.json") { o in for (k, v) in edit { o[k] = .bool(v) } }
        try ArchFixture.writeIDs(Self.ids, to: dir.file("ids.json"))
        try ArchFixture.run(python, ["gpt2-forward", folder, dir.file("ids.json"), dir.file("ref.f32")])
        let logits = try Executor(model: try EngineFixtures.load(folder)).logits(Self.ids)
        #expect(EngineFixtures.maxRelativeError(logits.values, try ArchFixture.floats(dir.file("ref.f32")), rowLength: logits.vocab) < 1e-4)
    }

    @Test func graphTiesTheHeadAndReadsConv1DWeightsTransposed() throws {
        let model = try CheckpointFixture.gpt2()
        let graph = try Architectures.graph(for: model)
        #expect(graph.name == "GPT2LMHeadModel")
        #expect(graph.inputs.map(\.name) == ["input_ids", "position_ids"])
        #expect(graph.outputs.map(\.name) == ["logits"])
        #expect(graph.nodes.last?.inputs == ["transformer.ln_f", "transformer.wte.weight"])
        let cAttn = try #require(graph.nodes.first { $0.name == "transformer.h.0.attn.c_attn" })
        guard case .string(let layout)? = cAttn.attribute("weight_layout") else {
            Issue.record("c_attn has no weight_layout attribute")
            return
        }
        #expect(String(decoding: layout, as: UTF8.self) == "in_out")
        let attention = try #require(graph.nodes.first { KilnOp.qualifiedName(of: $0) == "kiln.Attention" })
        #expect(attention.inputs == ["transformer.h.0.attn.c_attn"])
        #expect(graph.nodes.contains { KilnOp.qualifiedName(of: $0) == "kiln.Gelu" })
        // Layer-by-layer execution (calibration) finds the GPT-2 stack.
        let layers = try Executor(model: model).decoderLayers()
        #expect(layers.map(\.prefix) == ["transformer.h.0.", "transformer.h.1."])
    }

    @Test func configErrorsNameTheField() throws {
        func message(_ edits: [String: JSONValue?]) -> String {
            let m = try! CheckpointFixture.gpt2()
            m.config = EngineFixtures.editing(m.config!, edits)
            return EngineFixtures.errorText { try Architectures.graph(for: m) }
        }
        #expect(message(["n_head": 3]) == "config.json: n_head: expected a divisor of n_embd (16), found 3")
        #expect(message(["n_embd": nil]) == "config.json: n_embd: expected a positive integer, found no value")
        #expect(message(["n_positions": nil]) == "config.json: n_positions: expected a positive integer, found no value")
        #expect(message(["activation_function": "swish"])
            == "config.json: activation_function: expected gelu, gelu_new or gelu_pytorch_tanh, found \"swish\"")
        // A lying layer count is refused before the list of expected weights is built (2·10⁹ layers would exhaust memory).
        #expect(message(["n_layer": 2_000_000_000]).hasSuffix(
            "GPT2LMHeadModel with n_layer 2000000000: the checkpoint holds \(try CheckpointFixture.gpt2().tensors.count) tensors, too few for that many layers"))
    }

    @Test func weightErrorsNameTheTensorAndBothShapes() throws {
        let wrong = try CheckpointFixture.gpt2()
        // An nn.Linear-style [out, in] c_attn where Conv1D stores [in, out].
        wrong.set(Tensor(name: "transformer.h.1.attn.c_attn.weight", dtype: .f32, shape: [48, 16], values: [Float](repeating: 0, count: 768)))
        #expect(EngineFixtures.errorText { try Architectures.graph(for: wrong) }
            == "tensor \"transformer.h.1.attn.c_attn.weight\" › shape: expected [16, 48], found [48, 16] (from config.json: 3 × n_embd 16 (q, k, v))")
        let missing = try CheckpointFixture.gpt2()
        missing.remove("transformer.h.0.mlp.c_fc.bias")
        #expect(EngineFixtures.errorText { try Architectures.graph(for: missing) }
            == "tensor \"transformer.h.0.mlp.c_fc.bias\": missing (GPT2LMHeadModel with n_layer 2 needs it)")
    }

    @Test func sequenceLongerThanThePositionTableIsRefused() throws {
        let model = try CheckpointFixture.gpt2(positions: 32)
        let exec = try Executor(model: model)
        #expect(EngineFixtures.errorText { try exec.logits([Array(repeating: 1, count: 33)]) }
            == "position_ids: expected positions below 32 (the rows of \"transformer.wpe.weight\"), found 32 "
            + "(a sequence of 33 tokens is longer than the model's maximum of 32 positions)")
        // Generation runs into the same wall, not past it.
        #expect(EngineFixtures.errorText { try exec.generate(prompt: [1], maxNewTokens: 40) }.hasPrefix("position_ids: expected positions below 32"))
        _ = try exec.logits([Array(repeating: 1, count: 32)])
    }

    /// `kiln eval`, `generate` and `compare` on the tiny GPT-2: perplexity equals the numpy forward's by
    /// protocol kiln-ppl-v1; every generated token is the reference's argmax.
    @Test func cliEvalGenerateCompare() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-gpt2")
        let folder = try ArchFixture.gpt2(python, in: dir)
        let text = TestEnvironment.shared + "/data/tinystories_valid_eval.txt"
        let eval = try runKiln(["eval", folder, "--text", text, "--seq-len", "48", "--max-tokens", "1000", "--json"])
        #expect(eval.status == 0, "\(eval.stderr)")
        let ref = try #require(try ArchFixture.run(python, ["gpt2-ppl", folder, text, "1000", "48"]))
        let ppl = try JSONValue.parse(eval.stdout)["perplexity"]!.doubleValue!, refPPL = ref["perplexity"]!.doubleValue!
        print("tiny GPT-2 perplexity: kiln \(ppl), numpy reference \(refPPL)")
        #expect(abs(ppl / refPPL - 1) < 1e-4)
        let long = try runKiln(["eval", folder, "--text", text, "--seq-len", "64"])
        #expect(long.status == 1)
        #expect(long.stderr == "error: --seq-len: expected at most n_positions = 48, found 64 (use a shorter --seq-len)\n")

        let gen = try runKiln(["generate", folder, "--prompt", "Once upon a time", "--max-tokens", "12", "--json"])
        #expect(gen.status == 0, "\(gen.stderr)")
        let newTokens = try JSONValue.parse(gen.stdout)["new_tokens"]!.arrayValue!.map { Int($0.intValue!) }
        let tokenizer = try Tokenizer.load(path: folder)
        let prompt = [Int(try #require(tokenizer.bosTokenId))] + tokenizer.encode("Once upon a time").map(Int.init)
        let all = prompt + newTokens
        try ArchFixture.writeIDs([all], to: dir.file("gen.json"))
        try ArchFixture.run(python, ["gpt2-forward", folder, dir.file("gen.json"), dir.file("gen.f32")])
        let logits = try ArchFixture.floats(dir.file("gen.f32"))
        for (i, token) in newTokens.enumerated() {
            let row = Array(logits[((prompt.count - 1 + i) * 320)..<((prompt.count + i) * 320)])
            #expect(Executor.argmax(row) == token, "generated token \(i)")
        }

        let compare = try runKiln(["compare", folder, folder, "--text", text, "--seq-len", "48", "--max-tokens", "500", "--json"])
        #expect(compare.status == 0, "\(compare.stderr)")
        let same = try JSONValue.parse(compare.stdout)
        #expect(same["top1_agreement"]?.doubleValue == 1 && same["perplexity_a"] == same["perplexity_b"], "\(compare.stdout)")
    }

    /// HF → TensorRT-LLM (tp 2) → HF: the merged checkpoint runs to the same logits, bit for bit.
    @Test func tensorRTLLMRoundTripRunsToTheSameLogits() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-gpt2")
        let folder = try ArchFixture.gpt2(python, in: dir)
        let model = try EngineFixtures.load(folder)
        try CheckpointFixture.write(model, "trtllm", to: dir.file("trt"), ["tp": "2"])
        let back = try CheckpointFixture.read(dir.file("trt"), "trtllm")
        #expect(try Executor(model: back).logits(Self.ids).values == Executor(model: model).logits(Self.ids).values)
    }
}
