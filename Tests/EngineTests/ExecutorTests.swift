import Foundation
import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// Executor ops against scalar f64 references, the KV cache against full-sequence logits,
/// fake quantization, observers and errors.
@Suite struct ExecutorTests {
    @Test func rmsNormMatchesScalarReference() throws {
        let (rows, cols) = (5, 24)
        var rng = SplitMix64(seed: 1)
        let table = OpGraph.random(&rng, rows * cols, scale: 3), weight = OpGraph.random(&rng, cols, scale: 1)
        var g = OpGraph(tables: ["t": (table, [rows, cols]), "w": (weight, [cols])])
        g.node("x", "Gather", ["t", "input_ids"])
        g.node("y", KilnOp.rmsNorm, ["x", "w"], kiln: true, [("epsilon", .float(1e-5))])
        let got = try g.run([[0, 1, 2, 3, 4]])
        for r in 0..<rows {
            let x = table[(r * cols)..<((r + 1) * cols)].map(Double.init)
            let inv = 1 / (x.map { $0 * $0 }.reduce(0, +) / Double(cols) + 1e-5).squareRoot()
            for c in 0..<cols {
                let ref = x[c] * inv * Double(weight[c])
                #expect(abs(Double(got[r * cols + c]) - ref) <= 1e-6 * max(1, abs(ref)))
            }
        }
    }

    @Test(arguments: [
        RopeParameters(theta: 10000),
        RopeParameters(theta: 500000, kind: .linear, factor: 4),
        RopeParameters(theta: 10000, kind: .llama3, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 1024),
    ])
    func ropeMatchesScalarReference(_ rope: RopeParameters) throws {
        let (heads, headDim, seq) = (2, 16, 40)
        let cols = heads * headDim
        let ref = OpGraph.referenceInverseFrequencies(rope, headDim: headDim)
        for (a, b) in zip(rope.inverseFrequencies(headDim: headDim), ref) { #expect(abs(Double(a) - b) <= 2e-7 * b) }
        if rope.kind == .llama3 {  // all three bands are exercised: unscaled, smoothed, scaled
            let scaled = zip(rope.inverseFrequencies(headDim: headDim), RopeParameters(theta: rope.theta).inverseFrequencies(headDim: headDim))
            #expect(scaled.map { $0 == $1 ? 0 : ($0 * 8 == $1 ? 2 : 1) } == [0, 0, 0, 0, 1, 2, 2, 2])
        }
        var rng = SplitMix64(seed: 2)
        let table = OpGraph.random(&rng, seq * cols, scale: 1)
        var g = OpGraph(tables: ["t": (table, [seq, cols])])
        g.node("x", "Gather", ["t", "input_ids"])
        g.node("y", KilnOp.rope, ["x", "position_ids"], kiln: true,
               [("num_heads", .int(Int64(heads))), ("head_dim", .int(Int64(headDim)))] + rope.attributes)
        let got = try g.run([Array(0..<seq)])
        let half = headDim / 2
        for p in 0..<seq {
            for h in 0..<heads {
                let base = p * cols + h * headDim
                for i in 0..<half {
                    let angle = ref[i] * Double(p)
                    let (x1, x2) = (Double(table[base + i]), Double(table[base + i + half]))
                    #expect(abs(Double(got[base + i]) - (x1 * cos(angle) - x2 * sin(angle))) < 2e-5)
                    #expect(abs(Double(got[base + i + half]) - (x2 * cos(angle) + x1 * sin(angle))) < 2e-5)
                }
            }
        }
    }

    /// `variant`: "masked" adds the attention_mask input (bidirectional attention over a padded batch
    /// sees each sequence's real keys only); "fused" feeds one [q | k | v] input (GPT-2's c_attn).
    @Test(arguments: [(true, 0, ""), (true, 3, ""), (false, 0, ""), (false, 0, "masked"), (true, 0, "fused"), (false, 0, "fused masked")])
    func groupedQueryAttentionMatchesNaiveReference(causal: Bool, window: Int, variant: String) throws {
        let (heads, kvHeads, hd, vocab) = (4, 2, 8, 16)
        var rng = SplitMix64(seed: 3)
        let qt = OpGraph.random(&rng, vocab * heads * hd, scale: 2)
        let kt = OpGraph.random(&rng, vocab * kvHeads * hd, scale: 2), vt = OpGraph.random(&rng, vocab * kvHeads * hd, scale: 1)
        var g = OpGraph(tables: ["qt": (qt, [vocab, heads * hd]), "kt": (kt, [vocab, kvHeads * hd]), "vt": (vt, [vocab, kvHeads * hd])])
        var inputs = ["q", "k", "v"]
        if variant.contains("fused") {
            let rows = (0..<vocab).map { r in Array(qt[(r * heads * hd)..<((r + 1) * heads * hd)]) + Array(kt[(r * kvHeads * hd)..<((r + 1) * kvHeads * hd)])
                + Array(vt[(r * kvHeads * hd)..<((r + 1) * kvHeads * hd)]) }
            g.weights.append(Tensor(name: "qkvt", dtype: .f32, shape: [vocab, (heads + 2 * kvHeads) * hd], values: rows.flatMap { $0 }))
            g.node("qkv", "Gather", ["qkvt", "input_ids"])
            inputs = ["qkv"]
        } else {
            for (v, t) in [("q", "qt"), ("k", "kt"), ("v", "vt")] { g.node(v, "Gather", [t, "input_ids"]) }
        }
        if variant.contains("masked") { inputs.append("attention_mask") }
        var attrs: [(name: String, value: AttributeValue)] = [("num_heads", .int(4)), ("num_kv_heads", .int(2)), ("head_dim", .int(8)),
                                                              ("scale", .float(0.3)), ("causal", .int(causal ? 1 : 0))]
        if window > 0 { attrs.append(("sliding_window", .int(Int64(window)))) }
        g.node("y", KilnOp.attention, inputs, kiln: true, attrs)
        // Without a mask, bidirectional attention would see the padding: one sequence only then.
        let batch = causal || variant.contains("masked") ? [[3, 1, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8]] : [[3, 1, 4, 1, 5, 9, 2]]
        let got = try g.run(batch)
        let seq = batch.map(\.count).max()!
        for (b, ids) in batch.enumerated() {
            for i in 0..<ids.count {
                for h in 0..<heads {
                    let kh = h / (heads / kvHeads)
                    let keys = (0..<ids.count).filter { j in (!causal || j <= i) && (window == 0 || i - j < window) }
                    let scores = keys.map { j in 0.3 * (0..<hd).reduce(0.0) { $0 + Double(qt[ids[i] * heads * hd + h * hd + $1]) * Double(kt[ids[j] * kvHeads * hd + kh * hd + $1]) } }
                    let m = scores.max()!, e = scores.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
                    for d in 0..<hd {
                        let ref = zip(keys, e).reduce(0.0) { $0 + $1.1 / z * Double(vt[ids[$1.0] * kvHeads * hd + kh * hd + d]) }
                        #expect(abs(Double(got[(b * seq + i) * heads * hd + h * hd + d]) - ref) < 1e-5)
                    }
                }
            }
        }
    }

    /// LayerNormalization (torch.nn.LayerNorm: biased variance), kiln.Gelu exact and tanh, Tanh, against f64 formulas.
    @Test(arguments: ["layernorm", "gelu", "gelu_tanh", "tanh"])
    func encoderOpsMatchScalarReference(_ op: String) throws {
        let (vocab, cols) = (6, 40)
        var rng = SplitMix64(seed: 9)
        let table = OpGraph.random(&rng, vocab * cols, scale: 3), w = OpGraph.random(&rng, cols, scale: 1.5), b = OpGraph.random(&rng, cols, scale: 0.5)
        var g = OpGraph(tables: ["t": (table, [vocab, cols]), "ln.weight": (w, [cols]), "ln.bias": (b, [cols])])
        g.node("x", "Gather", ["t", "input_ids"])
        switch op {
        case "layernorm": g.node("y", "LayerNormalization", ["x", "ln.weight", "ln.bias"], [("axis", .int(-1)), ("epsilon", .float(1e-5))])
        case "tanh": g.node("y", "Tanh", ["x"])
        default: g.node("y", KilnOp.gelu, ["x"], kiln: true, [("approximate", .string(Array((op == "gelu" ? "none" : "tanh").utf8)))])
        }
        let ids = [3, 0, 5, 1]
        let got = try g.run([ids])
        for (r, id) in ids.enumerated() {
            let x = (0..<cols).map { Double(table[id * cols + $0]) }
            let mean = x.reduce(0, +) / Double(cols), variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(cols)
            for c in 0..<cols {
                let v = x[c]
                let ref: Double = switch op {
                case "layernorm": (v - mean) / (variance + 1e-5).squareRoot() * Double(w[c]) + Double(b[c])
                case "gelu": 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
                case "gelu_tanh": 0.5 * v * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
                default: Foundation.tanh(v)
                }
                #expect(abs(Double(got[r * cols + c]) - ref) < 2e-6 * max(1, abs(ref)), "\(op) row \(r) col \(c)")
            }
        }
    }

    @Test func kvCacheStepsEqualFullSequenceLogits() throws {
        let exec = try Executor(model: try SyntheticModel.llama())
        let ids = [1, 17, 300, 42, 42, 7, 511, 0, 99, 250, 3, 18]
        let full = try exec.logits([ids])
        let first = try exec.prefill(Array(ids.prefix(5)))
        #expect(EngineFixtures.maxRelativeError(first, full.row(0, 4), rowLength: full.vocab) < 1e-5)
        for i in 5..<ids.count {
            let row = try exec.step(ids[i])
            #expect(EngineFixtures.maxRelativeError(row, full.row(0, i), rowLength: full.vocab) < 1e-5)
        }
        #expect(exec.session?.length == ids.count)
        // A batch of two through an explicit cache, in two pieces.
        let other = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        let cache = KVCache(batch: 2, capacity: 4)
        _ = try exec.forward([Array(ids.prefix(7)), Array(other.prefix(7))], cache: cache, lastOnly: false)
        let rest = try exec.forward([Array(ids.dropFirst(7)), Array(other.dropFirst(7))], cache: cache, lastOnly: false)
        #expect(EngineFixtures.maxRelativeError(rest.row(0, 4), full.row(0, 11), rowLength: full.vocab) < 1e-5)
        let otherFull = try exec.logits([other])
        #expect(EngineFixtures.maxRelativeError(rest.row(1, 0), otherFull.row(0, 7), rowLength: full.vocab) < 1e-5)
    }

    @Test func paddedBatchEqualsSequencesAlone() throws {
        let exec = try Executor(model: try SyntheticModel.llama())
        let a = [1, 5, 9, 200, 31, 4, 4, 8], b = [1, 77, 3]
        let both = try exec.logits([a, b])
        #expect(both.seq == 8 && both.lengths == [8, 3])
        let (la, lb) = (try exec.logits([a]), try exec.logits([b]))
        for i in 0..<8 { #expect(EngineFixtures.maxRelativeError(both.row(0, i), la.row(0, i), rowLength: 512) < 1e-6) }
        for i in 0..<3 { #expect(EngineFixtures.maxRelativeError(both.row(1, i), lb.row(0, i), rowLength: 512) < 1e-6) }
        let last = try exec.forward([a, b], cache: nil, lastOnly: true)
        #expect(last.seq == 1)
        #expect(EngineFixtures.maxRelativeError(last.row(1, 0), lb.row(0, 2), rowLength: 512) < 1e-6)
    }

    @Test func greedyGenerationFollowsArgmax() throws {
        let exec = try Executor(model: try SyntheticModel.llama())
        var ids = [1, 100, 200]
        let generated = try exec.generate(prompt: ids, maxNewTokens: 6)
        for token in generated {
            let logits = try exec.logits([ids])
            #expect(token == logits.argmax(0, ids.count - 1))
            ids.append(token)
        }
        #expect(try exec.generate(prompt: [1, 100, 200], maxNewTokens: 6, eos: generated[0]) == [generated[0]])
    }

    @Test func quantizedWeightsRunDequantized() throws {
        // int8 per-channel payload vs the same values stored as f32: identical logits.
        let model = try SyntheticModel.llama()
        let name = "model.layers.0.mlp.up_proj.weight"
        let (q, s) = OpGraph.quantizeInt8(try model[name]!.floats(), rows: 172, cols: 64)
        let quantized = try SyntheticModel.llama()
        quantized.set(Tensor(name: name, dtype: .i8, shape: [172, 64], storage: .owned(TensorBuffer(values: q)),
                             quant: QuantSpec(format: .int8, granularity: .perChannel(axis: 0),
                                              scale: Tensor(name: name + "_scale", dtype: .f32, shape: [172], values: s))))
        let dequantized = try SyntheticModel.llama()
        dequantized.set(Tensor(name: name, dtype: .f32, shape: [172, 64], values: (0..<(172 * 64)).map { Float(q[$0]) * s[$0 / 64] }))
        let ids = [[1, 2, 3, 400, 5]]
        #expect(try Executor(model: quantized).logits(ids).values == Executor(model: dequantized).logits(ids).values)
    }

    @Test(arguments: [QuantSpec.Format.fp8e4m3, .int8])
    func staticInputScaleFakeQuantizesActivations(_ format: QuantSpec.Format) throws {
        let (rows, k, n) = (3, 8, 5)
        var rng = SplitMix64(seed: 4)
        let x = OpGraph.random(&rng, rows * k, scale: 4), w = OpGraph.random(&rng, n * k, scale: 1), p = OpGraph.random(&rng, k, scale: 0.5).map { $0 + 1 }
        let inputScale: Float = format == .int8 ? 4.0 / 127 : 4.0 / 448
        var g = OpGraph(tables: ["t": (x, [rows, k])])
        let payload = format == .int8 ? TensorBuffer(values: w.map { Int8(clamping: Int($0 * 100)) })
                                      : TensorBuffer(values: w.map { FloatBits.f8e4m3fn(fromF32: $0) })
        g.weights.append(Tensor(name: "w", dtype: format.payload, shape: [n, k], storage: .owned(payload),
                                quant: QuantSpec(format: format, granularity: .perTensor, scale: Tensor(name: "s", dtype: .f32, shape: [1], values: [Float(1)]),
                                                 preQuantScale: Tensor(name: "p", dtype: .f32, shape: [k], values: p),
                                                 inputScale: Tensor(name: "a", dtype: .f32, shape: [1], values: [inputScale]))))
        g.node("x", "Gather", ["t", "input_ids"])
        g.node("y", KilnOp.linear, ["x", "w"], kiln: true)
        let got = try g.run([[0, 1, 2]])
        let wq = w.map { format == .int8 ? Float(Int8(clamping: Int($0 * 100))) : FloatBits.f32(fromF8E4M3FN: FloatBits.f8e4m3fn(fromF32: $0)) }
        for r in 0..<rows {
            let xq = (0..<k).map { c -> Float in
                let v = x[r * k + c] * p[c] / inputScale
                let q = format == .int8 ? min(max(v.rounded(.toNearestOrEven), -128), 127) : FloatBits.f32(fromF8E4M3FN: FloatBits.f8e4m3fnSaturating(fromF32: v))
                return q * inputScale
            }
            for o in 0..<n {
                let ref = (0..<k).reduce(0.0) { $0 + Double(xq[$1]) * Double(wq[o * k + $1]) }
                #expect(abs(Double(got[r * n + o]) - ref) < 1e-4 * max(1, abs(ref)))
            }
        }
    }

    @Test func linearInputStatsObservesEveryLinear() throws {
        let model = try SyntheticModel.llama()
        let exec = try Executor(model: model)
        let stats = LinearInputStats()
        var captured: [Float] = [], rows = 0, padded = 0, inputs: [String: String] = [:]
        exec.linearObserver = { event in
            stats.observe(event)
            inputs[event.node] = event.inputName
            if event.node == "model.layers.0.self_attn.q_proj" {
                captured = Array(event.input)
                rows = event.rows
                padded = (0..<event.rows).filter { event.isPadding(row: $0) }.count
            }
        }
        let batch = [[1, 9, 44, 300, 2, 7, 7], [1, 500, 3, 3]]
        _ = try exec.logits(batch)
        #expect(stats.layers.count == 2 * 7 + 1 && stats.layers["lm_head"] != nil)
        #expect(rows == 14 && padded == 3)
        #expect(inputs["model.layers.1.self_attn.k_proj"] == "model.layers.1.input_layernorm")
        #expect(inputs["model.layers.1.self_attn.o_proj"] == "model.layers.1.self_attn.attention")
        #expect(inputs["lm_head"] == "model.norm")
        let s = try #require(stats.layers["model.layers.0.self_attn.q_proj"])
        #expect(s.count == 11)
        // The q_proj input is input_layernorm(embedding) of the real tokens.
        let embed = try model["model.embed_tokens.weight"]!.floats(), norm = try model["model.layers.0.input_layernorm.weight"]!.floats()
        var absMax = [Float](repeating: 0, count: 64), sum = [Double](repeating: 0, count: 64)
        for (b, ids) in batch.enumerated() {
            for (i, id) in ids.enumerated() {
                let x = embed[(id * 64)..<(id * 64 + 64)].map(Double.init)
                let inv = 1 / (x.map { $0 * $0 }.reduce(0, +) / 64 + 1e-5).squareRoot()
                for c in 0..<64 {
                    let v = x[c] * inv * Double(norm[c])
                    #expect(abs(Double(captured[(b * 7 + i) * 64 + c]) - v) < 1e-5)
                    absMax[c] = max(absMax[c], Float(abs(v)))
                    sum[c] += abs(v)
                }
            }
        }
        for c in 0..<64 {
            #expect(abs(s.absMax[c] - absMax[c]) < 1e-5)
            #expect(abs(Double(s.meanAbs[c]) - sum[c] / 11) < 1e-5)
        }
    }

    @Test func resultsDoNotDependOnTheThreadCount() throws {
        var shape = SyntheticModel.LlamaShape()
        shape.hidden = 128
        shape.intermediate = 320
        let exec = try Executor(model: try SyntheticModel.llama(shape))
        var rng = SplitMix64(seed: 21)
        let batch = (0..<3).map { _ in (0..<40).map { _ in Int(rng.next() % 512) } }
        let saved = Executor.threads
        defer { Executor.threads = saved }
        Executor.threads = 1
        let one = try exec.logits(batch).values
        let pplOne = try Perplexity.evaluate(exec, ids: batch.flatMap { $0 }, seqLen: 32, bosId: 1)
        Executor.threads = 3
        #expect(try exec.logits(batch).values == one)
        #expect(try Perplexity.evaluate(exec, ids: batch.flatMap { $0 }, seqLen: 32, bosId: 1).nll == pplOne.nll)
    }

    @Test func errorsSayWhatAndWhere() throws {
        let exec = try Executor(model: try SyntheticModel.llama())
        #expect(EngineFixtures.errorText { try exec.step(3) } == "generation: step before prefill: start a session with prefill(_:)")
        #expect(EngineFixtures.errorText { try exec.logits([[1, 600]]) } == "input_ids: expected ids in 0..<512, found 600")
        #expect(EngineFixtures.errorText { try exec.logits([[]]) }
            == "input_ids: expected at least one sequence of at least one token, found an empty one")
        var g = OpGraph(tables: ["t": ([1, 2], [1, 2])])
        g.node("x", "Gather", ["t", "input_ids"])
        g.node("c", "Conv", ["x", "t"])
        #expect(EngineFixtures.errorText { try g.run([[0]]) } == "graph › node \"c\": op Conv is not supported by the CPU executor")
        var h = OpGraph(tables: ["t": ([1, 2], [1, 2])])
        h.node("y", "Add", ["t", "nope"])
        #expect(EngineFixtures.errorText { try h.run([[0]]) }
            == "graph › node \"y\" › input 1: expected a graph input, an earlier node's output or a weight, found unknown value \"nope\"")
    }
}

/// A small graph over named f32 tables, run by the executor; the last node's output is the result.
struct OpGraph {
    var weights: [Tensor] = []
    var nodes: [Node] = []

    init(tables: [String: ([Float], [Int])]) {
        for (name, (values, dims)) in tables.sorted(by: { $0.key < $1.key }) {
            weights.append(Tensor(name: name, dtype: .f32, shape: Shape(dims), values: values))
        }
    }

    mutating func node(_ name: String, _ op: String, _ inputs: [String], kiln: Bool = false,
                       _ attributes: [(name: String, value: AttributeValue)] = []) {
        nodes.append(Node(name: name, opType: op, domain: kiln ? KilnOp.domain : "", inputs: inputs, outputs: [name], attributes: attributes))
    }

    /// The last node's output for `ids`, flattened `[batch · seq, cols]`.
    func run(_ ids: [[Int]]) throws -> [Float] {
        let graph = Graph(inputs: [ValueInfo(name: "input_ids")], outputs: [ValueInfo(name: nodes.last!.name)], nodes: nodes)
        return try Executor(model: try Model(tensors: weights), graph: graph).logits(ids).values
    }

    static func random(_ rng: inout SplitMix64, _ n: Int, scale: Float) -> [Float] {
        (0..<n).map { _ in scale * rng.nextSigned() }
    }

    /// transformers' inverse frequencies, in f64.
    static func referenceInverseFrequencies(_ r: RopeParameters, headDim: Int) -> [Double] {
        let base = (0..<(headDim / 2)).map { 1 / Foundation.pow(r.theta, Double(2 * $0) / Double(headDim)) }
        switch r.kind {
        case .default: return base
        case .linear: return base.map { $0 / r.factor }
        case .llama3:
            let old = Double(r.originalMaxPositions)
            return base.map { f in
                let wavelen = 2 * Double.pi / f
                if wavelen < old / r.highFreqFactor { return f }
                if wavelen > old / r.lowFreqFactor { return f / r.factor }
                let s = (old / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor)
                return (1 - s) * f / r.factor + s * f
            }
        }
    }

    /// Symmetric int8 per-row quantization: payload and scales.
    static func quantizeInt8(_ w: [Float], rows: Int, cols: Int) -> ([Int8], [Float]) {
        var q = [Int8](repeating: 0, count: w.count), s = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            let amax = w[(r * cols)..<((r + 1) * cols)].map(abs).max()!
            s[r] = amax / 127
            for c in 0..<cols { q[r * cols + c] = Int8(max(-128, min(127, (w[r * cols + c] / s[r]).rounded(.toNearestOrEven)))) }
        }
        return (q, s)
    }
}
