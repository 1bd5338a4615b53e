import KilnCore

/// The `fp8` pass: FP8 E4M3 weights and activations (W8A8) for Llama-family models, optionally
/// with an FP8 KV cache.
///
/// ```
/// weights (per-tensor):   s_w = amax(|W|) / 448,   q = e4m3_saturating(round_src(W / s_w))   (FP8Weights)
/// activations (static):   s_x = A / 448, A from calibration (max | percentile | mse; ActivationRange)
/// KV cache (fp8):         k_scale = amax(|K|) / 448,  v_scale = amax(|V|) / 448  (K after RoPE)
/// alternative:            s_w[c] = amax(|W[c, :]|) / 448 per output row, dynamic per-token activations
/// ```
///
/// Options (kebab-case, as the CLI flags):
/// - `calib` FILE: calibration text (required unless activations are dynamic and there is no KV cache);
///   `calib-samples` N (default 128), `calib-seq-len` L (default 512).
/// - `activation-calibration`: `max` (default) | `percentile` | `mse`; `percentile` P (default 99.99,
///   in 50...100); `capture-rows` R: input rows kept per linear for percentile / mse (default 512).
/// - `kv-cache`: `none` (default) | `fp8`.
/// - `weight-granularity`: `per-tensor` (default) | `per-channel`; `activation`: `static` (default) |
///   `dynamic`. Supported pairs: per-tensor + static (`FP8`), per-channel + dynamic (`FP8_PER_CHANNEL_PER_TOKEN`).
/// - `exclude`: comma-separated globs of modules kept in high precision (lm_head always is).
/// - `force`: re-quantize an already quantized model (dequantized first).
///
/// Output: each selected linear weight becomes an `f8e4m3fn` tensor of the same name and shape whose
/// ``QuantSpec`` holds `scale` (f32 `[1]`, or `[out]` per-channel, named `<weight>.scale`) and
/// `inputScale` (f32 `[1]`, `<weight>.input_scale`; nil for dynamic activations). With `kv-cache fp8`,
/// f32 `[]` tensors `model.layers.N.self_attn.k_proj.k_scale` and `….v_proj.v_scale` follow each layer's
/// v_proj weight. The record: algorithm `FP8` / `FP8_PER_CHANNEL_PER_TOKEN`, kv `FP8` or nil,
/// excluded modules (module names in layer order, then `lm_head`).
final class FP8Pass: ModelPass {
    let name = "fp8"
    let summary = "FP8 E4M3 W8A8: per-tensor weight scales, calibrated static activation scales, optional FP8 KV cache (Llama family)"

    /// Option names this pass reads.
    static let optionNames = ["calib", "calib-samples", "calib-seq-len", "activation-calibration", "percentile",
                              "capture-rows", "kv-cache", "weight-granularity", "activation", "exclude", "force"]

    var capabilities: [String] {
        ["fp8e4m3", "w8a8", "kv-cache-fp8", "per-channel-per-token", "llama", "mistral", "qwen2"] + FP8Pass.optionNames.map { "--" + $0 }
    }

    /// Validated options.
    struct Config {
        var perChannel = false
        var staticActivations = true
        var calibration = ActivationCalibration.max
        var percentile: Double = 99.99
        var captureRows = 512
        var kvCache = false
        var exclude: [String] = []
        var force = false

        init(_ o: PassOptions) throws {
            perChannel = try o.choice("weight-granularity", ["per-tensor", "per-channel"], default: "per-tensor") == "per-channel"
            staticActivations = try o.choice("activation", ["static", "dynamic"], default: "static") == "static"
            guard perChannel != staticActivations else {
                throw KilnError(.unsupported, path: ["fp8 --weight-granularity"],
                                "\(perChannel ? "per-channel" : "per-tensor") weights with \(staticActivations ? "static" : "dynamic") activations is not supported; use per-tensor + static (FP8) or per-channel + dynamic (FP8_PER_CHANNEL_PER_TOKEN)")
            }
            calibration = ActivationCalibration(rawValue: try o.choice("activation-calibration", ActivationCalibration.allCases.map(\.rawValue), default: "max"))!
            percentile = Double(try o.float("percentile", default: 99.99, in: 50...100))
            captureRows = try o.int("capture-rows", default: 512, in: 1...1_000_000)
            kvCache = try o.choice("kv-cache", ["none", "fp8"], default: "none") == "fp8"
            exclude = o.list("exclude")
            force = try o.flag("force")
        }

        var needsCalibration: Bool { staticActivations || kvCache }
        var needsRows: Bool { staticActivations && calibration != .max }
        var algorithm: String { perChannel ? "FP8_PER_CHANNEL_PER_TOKEN" : "FP8" }
    }

    func run(_ input: Model, context: KilnContext) throws -> Model {
        let options = PassOptions(pass: name, context.options)
        let config = try Config(options)
        let model = try PassSupport.floatModel(input, pass: name, force: config.force)
        let topology = try PassSupport.llamaTopology(model, pass: name)
        let selection = LinearSelection(topology: topology, patterns: config.exclude)
        for p in selection.unmatchedPatterns { PassSupport.warn("\(name): --exclude pattern \"\(p)\" matches no linear layer") }

        var stats: CalibrationStatistics?
        if config.needsCalibration {
            // Linears of a group read the same input: one representative each is enough.
            let only = topology.groups.compactMap { $0.weights.first(where: selection.quantized.contains) }
            stats = try options.calibrate(model, context: context) { r in
                r.only = only
                r.captureRows = config.needsRows ? config.captureRows : 0
                r.kvCache = config.kvCache
            }
        }

        // Activation scales per input group, then the weights.
        var replaced: [String: Tensor] = [:]
        let work = topology.groups.filter { $0.weights.contains(where: selection.quantized.contains) }
        for (i, group) in work.enumerated() {
            let members = group.weights.filter(selection.quantized.contains)
            var inputScale: Float?
            if config.staticActivations, let stats {
                let observed = members.compactMap { stats.linears[$0] }
                guard !observed.isEmpty else {
                    throw KilnError(.internal, path: ["tensor \"\(members[0])\""], "calibration returned no statistics for this linear")
                }
                inputScale = ActivationRange.scale(amax: try ActivationRange.amax(config.calibration, stats: observed, percentile: config.percentile))
            }
            for w in members {
                guard let t = model[w] else { continue }
                replaced[w] = try FP8Weights.quantize(t, perChannel: config.perChannel, inputScale: inputScale)
            }
            context.progress?.update(label: "fp8", done: i + 1, total: work.count)
        }

        let kvScales = config.kvCache ? try kvTensors(topology, model: model, stats: stats!) : [:]
        var tensors: [Tensor] = []
        for t in model.tensors {
            tensors.append(replaced[t.name] ?? t)
            tensors += kvScales[t.name] ?? []
        }
        let record = QuantizationRecord(algorithm: config.algorithm, kvCacheAlgorithm: config.kvCache ? "FP8" : nil,
                                        excludedModules: selection.excludedModules)
        let note = "fp8: \(replaced.count) linears quantized (\(config.perChannel ? "per-channel, dynamic activations" : "per-tensor, static activations by \(config.calibration.rawValue)")"
            + (config.kvCache ? ", FP8 KV cache" : "") + "), \(selection.excludedModules.count) kept in high precision"
        return try PassSupport.rebuilt(model, tensors: tensors, record: record, note: note)
    }

    /// KV-cache scale tensors, keyed by the v_proj weight they follow.
    ///
    /// ```
    /// model.layers.N.self_attn.k_proj.k_scale = amax(|K|) / 448    f32 []
    /// model.layers.N.self_attn.v_proj.v_scale = amax(|V|) / 448    f32 []
    /// ```
    /// - Throws: `KilnError(.internal)` when calibration observed no K/V for a layer.
    func kvTensors(_ topology: LinearTopology, model: Model, stats: CalibrationStatistics) throws -> [String: [Tensor]] {
        var out: [String: [Tensor]] = [:]
        for layer in 0..<topology.layerCount {
            let prefix = "model.layers.\(layer).self_attn"
            guard let kv = stats.kvAbsMax[prefix] else {
                throw KilnError(.internal, path: ["\(prefix)"], "calibration returned no K/V statistics for this attention layer")
            }
            out[prefix + ".v_proj.weight"] = [
                Tensor(name: prefix + ".k_proj.k_scale", dtype: .f32, shape: [], values: [ActivationRange.scale(amax: kv.k)]),
                Tensor(name: prefix + ".v_proj.v_scale", dtype: .f32, shape: [], values: [ActivationRange.scale(amax: kv.v)]),
            ]
        }
        return out
    }
}
