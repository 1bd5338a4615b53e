import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// A calibration service for pass tests: deterministic synthetic activations per linear input, no engine.
///
/// Every group of linears reading the same input (``LinearTopology``) gets `rows` rows drawn from
/// SplitMix64 seeded by the group's first weight name; channel j has magnitude `1 + 10·[j % 13 == 0]`
/// (a few outlier channels, as real LLM activations have). K/V maxima are `3 + layer` and `1.5 + layer/2`.
/// `overrides` replaces a linear's per-channel maxima. XᵀX (f64) when the request asks for `hessian`.
/// Requests are recorded.
final class FakeCalibration: CalibrationService {
    let rows: Int
    var overrides: [String: [Float]] = [:]
    /// Captured-row generators by weight name (default: the synthetic rows above).
    var inputs: [String: [Float]] = [:]
    private(set) var requests: [CalibrationRequest] = []

    init(rows: Int = 96) { self.rows = rows }

    /// The synthetic input rows `[rows, cols]` of the group whose first weight is `first`.
    static func activations(_ first: String, rows: Int, cols: Int) -> [Float] {
        var seed: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in first.utf8 { seed = (seed ^ UInt64(b)) &* 0x100_0000_01B3 }
        var rng = SplitMix64(seed: seed)
        return (0..<(rows * cols)).map { i in rng.nextSigned() * (i % cols % 13 == 0 ? 11 : 1) }
    }

    /// XᵀX in f64, row-major `[cols, cols]`, of rows `x` (`[n, cols]`).
    static func gram(_ x: [Float], cols: Int) -> [Double] {
        var h = [Double](repeating: 0, count: cols * cols)
        for r in 0..<(x.count / cols) {
            for i in 0..<cols where x[r * cols + i] != 0 {
                let xi = Double(x[r * cols + i])
                for j in 0..<cols { h[i * cols + j] += xi * Double(x[r * cols + j]) }
            }
        }
        return h
    }

    func calibrate(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> CalibrationStatistics {
        requests.append(request)
        let topology = try LinearTopology.llama(model)
        let stats = CalibrationStatistics(tokens: rows)
        for group in topology.groups where group.role != "lm_head" {
            let cols = model[group.weights[0]]!.shape[1]
            let x = inputs[group.weights[0]] ?? FakeCalibration.activations(group.weights[0], rows: rows, cols: cols)
            let n = x.count / cols
            for w in group.weights where request.only?.contains(w) ?? true {
                let s = LinearStatistics(weightName: w, inputChannels: cols)
                for r in 0..<n {
                    for j in 0..<cols {
                        s.inputAbsMax[j] = max(s.inputAbsMax[j], abs(x[r * cols + j]))
                        s.inputMeanAbs[j] += abs(x[r * cols + j]) / Float(n)
                    }
                }
                if let o = overrides[w] { s.inputAbsMax = o }
                s.tokens = n
                if request.captureRows > 0 { s.capturedInputs = Array(x[0..<(min(n, request.captureRows) * cols)]) }
                if request.hessian { s.hessian = FakeCalibration.gram(x, cols: cols) }
                stats.linears[w] = s
            }
        }
        if request.kvCache {
            for layer in 0..<topology.layerCount {
                stats.kvAbsMax["model.layers.\(layer).self_attn"] = (3 + Float(layer), 1.5 + Float(layer) / 2)
            }
        }
        return stats
    }
}

/// Loading passes through the host, running them, and reading results.
enum PassTest {
    /// The pass called `name`, as `kiln` finds it (plugins beside the test executable).
    static func pass(_ name: String) throws -> any ModelPass {
        guard let p = TestEnvironment.plugins.passes.first(where: { $0.name == name }) else {
            throw KilnError(.plugin, "no pass \"\(name)\" among \(TestEnvironment.plugins.passes.map(\.name))")
        }
        return p
    }

    /// Run pass `name` with `options` (plus `calib` unless given) and `service`.
    static func run(_ name: String, _ model: Model, _ options: [String: String] = [:],
                    service: CalibrationService? = FakeCalibration()) throws -> Model {
        var o = options
        if o["calib"] == nil { o["calib"] = "calib.txt" }
        return try pass(name).run(model, context: KilnContext(options: o, calibration: service))
    }

    /// A synthetic Llama (hidden 64, 8 heads / 4 KV heads, intermediate 128, 2 layers).
    static func llama(tied: Bool = true, dtype: DType = .f32) throws -> Model {
        var s = SyntheticModel.LlamaShape()
        s.hidden = 64
        s.intermediate = 128
        s.layers = 2
        s.tiedEmbeddings = tied
        return try SyntheticModel.llama(s, dtype: dtype)
    }

    /// Every tensor's name, dtype, shape, bytes and quant spec bytes, for byte-identity checks.
    static func fingerprint(_ model: Model) throws -> [String] {
        try model.tensors.map { t in
            var parts = ["\(t.name) \(t.dtype) \(t.shape)", "\(try ModelDiff.bytes(t))"]
            if let q = t.quant {
                parts.append("\(q.format) \(q.granularity) \(try ModelDiff.bytes(q.scale))")
                parts.append(try q.inputScale.map { "\(try ModelDiff.bytes($0))" } ?? "-")
                parts.append(try q.preQuantScale.map { "\(try ModelDiff.bytes($0))" } ?? "-")
            }
            return parts.joined(separator: " | ")
        }
    }

    /// The error a throwing call raises, as a KilnError.
    static func error(_ body: () throws -> Void) -> KilnError? {
        do {
            try body()
            return nil
        } catch {
            return error as? KilnError
        }
    }

    /// The first linear of each input group (q, o, gate, down per layer): what passes ask calibration for.
    static func representatives(layers: Int = 2) -> [String] {
        (0..<layers).flatMap { l in
            ["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"].map { name(l, $0 + ".weight") }
        }
    }

    /// `model.layers.L.` + `suffix`.
    static func name(_ layer: Int, _ suffix: String) -> String { "model.layers.\(layer).\(suffix)" }

    /// Decoder linear weight names of `layers` layers, in layer order.
    static func linears(layers: Int = 2) -> [String] {
        (0..<layers).flatMap { l in
            ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"].map { name(l, $0 + ".weight") }
        }
    }
}
