import Foundation
import KilnCore
import KilnEngine
import KilnHost
import KilnTestKit
import Testing

/// LLM graph export: a Llama-family, GPT-2 or BERT model read from safetensors, its graph built by the
/// architecture template, lowered to standard ONNX ops, run in onnxruntime against the golden logits,
/// the Kiln executor and independent references (numpy GPT-2, the third-party MiniLM export).
@Suite struct ONNXLLMExportTests {
    /// stories260K from safetensors with the template's graph.
    func llama() throws -> Model {
        let folder = try TestEnvironment.sharedModel("stories260K")
        let model = try ONNXTest.plugins.reader(for: folder, named: "safetensors").read(path: folder, context: KilnContext())
        model.graph = try LlamaTemplate.build(config: try #require(model.config), weights: model)
        return model
    }

    @Test func llamaExportMatchesGoldenLogits() throws {
        let python = try TestEnvironment.python
        let model = try llama()
        let dir = TemporaryDirectory()
        let out = dir.file("llama.onnx")
        try ONNXTest.write(model, out)
        try ONNXTest.check(python, ["check", out])
        let golden = TestEnvironment.shared + "/models/stories260K/golden/logits.npz"
        for level in ["disable", "all"] {
            let result = try ONNXTest.check(python, ["compare-golden", out, golden, "--tol", "1e-4", "--opt", level])
            print("onnx llama export vs golden logits (\(level)): \(result?["results"]?.serialized() ?? "-")")
        }
        // Re-import: the lowered graph is plain ONNX.
        let back = try ONNXTest.read(out)
        #expect(back.graph?.nodes.allSatisfy { $0.domain.isEmpty } == true)
        #expect(back.graph?.inputs.map(\.name) == ["input_ids", "position_ids"])
    }

    @Test func quantizedLlamaExportRuns() throws {
        let python = try TestEnvironment.python
        let model = try llama()
        // FP8 per-tensor weights with static input scales on every projection of layer 0 (W8A8).
        for name in ["q_proj", "k_proj", "v_proj", "o_proj"].map({ "model.layers.0.self_attn.\($0).weight" })
            + ["gate_proj", "up_proj", "down_proj"].map({ "model.layers.0.mlp.\($0).weight" }) {
            let t = model[name]!
            var q = try TestQuantizer.fp8PerTensor(name, try t.floats(), shape: t.shape.dims)
            q.quant!.inputScale = TestQuantizer.inputScale(name + ".input_scale", amax: 4, format: .fp8e4m3)
            model.set(q)
        }
        let dir = TemporaryDirectory()
        try ONNXTest.write(model, dir.file("fp8.onnx"))
        try ONNXTest.check(python, ["check", dir.file("fp8.onnx")])
        let structure = try ONNXTest.check(python, ["qdq-structure", dir.file("fp8.onnx"), "fp8"])
        #expect(structure?["weight_dq"]?.intValue == 7)
        #expect(structure?["activation_pairs"]?.intValue == 7)
        let golden = TestEnvironment.shared + "/models/stories260K/golden/logits.npz"
        let result = try ONNXTest.check(python, ["compare-golden", dir.file("fp8.onnx"), golden, "--tol", "0.1", "--opt", "basic"])
        print("onnx fp8 llama (layer 0 quantized) vs golden logits: \(result?["results"]?.serialized() ?? "-")")
    }

    /// Build the template graph of the model in `folder` and write it as ONNX to `out`.
    func export(_ folder: String, to out: String, edit: (Model) -> Void = { _ in }) throws -> Model {
        let model = try ONNXTest.plugins.reader(for: folder, named: "safetensors").read(path: folder, context: KilnContext())
        edit(model)
        try Architectures.attachGraph(to: model)
        try ONNXTest.write(model, out)
        return model
    }

    /// A padded batch of two sequences of different lengths.
    static let gpt2IDs = [[5, 17, 200, 33, 41, 9, 120, 77, 3, 250], [300, 2, 45, 45, 18, 99, 7]]

    @Test func gpt2ExportMatchesTheExecutorAndTheNumpyReference() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-onnx-gpt2")
        let folder = try ArchFixture.gpt2(python, in: dir)
        let model = try export(folder, to: dir.file("gpt2.onnx"))
        try ONNXTest.check(python, ["check", dir.file("gpt2.onnx")])
        try ArchFixture.writeIDs(Self.gpt2IDs, to: dir.file("ids.json"))
        let run = try ArchFixture.run(python, ["ort-run", dir.file("gpt2.onnx"), dir.file("ids.json"), dir.file("ort")])
        #expect(run?["outputs"]?["logits"] == [2, 10, 320])
        let ort = try ArchFixture.floats(dir.file("ort.logits"))
        let kiln = try Executor(model: model).logits(Self.gpt2IDs).values
        let lengths = Self.gpt2IDs.map(\.count)
        let err = ArchFixture.maxRelativeError(ort, kiln, lengths: lengths, seq: 10, width: 320)
        // The numpy forward, one sequence at a time (it takes no padding).
        var refErr = 0.0
        for (b, ids) in Self.gpt2IDs.enumerated() {
            try ArchFixture.writeIDs([ids], to: dir.file("one.json"))
            try ArchFixture.run(python, ["gpt2-forward", folder, dir.file("one.json"), dir.file("ref.f32")])
            let row = Array(ort[(b * 10 * 320)..<((b * 10 + ids.count) * 320)])
            refErr = max(refErr, ArchFixture.maxRelativeError(row, try ArchFixture.floats(dir.file("ref.f32")), lengths: [ids.count],
                                                                  seq: ids.count, width: 320))
        }
        print("GPT-2 ONNX export in onnxruntime: max relative error vs Kiln executor \(err), vs numpy reference \(refErr)")
        #expect(err < 1e-4 && refErr < 1e-4)
        let back = try ONNXTest.read(dir.file("gpt2.onnx"))
        #expect(back.graph?.nodes.allSatisfy { $0.domain.isEmpty } == true)
        #expect(back.graph?.inputs.map(\.name) == ["input_ids", "position_ids"])
        // The CLI writes the same file; the attn.bias mask buffers of the checkpoint are left out.
        let cli = try runKiln(["convert", folder, dir.file("cli.onnx")])
        #expect(cli.status == 0, "\(cli.stderr)")
        #expect(try FileSystem.readBytes(dir.file("cli.onnx")) == FileSystem.readBytes(dir.file("gpt2.onnx")))
        #expect(try ONNXTest.read(dir.file("cli.onnx")).tensorNames.filter { $0.hasSuffix(".attn.bias") }.isEmpty)
    }

    @Test func bertExportMatchesTheOriginalExportAndTheExecutor() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-onnx-bert")
        let folder = try ArchFixture.miniLM(python, in: dir)
        let original = try ArchFixture.miniLMOnnx
        var rng = SplitMix64(seed: 5)
        let model = try export(folder, to: dir.file("bert.onnx")) { m in
            // A pooler (the sentence-transformers export has none) so that pooler_output is exported too.
            m.set(Tensor(name: "pooler.dense.weight", dtype: .f32, shape: [384, 384], values: (0..<(384 * 384)).map { _ in rng.nextSigned() * 0.05 }))
            m.set(Tensor(name: "pooler.dense.bias", dtype: .f32, shape: [384], values: (0..<384).map { _ in rng.nextSigned() * 0.1 }))
        }
        try ONNXTest.check(python, ["check", dir.file("bert.onnx")])
        let tokenizer = try Tokenizer.load(path: folder)
        let ids = ["A man is eating food.", "Two dogs play in the snow near a small wooden house."].map {
            tokenizer.encode($0, addSpecialTokens: true).map(Int.init)
        }
        try ArchFixture.writeIDs(ids, to: dir.file("ids.json"))
        try ArchFixture.run(python, ["ort-run", dir.file("bert.onnx"), dir.file("ids.json"), dir.file("kiln-onnx")])
        try ArchFixture.run(python, ["bert-ort", original, dir.file("ids.json"), dir.file("original")])
        let exported = try ArchFixture.floats(dir.file("kiln-onnx.last_hidden_state"))
        let lengths = ids.map(\.count), seq = lengths.max()!
        let outputs = try Executor(model: model).outputs(ids)
        let vsOriginal = ArchFixture.maxRelativeError(exported, try ArchFixture.floats(dir.file("original.hidden")), lengths: lengths, seq: seq, width: 384)
        let vsKiln = ArchFixture.maxRelativeError(exported, outputs["last_hidden_state"]!.values, lengths: lengths, seq: seq, width: 384)
        let pooler = ArchFixture.maxRelativeError(try ArchFixture.floats(dir.file("kiln-onnx.pooler_output")), outputs["pooler_output"]!.values,
                                                  lengths: [1, 1], seq: 1, width: 384)
        print("BERT ONNX export in onnxruntime: max relative error vs the original export \(vsOriginal), vs Kiln executor \(vsKiln), pooler \(pooler)")
        #expect(vsOriginal < 1e-4 && vsKiln < 1e-4 && pooler < 1e-4)
        let back = try ONNXTest.read(dir.file("bert.onnx"))
        #expect(back.graph?.inputs.map(\.name) == ["input_ids", "token_type_ids", "position_ids", "attention_mask"])
        #expect(back.graph?.outputs.map(\.name) == ["last_hidden_state", "pooler_output"])
    }
}
