import KilnCore

/// Quantized IR models built in test code with the DESIGN §4 formulas (the quantization passes are
/// separate plugins; format tests need quantized inputs without them).
///
/// ```
/// FP8 per-tensor:    s = amax/448,  q = fp8e4m3_saturating(w/s)          (f32 division)
/// INT8 per-channel:  s_c = amax_c/127,  q = clamp(round_half_even(w/s_c), −128, 127)
/// INT4 block (G):    s_b = amax_b/7,    q = clamp(round_half_even(w/s_b), −8, 7)
/// pre-quant p:       w ← w / p (per input column) before quantizing, so (x ⊙ p)·Wᵀ = x·W_origᵀ
/// ```
/// Works on Llama-family HF names (`model.layers.N.self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`).
public enum QuantizedFixture {
    public enum Algorithm: Sendable {
        /// `shareFused`: q/k/v and gate/up get one scale (the max), as the TensorRT-LLM layout needs.
        case fp8(shareFused: Bool = true, kvCache: Bool = true)
        case int8SQ
        /// `foldedNorms`: q/k/v and gate/up carry no pre-quant scale (it is folded into the norms, as the
        /// unified HF layout stores it); `w4a8`: static FP8 input scales too.
        case int4AWQ(group: Int, foldedNorms: Bool = false, w4a8: Bool = false)
    }

    static let projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

    /// Which group of modules reads the same input: 0 = q/k/v, 1 = o, 2 = gate/up, 3 = down.
    static func inputGroup(_ projection: String) -> Int {
        switch projection {
        case "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj": return 0
        case "self_attn.o_proj": return 1
        case "mlp.gate_proj", "mlp.up_proj": return 2
        default: return 3
        }
    }

    /// A new model with the decoder linears quantized (except projections listed in `skip`, e.g.
    /// `["mlp.down_proj"]`), KV-cache scales after each v_proj for FP8 with `kvCache`, and the record
    /// (excluded modules: the skipped ones in layer order, then lm_head).
    public static func quantize(_ model: Model, _ algorithm: Algorithm, skip: [String] = []) throws -> Model {
        var out: [Tensor] = []
        var excluded: [String] = []
        var norms: [String: [Float]] = [:]   // AWQ folded: norm name → pre-quant scale to multiply in
        for t in model.tensors {
            guard let (layer, projection) = parse(t.name), !skip.contains(projection) else {
                if let (_, projection) = parse(t.name), skip.contains(projection) {
                    excluded.append(String(t.name.dropLast(".weight".count)))
                }
                out.append(t)
                continue
            }
            let group = inputGroup(projection)
            var spec: QuantSpec
            let w = try t.floats()
            let (rows, cols) = (t.shape[0], t.shape[1])
            switch algorithm {
            case .fp8(let share, _):
                var amax = w.map(abs).max() ?? 0
                if share, group == 0 || group == 2 {
                    let siblings = projections.filter { inputGroup($0) == group }
                    amax = try siblings.compactMap { model["model.layers.\(layer).\($0).weight"] }.map { try $0.floats().map(abs).max() ?? 0 }.max() ?? amax
                }
                let s = amax / 448
                let q = w.map { FloatBits.f8e4m3fnSaturating(fromF32: $0 / s) }
                let input = share ? 0.02 * Float(layer + 1) * Float(group + 1) : 0.02 * Float(layer + 1) * Float(projections.firstIndex(of: projection)! + 1)
                spec = QuantSpec(format: .fp8e4m3, granularity: .perTensor, scale: scalar(t.name + ".scale", s),
                                 inputScale: scalar(t.name + ".input_scale", input))
                out.append(Tensor(name: t.name, dtype: .f8e4m3fn, shape: t.shape, storage: .owned(TensorBuffer(values: q)), quant: spec))
            case .int8SQ:
                let p = preQuant(layer: layer, group: group, count: cols)
                let ws = divide(w, by: p, cols: cols)
                var scales = [Float](repeating: 0, count: rows)
                var q = [Int8](repeating: 0, count: w.count)
                for r in 0..<rows {
                    let s = (ws[(r * cols)..<((r + 1) * cols)].map(abs).max() ?? 0) / 127
                    scales[r] = s
                    for c in 0..<cols { q[r * cols + c] = Int8(max(-128, min(127, (ws[r * cols + c] / s).rounded(.toNearestOrEven)))) }
                }
                spec = QuantSpec(format: .int8, granularity: .perChannel(axis: 0), scale: Tensor(name: t.name + ".scale", dtype: .f32, shape: [rows], values: scales),
                                 preQuantScale: Tensor(name: t.name + ".pre_quant_scale", dtype: .f32, shape: [cols], values: p),
                                 inputScale: scalar(t.name + ".input_scale", 0.05 * Float(layer + 1) * Float(group + 1)))
                out.append(Tensor(name: t.name, dtype: .i8, shape: t.shape, storage: .owned(TensorBuffer(values: q)), quant: spec))
            case .int4AWQ(let g, let folded, let w4a8):
                precondition(cols % g == 0, "\(t.name): \(cols) columns are not a multiple of the group size \(g)")
                let p = preQuant(layer: layer, group: group, count: cols)
                let ws = divide(w, by: p, cols: cols)
                let blocks = cols / g
                var scales = [Float](repeating: 0, count: rows * blocks)
                var q = [Int8](repeating: 0, count: w.count)
                for r in 0..<rows {
                    for b in 0..<blocks {
                        let base = r * cols + b * g
                        let s = (ws[base..<(base + g)].map(abs).max() ?? 0) / 7
                        scales[r * blocks + b] = s
                        for c in 0..<g { q[base + c] = Int8(max(-8, min(7, (ws[base + c] / s).rounded(.toNearestOrEven)))) }
                    }
                }
                let foldHere = folded && (group == 0 || group == 2)
                if foldHere { norms["model.layers.\(layer)." + (group == 0 ? "input_layernorm" : "post_attention_layernorm") + ".weight"] = p }
                spec = QuantSpec(format: .int4, granularity: .perBlock(axis: 1, size: g),
                                 scale: Tensor(name: t.name + ".scale", dtype: .f32, shape: [rows, blocks], values: scales),
                                 preQuantScale: foldHere ? nil : Tensor(name: t.name + ".pre_quant_scale", dtype: .f32, shape: [cols], values: p),
                                 inputScale: w4a8 ? scalar(t.name + ".input_scale", 0.03 * Float(layer + 1) * Float(group + 1)) : nil)
                out.append(Tensor(name: t.name, dtype: .i4, shape: t.shape, storage: .owned(TensorBuffer(values: Int4Packing.packIR(q))), quant: spec))
            }
            if case .fp8(_, true) = algorithm, projection == "self_attn.v_proj" {
                let base = "model.layers.\(layer).self_attn."
                out.append(scalar(base + "k_proj.k_scale", 1.0 + 0.125 * Float(layer)))
                out.append(scalar(base + "v_proj.v_scale", 1.0 + 0.25 * Float(layer)))
            }
        }
        out = try out.map { t in
            guard let p = norms[t.name] else { return t }
            let v = try t.floats()
            return Tensor(name: t.name, dtype: .f32, shape: t.shape, values: zip(v, p).map { $0 * $1 }).converted(to: t.dtype)
        }
        excluded.append("lm_head")
        let record: QuantizationRecord
        switch algorithm {
        case .fp8(_, let kv): record = QuantizationRecord(algorithm: "FP8", kvCacheAlgorithm: kv ? "FP8" : nil, excludedModules: excluded)
        case .int8SQ: record = QuantizationRecord(algorithm: "W8A8_SQ_PER_CHANNEL", excludedModules: excluded)
        case .int4AWQ(let g, _, let w4a8): record = QuantizationRecord(algorithm: w4a8 ? "W4A8_AWQ" : "W4A16_AWQ", groupSize: g, excludedModules: excluded)
        }
        let result = try Model(tensors: out, config: model.config, metadata: model.metadata, quantization: record,
                               provenance: model.provenance + ["QuantizedFixture \(algorithm)"], sourcePath: model.sourcePath)
        result.attachments = model.attachments
        return result
    }

    /// Every tensor as a test expects it back from a checkpoint: quantized weights dequantized (f32,
    /// QuantSpec.dequantize), everything else as is.
    public static func expected(_ model: Model) throws -> Model {
        let tensors = try model.tensors.map { t in try t.quant.map { try $0.dequantize(t) } ?? t }
        return try Model(tensors: tensors, config: model.config)
    }

    /// (layer, projection) of a decoder linear weight name.
    public static func parse(_ name: String) -> (Int, String)? {
        guard name.hasPrefix("model.layers."), name.hasSuffix(".weight") else { return nil }
        let rest = name.dropFirst("model.layers.".count).dropLast(".weight".count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]) else { return nil }
        let projection = String(rest[rest.index(after: dot)...])
        return projections.contains(projection) ? (layer, projection) : nil
    }

    /// A deterministic pre-quant scale in [0.5, 1.5) per (layer, input group), exactly representable.
    static func preQuant(layer: Int, group: Int, count: Int) -> [Float] {
        (0..<count).map { 0.5 + Float((layer * 131 + group * 37 + $0 * 17) % 64) / 64 }
    }

    static func divide(_ w: [Float], by p: [Float], cols: Int) -> [Float] {
        w.enumerated().map { $0.element / p[$0.offset % cols] }
    }

    static func scalar(_ name: String, _ v: Float) -> Tensor {
        Tensor(name: name, dtype: .f32, shape: [], values: [v])
    }
}
