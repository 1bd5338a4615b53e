import Foundation
import KilnCore
import KilnTestKit
import Testing

/// Quantized TensorRT-LLM checkpoints: FP8, INT8 SmoothQuant, INT4 AWQ (W4A16 / W4A8), FP8 KV cache;
/// exact round trips, per-rank scale splits, byte-level pins of the packing, config.json fields.
@Suite struct TensorRTLLMQuantTests {
    typealias F = CheckpointFixture
    typealias Q = QuantizedFixture

    /// Write at `tp`, read back, expect the IR unchanged; the python reader agrees on dequantized values.
    func roundTrip(_ model: Model, tp: Int, order: Bool = false) throws -> TemporaryDirectory {
        let dir = TemporaryDirectory()
        try F.write(model, "trtllm", to: dir.file("ckpt"), ["tp": String(tp)])
        let back = try F.read(dir.file("ckpt"), "trtllm")
        do { let d = try ModelDiff.differences(model, back, order: order); #expect(d.isEmpty, "\(d)") }
        #expect(back.quantization == model.quantization)
        for t in model.tensors where t.quant != nil {
            #expect(try ModelDiff.bytes(t.quant!.dequantize(t)) == ModelDiff.bytes(back[t.name]!.quant!.dequantize(back[t.name]!)), "\(t.name)")
        }
        let python = try TestEnvironment.python
        do { let out = try F.pythonCheck(python, "trtllm", dir.file("ckpt"), expected: Q.expected(model)); #expect(out == nil, "\(out ?? "")") }
        return dir
    }

    @Test(.requires { try TestEnvironment.sharedModel("stories260K") }, .requires { try TestEnvironment.python },
          arguments: [1, 2, 4])
    func fp8Stories260KIsExact(_ tp: Int) throws {
        let base = try F.stories260K()
        let model = try Q.quantize(base, .fp8(shareFused: true, kvCache: true))
        let dir = try roundTrip(model, tp: tp)
        let t = try F.tensors(dir.file("ckpt/rank\(tp - 1).safetensors"))
        let a = "transformer.layers.1.attention."
        #expect(t[a + "qkv.weight"]?.dtype == .f8e4m3fn)
        #expect(t[a + "qkv.weights_scaling_factor"]?.shape == [1])
        #expect(t[a + "qkv.activation_scaling_factor"]?.shape == [1])
        #expect(try t[a + "k_cache_scaling_factor"]!.floats() == [1.125])
        #expect(try t[a + "v_cache_scaling_factor"]!.floats() == [1.25])
        #expect(try t[a + "kv_cache_scaling_factor"]!.floats() == [1.25])
        #expect(t["lm_head.weight"]?.dtype == .f32, "lm_head excluded")
        #expect(t["lm_head.weights_scaling_factor"] == nil)
    }

    /// Different q/k/v scales: the shared scale is the max, the others are requantized to it:
    /// q' = fp8(f32(q)·s_part / s_max).
    @Test func fp8PartsWithDifferentScalesAreRequantizedToTheMax() throws {
        let base = try F.llama(heads: 8, kvHeads: 4, intermediate: 128, layers: 1)
        let model = try Q.quantize(base, .fp8(shareFused: false, kvCache: false))
        let dir = TemporaryDirectory()
        try F.write(model, "trtllm", to: dir.file("ckpt"), ["tp": "2"])
        let p = "model.layers.0.self_attn."
        let scales = try ["q_proj", "k_proj", "v_proj"].map { try model[p + $0 + ".weight"]!.quant!.scale.floats()[0] }
        let shared = scales.max()!
        let back = try F.read(dir.file("ckpt"), "trtllm")
        for (i, name) in ["q_proj", "k_proj", "v_proj"].enumerated() {
            let t = model[p + name + ".weight"]!
            let expected = try t.withBytes { b in (0..<t.elementCount).map { FloatBits.f8e4m3fnSaturating(fromF32: FloatBits.f32(fromF8E4M3FN: b[$0]) * scales[i] / shared) } }
            let found = back[p + name + ".weight"]!
            #expect(try ModelDiff.bytes(found) == expected, "\(name)")
            #expect(try found.quant!.scale.floats() == [shared])
            #expect(try found.quant!.inputScale!.floats() == [try ["q_proj", "k_proj", "v_proj"].map { try model[p + $0 + ".weight"]!.quant!.inputScale!.floats()[0] }.max()!])
        }
        let rank = try F.tensors(dir.file("ckpt/rank0.safetensors"))
        #expect(try rank["transformer.layers.0.mlp.fc.weights_scaling_factor"]!.floats() == rank["transformer.layers.0.mlp.gate.weights_scaling_factor"]!.floats(),
                "fc and gate share one scale")
    }

    @Test(.requires { try TestEnvironment.sharedModel("stories260K") }, .requires { try TestEnvironment.python },
          arguments: [1, 2, 4])
    func int8SmoothQuantIsExact(_ tp: Int) throws {
        let base = try F.stories260K()
        let model = try Q.quantize(base, .int8SQ)
        let dir = try roundTrip(model, tp: tp)
        // Column-parallel: per-channel scales follow their rows; row-parallel: replicated scales, split pre-quant.
        let l = "transformer.layers.0."
        let t = try F.tensors(dir.file("ckpt/rank\(tp - 1).safetensors"))
        #expect(t[l + "attention.qkv.weight"]?.dtype == .i8)
        #expect(t[l + "attention.qkv.weights_scaling_factor"]?.shape == [(64 + 2 * 32) / tp])
        #expect(t[l + "attention.qkv.prequant_scaling_factor"]?.shape == [64])
        #expect(t[l + "attention.dense.weights_scaling_factor"]?.shape == [64])
        #expect(t[l + "attention.dense.prequant_scaling_factor"]?.shape == [64 / tp])
        #expect(t[l + "mlp.proj.prequant_scaling_factor"]?.shape == [172 / tp])
        let down = model["model.layers.0.mlp.down_proj.weight"]!.quant!
        #expect(try t[l + "mlp.proj.prequant_scaling_factor"]!.floats() == F.slice(down.preQuantScale!, rows: (172 / tp * (tp - 1))..<172))
        #expect(try t[l + "mlp.proj.weights_scaling_factor"]!.floats() == down.scale.floats())
    }

    @Test(.requires { try TestEnvironment.sharedModel("stories260K") }, .requires { try TestEnvironment.python },
          arguments: [1, 2])
    func int4AWQStories260KIsExact(_ tp: Int) throws {
        let base = try F.stories260K()
        // down_proj's 172 inputs fit no group size that also splits over tp: excluded, as in practice.
        let model = try Q.quantize(base, .int4AWQ(group: 16), skip: ["mlp.down_proj"])
        let dir = try roundTrip(model, tp: tp)
        let l = "transformer.layers.0."
        let t = try F.tensors(dir.file("ckpt/rank0.safetensors"))
        #expect(t[l + "attention.qkv.weight"]?.dtype == .i8)
        #expect(t[l + "attention.qkv.weight"]?.shape == [128 / tp / 2, 64])
        #expect(t[l + "attention.qkv.weights_scaling_factor"]?.shape == [128 / tp, 4])
        #expect(t[l + "attention.dense.weights_scaling_factor"]?.shape == [64, 4 / tp])
        #expect(t[l + "attention.dense.prequant_scaling_factor"]?.shape == [64 / tp])
        #expect(t[l + "mlp.proj.weight"]?.dtype == .f32)
        let config = try JSONValue.parse(FileSystem.readBytes(dir.file("ckpt/config.json")))
        #expect(config["quantization"] == .object(JSONObject([
            ("quant_algo", "W4A16_AWQ"), ("kv_cache_quant_algo", .null), ("group_size", 16), ("has_zero_point", false),
            ("pre_quant_scale", true),
            ("exclude_modules", .array((0..<5).map { .string("transformer.layers.\($0).mlp.proj") } + ["lm_head"])),
        ])))
    }

    @Test func int4AWQStories260KAtTP4IsRefused() throws {
        let base = try F.stories260K()
        let model = try Q.quantize(base, .int4AWQ(group: 16), skip: ["mlp.down_proj"])
        let dir = TemporaryDirectory()
        #expect {
            try F.write(model, "trtllm", to: dir.file("ckpt"), ["tp": "4"])
        } throws: { error in
            "\(error)" == #"tensor "model.layers.0.mlp.gate_proj.weight": transformer.layers.0.mlp.fc has 43 rows on rank 0 (tp 4); int4 packs two rows per byte and needs an even count"#
        }
        #expect(dir.contents.isEmpty)
    }

    @Test(.requires { try TestEnvironment.python }, arguments: [1, 2, 4])
    func int4AWQSyntheticIsExact(_ tp: Int) throws {
        let model = try Q.quantize(try F.llama(heads: 8, kvHeads: 2, intermediate: 128), .int4AWQ(group: 16))
        _ = try roundTrip(model, tp: tp)
    }

    @Test func w4a8AWQIsExact() throws {
        let model = try Q.quantize(try F.llama(intermediate: 128), .int4AWQ(group: 32, w4a8: true))
        let dir = try roundTrip(model, tp: 2)
        let t = try F.tensors(dir.file("ckpt/rank0.safetensors"))
        let config = try JSONValue.parse(FileSystem.readBytes(dir.file("ckpt/config.json")))
        #expect(config["quantization"]?["quant_algo"] == "W4A8_AWQ")
        let q = model["model.layers.0.self_attn.q_proj.weight"]!.quant!
        let k = model["model.layers.0.self_attn.k_proj.weight"]!.quant!
        let v = model["model.layers.0.self_attn.v_proj.weight"]!.quant!
        let m = try [q, k, v].map { try $0.scale.floats().max()! }.max()!
        #expect(try t["transformer.layers.0.attention.qkv.weights_scaling_factor_2"]!.floats() == [m * 7 / 448])
        #expect(try t["transformer.layers.0.attention.qkv.activation_scaling_factor"]!.floats() == q.inputScale!.floats())
    }

    /// Byte-level pin of the int4 packing: byte[k, j] = (q[2k, j] & 0xF) | (q[2k+1, j] << 4), stored as I8.
    @Test func int4PackingIsModelOpts() throws {
        let model = try F.llama(hidden: 4, heads: 2, kvHeads: 1, intermediate: 4, layers: 1, vocab: 8)
        // q_proj [4, 4] with hand-made values, group 4 (one group per row), scale 1.
        let q: [Int8] = [1, -2, 3, -4,
                         3, 4, -5, 6,
                         -8, 7, 0, 1,
                         0, -1, 2, -3]
        var tensors: [Tensor] = []
        for t in model.tensors {
            guard let (_, projection) = Q.parse(t.name) else { tensors.append(t); continue }
            let (rows, cols) = (t.shape[0], t.shape[1])
            let values = projection == "self_attn.q_proj" ? q : [Int8](repeating: 1, count: rows * cols)
            let spec = QuantSpec(format: .int4, granularity: .perBlock(axis: 1, size: 4),
                                 scale: Tensor(name: "s", dtype: .f32, shape: [rows, cols / 4], values: [Float](repeating: 1, count: rows * cols / 4)))
            tensors.append(Tensor(name: t.name, dtype: .i4, shape: t.shape, storage: .owned(TensorBuffer(values: Int4Packing.packIR(values))), quant: spec))
        }
        let quantized = try Model(tensors: tensors, config: model.config,
                                  quantization: QuantizationRecord(algorithm: "W4A16_AWQ", groupSize: 4, excludedModules: ["lm_head"]))
        let dir = TemporaryDirectory()
        try F.write(quantized, "trtllm", to: dir.file("ckpt"))
        let qkv = try F.tensors(dir.file("ckpt/rank0.safetensors"))["transformer.layers.0.attention.qkv.weight"]!
        #expect(qkv.dtype == .i8)
        #expect(qkv.shape == [4, 4])  // (4 q + 2 k + 2 v rows) / 2
        let bytes = try ModelDiff.bytes(qkv)
        #expect(Array(bytes.prefix(8)) == [0x31, 0x4E, 0xB3, 0x6C, 0x08, 0xF7, 0x20, 0xD1])
        #expect(Array(bytes.suffix(8)) == [UInt8](repeating: 0x11, count: 8))
        do { let d = try ModelDiff.differences(quantized, F.read(dir.file("ckpt"), "trtllm")); #expect(d.isEmpty, "\(d)") }
    }

    @Test func fp8ConfigQuantizationIsVerbatim() throws {
        let model = try Q.quantize(try F.llama(intermediate: 128, layers: 1), .fp8(shareFused: true, kvCache: true))
        let dir = TemporaryDirectory()
        try F.write(model, "trtllm", to: dir.file("ckpt"))
        let config = try JSONValue.parse(FileSystem.readBytes(dir.file("ckpt/config.json")))
        #expect(config["quantization"]?.serialized() ==
                #"{"quant_algo":"FP8","kv_cache_quant_algo":"FP8","group_size":128,"has_zero_point":false,"pre_quant_scale":false,"exclude_modules":["lm_head"]}"#)
    }

    @Test func sparsityFlagTravels() throws {
        var model = try Q.quantize(try F.llama(intermediate: 128, layers: 1), .fp8())
        var record = model.quantization!
        record.sparsity = "2:4"
        let tensors = model.tensors.map { t -> Tensor in
            var c = t
            c.quant?.sparsity = .twoFour
            return c
        }
        model = try Model(tensors: tensors, config: model.config, quantization: record)
        let dir = TemporaryDirectory()
        try F.write(model, "trtllm", to: dir.file("ckpt"))
        let config = try JSONValue.parse(FileSystem.readBytes(dir.file("ckpt/config.json")))
        #expect(config["weight_sparsity"] == .bool(true))
        let back = try F.read(dir.file("ckpt"), "trtllm")
        #expect(back.quantization?.sparsity == "2:4")
        do { let d = try ModelDiff.differences(model, back); #expect(d.isEmpty, "\(d)") }
    }

    @Test func mixedQuantizedAndFloatPartsAreRefused() throws {
        let base = try Q.quantize(try F.llama(intermediate: 128, layers: 1), .fp8())
        let k = "model.layers.0.self_attn.k_proj.weight"
        let model = try Model(tensors: base.tensors.map { $0.name == k ? Tensor(name: k, dtype: .f32, shape: $0.shape, values: [Float](repeating: 0, count: $0.elementCount)) : $0 },
                              config: base.config, quantization: base.quantization)
        let dir = TemporaryDirectory()
        #expect {
            try F.write(model, "trtllm", to: dir.file("ckpt"))
        } throws: { error in
            "\(error)".hasPrefix(#"tensor "model.layers.0.self_attn.q_proj.weight": transformer.layers.0.attention.qkv fuses"#)
        }
        #expect(dir.contents.isEmpty)
    }
}
