import KilnCore

/// FP8 KV-cache fake quantization (a model whose record says `kvCacheAlgorithm == "FP8"`).
///
/// ```
/// k ← f32(e4m3_saturating(k / s_k)) · s_k      s_k = model.layers.N.self_attn.k_proj.k_scale   (f32 [])
/// v ← f32(e4m3_saturating(v / s_v)) · s_v      s_v = model.layers.N.self_attn.v_proj.v_scale
/// ```
/// K is quantized as stored, after RoPE (ModelOpt's `k_bmm_quantizer`). The scale may come from
/// pre-RoPE amax (the FP8 pass observes k_proj outputs); RoPE rotates pairs, so post-RoPE |k| can
/// exceed it by up to √2, and such values saturate at ±448·s_k.
struct KVScales {
    var key: Float
    var value: Float
}

extension Executor {
    /// The FP8 KV scales of the attention node `node` (`<stack>.N.self_attn.attention`), or nil when
    /// the model has no FP8 KV cache or the layer has no scale tensors.
    /// - Throws: `KilnError(.invalidInput)` naming the tensor when a scale is not one positive finite value.
    func kvScales(for node: Node) throws -> KVScales? {
        guard model.quantization?.kvCacheAlgorithm == "FP8", let key = Executor.layerKey(node.name) else { return nil }
        let k = key.prefix + "self_attn.k_proj.k_scale", v = key.prefix + "self_attn.v_proj.v_scale"
        guard model[k] != nil, model[v] != nil else { return nil }
        func scalar(_ name: String) throws -> Float {
            let values = try weights.floats(name)
            guard values.count == 1, values.pointer[0] > 0, values.pointer[0].isFinite else {
                throw KilnError.mismatch(file: nil, path: ["tensor \"\(name)\""], expected: "one positive finite scale",
                                         found: values.count == 1 ? "\(values.pointer[0])" : "\(values.count) values")
            }
            return values.pointer[0]
        }
        return KVScales(key: try scalar(k), value: try scalar(v))
    }
}

extension KVCache.Layer {
    /// Fake-quantize the keys and values stored at positions `offset ..< offset + seq` to FP8 E4M3.
    /// - Complexity: O(batch · kv_heads · seq · head_dim).
    func fakeQuantizeFP8(offset: Int, seq: Int, scales: KVScales) {
        for b in 0..<batch {
            for h in 0..<kvHeads {
                Kernels.fakeQuantizeFP8(keys(b, h) + offset * headDim, count: seq * headDim, scale: scales.key)
                Kernels.fakeQuantizeFP8(values(b, h) + offset * headDim, count: seq * headDim, scale: scales.value)
            }
        }
    }
}

extension Kernels {
    /// `x ← f32(e4m3_saturating(x / s)) · s` for `count` values.
    static func fakeQuantizeFP8(_ x: UnsafeMutablePointer<Float>, count: Int, scale s: Float) {
        var i = 0
        while i < count {
            x[i] = FloatBits.f32(fromF8E4M3FN: FloatBits.f8e4m3fnSaturating(fromF32: x[i] / s)) * s
            i += 1
        }
    }

    /// `x ← clamp(round_half_even(x / s), −128, 127) · s` for `count` values.
    static func fakeQuantizeINT8(_ x: UnsafeMutablePointer<Float>, count: Int, scale s: Float) {
        var i = 0
        while i < count {
            x[i] = min(max((x[i] / s).rounded(.toNearestOrEven), -128), 127) * s
            i += 1
        }
    }
}
