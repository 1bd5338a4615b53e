import Foundation
import KilnCore
import KilnTestKit
import Testing

/// Bad TensorRT-LLM checkpoints and bad writer inputs: one clear error each, nothing left behind.
@Suite struct TensorRTLLMReaderTests {
    typealias F = CheckpointFixture

    /// A valid tp-2 checkpoint of a small synthetic Llama.
    func checkpoint(_ dir: TemporaryDirectory) throws -> String {
        try F.write(try F.llama(intermediate: 128, layers: 1), "trtllm", to: dir.file("ckpt"), ["tp": "2"])
        return dir.file("ckpt")
    }

    func readError(_ path: String) -> String? {
        do { _ = try F.read(path, "trtllm"); return nil } catch { return "\(error)" }
    }

    @Test func probeRecognisesCheckpointsOnly() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        #expect(try TestEnvironment.plugins.reader(for: ckpt).name == "trtllm")
        #expect(TestEnvironment.plugins.readers.first { $0.name == "trtllm" }!.probe(path: dir.path) == 0)
    }

    @Test func missingRankFile() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        try FileManager.default.removeItem(atPath: ckpt + "/rank1.safetensors")
        #expect(readError(ckpt) == "\(ckpt)/rank1.safetensors: missing: config.json says world_size 2")
    }

    @Test func rankCountDifferentFromWorldSize() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        try FileManager.default.copyItem(atPath: ckpt + "/rank1.safetensors", toPath: ckpt + "/rank2.safetensors")
        #expect(readError(ckpt) == "\(ckpt)/rank2.safetensors: unexpected rank file: config.json says world_size 2 (ranks 0...1)")
    }

    @Test func configFieldMissing() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        try F.editJSON(ckpt + "/config.json") { $0["num_attention_heads"] = nil }
        #expect(readError(ckpt) == "\(ckpt)/config.json: num_attention_heads: expected an integer, found nothing")
    }

    @Test func configFieldOfTheWrongType() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        try F.editJSON(ckpt + "/config.json") { $0["hidden_size"] = "64" }
        #expect(readError(ckpt) == #"\#(ckpt)/config.json: hidden_size: expected an integer ≥ 1, found "64""#)
        try F.editJSON(ckpt + "/config.json") {
            $0["hidden_size"] = 64
            $0["mapping"] = .object(JSONObject([("world_size", 2), ("tp_size", "2"), ("pp_size", 1)]))
        }
        #expect(readError(ckpt) == #"\#(ckpt)/config.json: mapping › tp_size: expected an integer ≥ 1, found "2""#)
    }

    @Test func unknownQuantAlgo() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        try F.editJSON(ckpt + "/config.json") {
            var q = $0["quantization"]!.objectValue!
            q["quant_algo"] = "INT3"
            $0["quantization"] = .object(q)
        }
        #expect(readError(ckpt) == #"\#(ckpt)/config.json: quantization › quant_algo: expected null or one of FP8, FP8_PER_CHANNEL_PER_TOKEN, W4A16_AWQ, W4A8_AWQ, W8A8_SQ_PER_CHANNEL, W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN, found "INT3""#)
    }

    @Test func inconsistentWorldSizeAndPipelineParallel() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        try F.editJSON(ckpt + "/config.json") { $0["mapping"] = .object(JSONObject([("world_size", 4), ("tp_size", 2), ("pp_size", 1)])) }
        #expect(readError(ckpt) == "\(ckpt)/config.json: mapping › world_size: expected tp_size × pp_size = 2, found 4")
        try F.editJSON(ckpt + "/config.json") { $0["mapping"] = .object(JSONObject([("world_size", 4), ("tp_size", 2), ("pp_size", 2)])) }
        #expect(readError(ckpt) == "\(ckpt)/config.json: mapping › pp_size: pipeline-parallel checkpoints (pp_size 2) are not supported")
    }

    @Test func tensorShapeInconsistentAcrossRanks() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        // Rebuild rank1 with a qkv weight of 40 rows instead of 64 (tp 2 of 8 q + 2·4 kv heads of 8).
        let name = "transformer.layers.0.attention.qkv.weight"
        let tensors = try SafetensorsFile(path: ckpt + "/rank1.safetensors").tensors().map { t -> Tensor in
            guard t.name == name else { return Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: .owned(try t.materialized())) }
            return Tensor(name: name, dtype: .f32, shape: [40, 64], values: [Float](repeating: 0, count: 40 * 64))
        }
        try SafetensorsFile.write(tensors, to: ckpt + "/rank1.safetensors")
        #expect(readError(ckpt) == #"\#(ckpt)/rank1.safetensors: tensor "\#(name)" › shape: expected [64, 64] (from config.json: LlamaForCausalLM, tp 2), found [40, 64]"#)
    }

    @Test func missingTensorInARank() throws {
        let dir = TemporaryDirectory()
        let ckpt = try checkpoint(dir)
        let tensors = try SafetensorsFile(path: ckpt + "/rank0.safetensors").tensors()
            .filter { $0.name != "transformer.layers.0.mlp.proj.weight" }
            .map { Tensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, storage: .owned(try $0.materialized())) }
        try SafetensorsFile.write(tensors, to: ckpt + "/rank0.safetensors")
        #expect(readError(ckpt) == #"\#(ckpt)/rank0.safetensors: tensor "transformer.layers.0.mlp.proj.weight": missing (expected from config.json: LlamaForCausalLM, tp 2)"#)
    }

    @Test func writerRefusesBadOptionsAndModelsWithoutLeftovers() throws {
        let dir = TemporaryDirectory()
        let model = try F.llama(intermediate: 128, layers: 1)
        func error(_ m: Model, _ options: [String: String]) -> String? {
            do { try F.write(m, "trtllm", to: dir.file("out"), options); return nil } catch { return "\(error)" }
        }
        #expect(error(model, ["tp": "three"]) == #"--tp: expected an integer in 1...64, found "three""#)
        #expect(error(model, ["tp": "3"]) == #"tensor "model.layers.0.self_attn.q_proj.weight": dim 0 (64) holds 8 query heads, not divisible by tp 3 (column-parallel attention.qkv)"#)
        #expect(error(try F.llama(heads: 8, kvHeads: 4, intermediate: 128, layers: 1), ["tp": "8"]) == nil)
        let noConfig = try Model(tensors: model.tensors)
        #expect(error(noConfig, [:]) == "config.json: a TensorRT-LLM checkpoint needs the model's config.json (architecture and sizes); none was read with the input")
        let extra = try Model(tensors: model.tensors + [Tensor(name: "model.extra.weight", dtype: .f32, shape: [1], values: [Float(1)])], config: model.config)
        #expect(error(extra, [:]) == #"tensor "model.extra.weight": has no place in a TensorRT-LLM LlamaForCausalLM checkpoint"#)
        let missing = try Model(tensors: model.tensors.filter { $0.name != "model.layers.0.mlp.up_proj.weight" }, config: model.config)
        #expect(error(missing, [:]) == #"tensor "model.layers.0.mlp.up_proj.weight": missing: a LlamaForCausalLM checkpoint needs it"#)
        var bert = model.config!.objectValue!
        bert["architectures"] = ["BertModel"]
        #expect(error(try Model(tensors: model.tensors, config: .object(bert)), [:])?.hasSuffix(#"found "BertModel""#) == true)
        #expect(dir.contents == ["out"], "only the tp-8 success is left: \(dir.contents)")
    }
}
