import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// FP8 KV-cache fake quantization and per-token dynamic activation fake quantization, against
/// references computed on the inputs.
@Suite struct ExecutorQuantTests {
    /// `f32(e4m3_saturating(x / s)) · s`.
    static func fp8(_ x: Float, _ s: Float) -> Float {
        FloatBits.f32(fromF8E4M3FN: FloatBits.f8e4m3fnSaturating(fromF32: x / s)) * s
    }

    /// An attention node named as a Llama layer's, over q, k, v tables `[seq, heads·head_dim]`.
    static func attention(q: [Float], k: [Float], v: [Float], seq: Int, heads: Int, kvHeads: Int, headDim: Int,
                          extra: [Tensor], record: QuantizationRecord?) throws -> [Float] {
        var g = OpGraph(tables: ["tq": (q, [seq, heads * headDim]), "tk": (k, [seq, kvHeads * headDim]), "tv": (v, [seq, kvHeads * headDim])])
        g.weights += extra
        g.node("q", "Gather", ["tq", "input_ids"])
        g.node("k", "Gather", ["tk", "input_ids"])
        g.node("v", "Gather", ["tv", "input_ids"])
        g.node("model.layers.0.self_attn.attention", KilnOp.attention, ["q", "k", "v"], kiln: true,
               [("num_heads", .int(Int64(heads))), ("num_kv_heads", .int(Int64(kvHeads))), ("head_dim", .int(Int64(headDim)))])
        return try run(g, record: record)
    }

    static func run(_ g: OpGraph, record: QuantizationRecord?, ids: [[Int]]? = nil) throws -> [Float] {
        let graph = Graph(inputs: [ValueInfo(name: "input_ids")], outputs: [ValueInfo(name: g.nodes.last!.name)], nodes: g.nodes)
        let rows = g.weights.first { $0.name.hasPrefix("t") }!.shape[0]
        let model = try Model(tensors: g.weights, quantization: record)
        return try Executor(model: model, graph: graph).logits(ids ?? [Array(0..<rows)]).values
    }

    static func kvScales(_ k: Float, _ v: Float) -> [Tensor] {
        [Tensor(name: "model.layers.0.self_attn.k_proj.k_scale", dtype: .f32, shape: [], values: [k]),
         Tensor(name: "model.layers.0.self_attn.v_proj.v_scale", dtype: .f32, shape: [], values: [v])]
    }

    @Test func fp8KVCacheQuantizesKeysAndValuesAsStored() throws {
        let (seq, heads, kvHeads, hd) = (9, 4, 2, 8)
        var rng = SplitMix64(seed: 11)
        let q = OpGraph.random(&rng, seq * heads * hd, scale: 2)
        let k = OpGraph.random(&rng, seq * kvHeads * hd, scale: 3), v = OpGraph.random(&rng, seq * kvHeads * hd, scale: 1.5)
        // Scales below amax/448, so the largest values saturate at ±448·s.
        let sk: Float = 2.0 / 448, sv: Float = 1.0 / 448
        let record = QuantizationRecord(algorithm: "FP8", kvCacheAlgorithm: "FP8")
        let got = try Self.attention(q: q, k: k, v: v, seq: seq, heads: heads, kvHeads: kvHeads, headDim: hd,
                                     extra: Self.kvScales(sk, sv), record: record)
        let ref = try Self.attention(q: q, k: k.map { Self.fp8($0, sk) }, v: v.map { Self.fp8($0, sv) }, seq: seq, heads: heads,
                                     kvHeads: kvHeads, headDim: hd, extra: [], record: nil)
        #expect(got == ref)
        #expect(k.contains { abs($0) > 448 * sk }, "the test should exercise saturation")
        // Scales without an FP8 KV record are ignored.
        let plain = try Self.attention(q: q, k: k, v: v, seq: seq, heads: heads, kvHeads: kvHeads, headDim: hd, extra: [], record: nil)
        let ignored = try Self.attention(q: q, k: k, v: v, seq: seq, heads: heads, kvHeads: kvHeads, headDim: hd,
                                         extra: Self.kvScales(sk, sv), record: QuantizationRecord(algorithm: "FP8"))
        #expect(ignored == plain)
        #expect(got != plain)
    }

    @Test func fp8KVCacheDecodingMatchesFullForward() throws {
        let model = try SyntheticModel.llama()
        model.quantization = QuantizationRecord(algorithm: "FP8", kvCacheAlgorithm: "FP8")
        for layer in 0..<2 {
            model.set(Tensor(name: "model.layers.\(layer).self_attn.k_proj.k_scale", dtype: .f32, shape: [], values: [Float(0.004)]))
            model.set(Tensor(name: "model.layers.\(layer).self_attn.v_proj.v_scale", dtype: .f32, shape: [], values: [Float(0.002)]))
        }
        let ids = [1, 7, 300, 42, 9, 9, 120]
        let exec = try Executor(model: model)
        let full = try exec.forward([ids], cache: nil, lastOnly: true).values
        let cache = KVCache()
        _ = try exec.forward([Array(ids.dropLast())], cache: cache, lastOnly: true)
        let step = try exec.forward([[ids.last!]], cache: cache, lastOnly: true).values
        for (a, b) in zip(full, step) { #expect(abs(a - b) <= 1e-4 * max(1, abs(a))) }
        let unquantized = try SyntheticModel.llama()
        let plain = try Executor(model: unquantized).forward([ids], cache: nil, lastOnly: true).values
        #expect(plain != full)
    }

    @Test(arguments: [("FP8_PER_CHANNEL_PER_TOKEN", QuantSpec.Format.fp8e4m3), ("W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN", .int8)])
    func perTokenDynamicActivations(_ algorithm: String, _ format: QuantSpec.Format) throws {
        let (rows, k, n) = (4, 16, 6)
        var rng = SplitMix64(seed: 12)
        var x = OpGraph.random(&rng, rows * k, scale: 1)
        for r in 0..<rows { x[r * k + r] *= Float(10 * (r + 1)) }  // a different outlier per row
        for c in 0..<k { x[3 * k + c] = 0 }  // an all-zero row stays zero
        let w = OpGraph.random(&rng, n * k, scale: 1)
        let payload = format == .int8 ? TensorBuffer(values: w.map { Int8(clamping: Int($0 * 100)) })
                                      : TensorBuffer(values: w.map { FloatBits.f8e4m3fn(fromF32: $0) })
        let wq = w.map { format == .int8 ? Float(Int8(clamping: Int($0 * 100))) : FloatBits.f32(fromF8E4M3FN: FloatBits.f8e4m3fn(fromF32: $0)) }
        var g = OpGraph(tables: ["t": (x, [rows, k])])
        g.weights.append(Tensor(name: "w", dtype: format.payload, shape: [n, k], storage: .owned(payload),
                                quant: QuantSpec(format: format, granularity: .perTensor, scale: Tensor(name: "s", dtype: .f32, shape: [1], values: [Float(1)]))))
        g.node("x", "Gather", ["t", "input_ids"])
        g.node("y", KilnOp.linear, ["x", "w"], kiln: true)
        let got = try Self.run(g, record: QuantizationRecord(algorithm: algorithm))
        let weightOnly = try Self.run(g, record: QuantizationRecord(algorithm: format == .int8 ? "W8A8_SQ_PER_CHANNEL" : "FP8"))
        for r in 0..<rows {
            let row = Array(x[(r * k)..<((r + 1) * k)])
            let amax = row.map(abs).max()!
            let s = amax / (format == .int8 ? 127 : 448)
            let xq = row.map { v -> Float in
                guard amax > 0 else { return 0 }
                return format == .int8 ? min(max((v / s).rounded(.toNearestOrEven), -128), 127) * s : Self.fp8(v, s)
            }
            for o in 0..<n {
                let ref = (0..<k).reduce(0.0) { $0 + Double(xq[$1]) * Double(wq[o * k + $1]) }
                let plain = (0..<k).reduce(0.0) { $0 + Double(row[$1]) * Double(wq[o * k + $1]) }
                #expect(abs(Double(got[r * n + o]) - ref) < 1e-4 * max(1, abs(ref)))
                #expect(abs(Double(weightOnly[r * n + o]) - plain) < 1e-4 * max(1, abs(plain)))
            }
        }
        #expect(got != weightOnly)
    }
}
