import Foundation
import KilnCore
import KilnTestKit
import Testing

/// HF → TensorRT-LLM → HF on the real SmolLM2-135M (9 query / 3 KV heads, 540 MB): bit-exact at
/// tp 1 and 3, the python reader agrees; tp 2, 4 and 8 are refused before anything is written.
/// Needs KILN_SMOLLM2_DIR (skipped, with the reason, otherwise).
@Suite(.serialized) struct TensorRTLLMSmolLM2Tests {
    typealias F = CheckpointFixture

    @Test(.requires { try TestEnvironment.smolLM2 }, .requires { try TestEnvironment.python }, arguments: [1, 3])
    func roundTripIsBitExact(_ tp: Int) throws {
        let source = try TestEnvironment.smolLM2
        let started = Date()
        let model = try F.read(source, "safetensors")
        let dir = TemporaryDirectory()
        try F.write(model, "trtllm", to: dir.file("ckpt"), ["tp": String(tp)])
        let files = FileSystem.list(dir.file("ckpt"))!
        #expect(files.filter { $0.hasPrefix("rank") } == (0..<tp).map { "rank\($0).safetensors" })
        if tp == 3 {
            // 9 query heads / 3 = 3 per rank, 1 KV head per rank for k and for v; head size 64
            let rank = try F.tensors(dir.file("ckpt/rank2.safetensors"))
            #expect(rank["transformer.layers.0.attention.qkv.weight"]?.shape == [(3 + 1 + 1) * 64, 576])
            #expect(rank["transformer.layers.0.attention.dense.weight"]?.shape == [576, 192])
        }
        // TRT-LLM → HF safetensors folder, read back: every tensor bit for bit (names as a set: the
        // original file is in name order, the way back writes layer order).
        let back = try F.read(dir.file("ckpt"), "trtllm")
        try F.write(back, "safetensors", to: dir.file("hf"))
        let hf = try F.read(dir.file("hf"), "safetensors")
        let d = try ModelDiff.differences(model, hf)
        #expect(d.isEmpty, "\(d)")
        #expect(hf.tensors.count == model.tensors.count)
        #expect(hf.config?["num_key_value_heads"]?.intValue == 3)
        let python = try TestEnvironment.python
        let check = try runVerifyScript(python, "trtllm_check.py", ["trtllm", dir.file("ckpt"), source + "/model.safetensors"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        print("SmolLM2-135M tp \(tp) round trip: \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }

    @Test(.requires { try TestEnvironment.smolLM2 }, arguments: [2, 4, 8])
    func tpThatSplitsAHeadIsRefusedWithoutOutput(_ tp: Int) throws {
        let source = try TestEnvironment.smolLM2
        let model = try F.read(source, "safetensors")
        let dir = TemporaryDirectory()
        #expect {
            try F.write(model, "trtllm", to: dir.file("ckpt"), ["tp": String(tp)])
        } throws: { error in
            "\(error)" == "tensor \"model.layers.0.self_attn.q_proj.weight\": dim 0 (576) holds 9 query heads, not divisible by tp \(tp) (column-parallel attention.qkv)"
        }
        #expect(dir.contents.isEmpty)
    }
}
