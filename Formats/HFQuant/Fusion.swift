import KilnCore

/// How one linear's weight is stored.
enum Format: Equatable {
    case fp8
    /// FP8 weights with one scale per output row; activations quantized per token at run time.
    case fp8PerChannel
    case int8
    case int4(group: Int)

    var algorithm: String {
        switch self {
        case .fp8: return "FP8"
        case .fp8PerChannel: return "FP8_PER_CHANNEL_PER_TOKEN"
        case .int8: return "W8A8_SQ_PER_CHANNEL"
        case .int4: return "W4A16_AWQ"
        }
    }

    /// - Throws: `KilnError(.unsupported)` for zero points and granularities the format has no layout for.
    static func classify(_ t: Tensor, _ q: QuantSpec) throws -> Format {
        let at = ["tensor \"\(t.name)\""]
        guard q.zeroPoint == nil else {
            throw KilnError(.unsupported, path: at, "zero points (asymmetric quantization) have no place in a unified HF checkpoint")
        }
        guard t.shape.rank == 2 else {
            throw KilnError(.unsupported, path: at, "quantized weights must be 2-D [out, in], found \(t.shape)")
        }
        switch (q.format, q.granularity) {
        case (.fp8e4m3, .perTensor): return .fp8
        case (.fp8e4m3, .perChannel(axis: 0)):
            guard q.inputScale == nil else {
                throw KilnError(.unsupported, path: at, "FP8 per-channel weights take per-token dynamic activations (FP8_PER_CHANNEL_PER_TOKEN); a static input scale has no place beside them")
            }
            return .fp8PerChannel
        case (.int8, .perChannel(axis: 0)): return .int8
        case (.int4, .perBlock(axis: 1, let g)):
            guard t.shape[1] % g == 0 else {
                throw KilnError(.unsupported, path: at, "dim 1 (\(t.shape[1])) is not a multiple of the group size \(g): a unified HF checkpoint stores whole groups only; quantize with --option indivisible=skip to keep such layers in high precision, or write ONNX (--to onnx), which stores a partial last block")
            }
            return .int4(group: g)
        default:
            throw KilnError(.unsupported, path: at,
                            "\(q.format.rawValue) with granularity \(q.granularity) has no unified HF layout (FP8 per-tensor or per-channel axis 0, INT8 per-channel axis 0, INT4 blocks along axis 1)")
        }
    }
}

/// Modules that read the same input, and what ModelOpt does to them before export
/// (unified_export_hf.py requantize_resmooth_fused_llm_layers):
/// - INT8 SQ / AWQ: one pre_quant_scale for the group and input_scale = max over the group
///   (preprocess_linear_fusion; differing pre-quant scales would need resmoothing: refused here);
/// - AWQ: that pre_quant_scale folded into the norm feeding the group (fuse_prequant_layernorm):
///   `norm' = norm · p`, multiplied in f32 and rounded once to the norm's dtype;
/// - FP8 (per-tensor or per-channel): nothing (each module keeps its own scales).
enum Fusion {
    static func apply(model: Model, specs: inout [String: QuantSpec], replaced: inout [String: Tensor]) throws {
        for t in model.tensors {
            for (member, siblings, norm) in [("self_attn.q_proj.weight", ["self_attn.k_proj.weight", "self_attn.v_proj.weight"], "input_layernorm.weight"),
                                            ("mlp.gate_proj.weight", ["mlp.up_proj.weight"], "post_attention_layernorm.weight")]
            where t.name.hasSuffix("." + member) {
                let prefix = String(t.name.dropLast(member.count))
                let names = [t.name] + siblings.map { prefix + $0 }
                guard names.allSatisfy({ specs[$0] != nil }) else { continue }
                try fuse(names, norm: prefix + norm, model: model, specs: &specs, replaced: &replaced)
            }
        }
    }

    static func fuse(_ names: [String], norm: String, model: Model, specs: inout [String: QuantSpec], replaced: inout [String: Tensor]) throws {
        let group = names.map { specs[$0]! }
        let formats = try names.map { try Format.classify(model[$0]!, specs[$0]!) }
        guard formats.allSatisfy({ $0 == formats[0] }) else { return }
        if formats[0] == .fp8 || formats[0] == .fp8PerChannel { return }
        // Shared static input scale: the maximum.
        let inputs = try group.compactMap { try $0.inputScale.map { try scalar($0) } }
        if let m = inputs.max(), inputs.count == group.count {
            for n in names { specs[n]!.inputScale = Tensor(name: n + ".input_scale", dtype: .f32, shape: [], values: [m]) }
        }
        // One pre-quant scale for the group.
        let pqs = group.map(\.preQuantScale)
        if pqs.allSatisfy({ $0 == nil }) { return }
        let first = try pqs[0]?.floats()
        for (n, p) in zip(names, pqs) where try p?.floats() != first {
            throw KilnError(.unsupported, path: ["tensor \"\(n)\""],
                            "\(names.joined(separator: ", ")) read the same input but have different pre-quant scales; the unified HF layout holds one (smooth them with a shared scale)")
        }
        guard case .int4 = formats[0] else { return }
        guard let n = model[norm], let p = pqs[0] else {
            throw KilnError(.invalidInput, path: ["tensor \"\(norm)\""], "missing: the AWQ pre-quant scale of \(names[0]) is folded into it")
        }
        guard n.elementCount == p.elementCount, n.dtype.isFloat else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(norm)\""], expected: "\(p.elementCount) float values (the pre-quant scale's size)", found: "\(n.elementCount) × \(n.dtype)")
        }
        replaced[norm] = Tensor(name: norm, dtype: n.dtype, shape: n.shape, storage: .deferred {
            let a = try n.floats(), b = try p.floats()
            let product = zip(a, b).map { $0 * $1 }
            let out = TensorBuffer(count: n.byteCount, zeroed: false)
            try product.withUnsafeBytes { try DType.convert(product.count, from: .f32, $0.baseAddress!, to: n.dtype, out.pointer) }
            return out
        })
        for name in names { specs[name]!.preQuantScale = nil }
    }

    static func scalar(_ t: Tensor) throws -> Float {
        let v = try t.floats()
        guard v.count == 1 else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(t.name)\""], expected: "one value", found: "\(v.count) values")
        }
        return v[0]
    }
}
