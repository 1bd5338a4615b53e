import Foundation
import KilnCore
import KilnEngine
import KilnHost
import KilnTestKit
import Testing

/// LLM graph export: a Llama-family model read from safetensors, its graph built by the
/// architecture template, lowered to standard ONNX ops, run in onnxruntime against the golden logits.
@Suite struct ONNXLLMExportTests {
    /// stories260K from safetensors with the template's graph.
    func llama() throws -> Model? {
        guard let folder = TestEnvironment.sharedModel("stories260K") else { return nil }
        let model = try ONNXTest.plugins.reader(for: folder, named: "safetensors").read(path: folder, context: KilnContext())
        model.graph = try LlamaTemplate.build(config: try #require(model.config), weights: model)
        return model
    }

    @Test func llamaExportMatchesGoldenLogits() throws {
        guard let python = TestEnvironment.python, let model = try llama() else { return }
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
        guard let python = TestEnvironment.python, let model = try llama() else { return }
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
}
