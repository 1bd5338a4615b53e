import KilnCore

/// The `fp8` pass: FP8 E4M3 weights and activations (W8A8) for Llama-family models, optionally
/// with an FP8 KV cache.
///
/// ```
/// weights (per-tensor):   s_w = amax(|W|) / 448,   q = e4m3_saturating(round_src(W / s_w))   (FP8Weights)
/// activations (static):   s_x = A / 448, A from calibration (max | percentile | mse; ActivationRange)
/// KV cache (fp8):         k_scale = amax(|K|) / 448,  v_scale = amax(|V|) / 448
///                         (K observed at k_proj's output, before RoPE; the executor quantizes K after
///                         RoPE, where |k| can exceed that amax by up to √2 and saturates)
/// alternative:            s_w[c] = amax(|W[c, :]|) / 448 per output row, dynamic per-token activations
/// ```
///
/// Options (kebab-case, as the CLI flags):
/// - `calib` FILE: calibration text (required unless activations are dynamic and there is no KV cache);
///   `calib-samples` N (default 128), `calib-seq-len` L (default 512).
/// - `activation-calibration`: `max` (default, ModelOpt's) | `percentile` | `mse` (the most accurate:
///   SmolLM2-135M +2.24% vs +2.83% with max, 20000 eval tokens; see ``ActivationRange``); `percentile` P (default 99.99,
///   in 50...100); `capture-rows` R: input rows kept per linear for percentile / mse (default 512).
/// - `kv-cache`: `none` (default) | `fp8`.
/// - `weight-granularity`: `per-tensor` (default) | `per-channel`; `activation`: `static` (default) |
///   `dynamic` | `none`. Supported pairs: per-tensor + static (`FP8`), per-channel + dynamic (`FP8_PER_CHANNEL_PER_TOKEN`);
///   `none` (either granularity) quantizes the weights only and records `FP8` without input scales — it
///   measures the weight-side cost; Kiln's executor then leaves activations unquantized.
/// - `exclude`: comma-separated globs of modules kept in high precision (lm_head always is).
/// - `exclude-worst` N (default 0): also keep in high precision the N input groups (q/k/v, o, gate/up,
///   down of one layer) whose calibration input has the widest range, crest = max|x| / mean_j(mean|x_j|)
///   (``widestRanges(_:selection:stats:count:)``): per-tensor FP8 of such an input loses the small values.
/// - `auto-exclude` N (default 0): keep in high precision the N input groups whose FP8 quantization alone
///   raises the loss most on the first `sensitivity-samples` S calibration sequences (default 8; an
///   end-to-end measurement, ``FP8Sensitivity``); static activations only. `sensitivity-report`: print every
///   group's loss increase (weights + activations, weights only, activations only) on stderr.
///   SmolLM2-135M (32 × 256 calibration tokens, mse ranges, S = 8): auto-exclude 8 of 120 groups (8.5% of the
///   decoder's linear weights) gives +1.28% perplexity on 20000 eval tokens, 16 groups (17.6%) +0.50%, against
///   +2.24% with none.
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
    let summary = "FP8 E4M3 W8A8: per-tensor weight scales, calibrated static activation scales (max | percentile | mse), optional FP8 KV cache, auto-exclude by end-to-end sensitivity / exclude-worst / weights-only levers, per-channel + per-token option (Llama family)"

    /// Option names this pass reads.
    static let optionNames = ["calib", "calib-samples", "calib-seq-len", "activation-calibration", "percentile",
                              "capture-rows", "kv-cache", "weight-granularity", "activation", "exclude", "exclude-worst", "auto-exclude", "sensitivity-samples", "sensitivity-report", "force"]

    var capabilities: [String] {
        ["fp8e4m3", "w8a8", "kv-cache-fp8", "per-channel-per-token", "llama", "mistral", "qwen2"] + FP8Pass.optionNames.map { "--" + $0 }
    }

    /// Validated options.
    struct Config {
        var perChannel = false
        var staticActivations = true
        /// `activation none`: FP8 weights, activations left in high precision (a measurement aid).
        var weightsOnly = false
        var calibration = ActivationCalibration.max
        var percentile: Double = 99.99
        var captureRows = 512
        var kvCache = false
        var exclude: [String] = []
        /// Input groups with the widest activation range kept in high precision (option `exclude-worst`).
        var excludeWorst = 0
        /// Input groups with the largest end-to-end loss increase kept in high precision (option `auto-exclude`).
        var autoExclude = 0
        var sensitivitySamples = 8
        var sensitivityReport = false
        var force = false

        init(_ o: PassOptions) throws {
            perChannel = try o.choice("weight-granularity", ["per-tensor", "per-channel"], default: "per-tensor") == "per-channel"
            let activation = try o.choice("activation", ["static", "dynamic", "none"], default: "static")
            staticActivations = activation == "static"
            weightsOnly = activation == "none"
            guard weightsOnly || perChannel != staticActivations else {
                throw KilnError(.unsupported, path: ["fp8 --weight-granularity"],
                                "\(perChannel ? "per-channel" : "per-tensor") weights with \(staticActivations ? "static" : "dynamic") activations is not supported; use per-tensor + static (FP8) or per-channel + dynamic (FP8_PER_CHANNEL_PER_TOKEN)")
            }
            calibration = ActivationCalibration(rawValue: try o.choice("activation-calibration", ActivationCalibration.allCases.map(\.rawValue), default: "max"))!
            percentile = Double(try o.float("percentile", default: 99.99, in: 50...100))
            captureRows = try o.int("capture-rows", default: 512, in: 1...1_000_000)
            kvCache = try o.choice("kv-cache", ["none", "fp8"], default: "none") == "fp8"
            exclude = o.list("exclude")
            excludeWorst = try o.int("exclude-worst", default: 0, in: 0...10_000)
            autoExclude = try o.int("auto-exclude", default: 0, in: 0...10_000)
            sensitivitySamples = try o.int("sensitivity-samples", default: 8, in: 1...1_000_000)
            sensitivityReport = try o.flag("sensitivity-report")
            force = try o.flag("force")
            if (autoExclude > 0 || sensitivityReport) && !staticActivations {
                throw KilnError(.unsupported, path: ["fp8 --auto-exclude"],
                                "the loss probe measures static activation scales; use it with per-tensor weights and static activations")
            }
        }

        /// Whether the end-to-end sensitivity of every group is measured.
        var measuresSensitivity: Bool { autoExclude > 0 || sensitivityReport }

        var needsCalibration: Bool { staticActivations || kvCache || excludeWorst > 0 || measuresSensitivity }
        var needsRows: Bool { staticActivations && calibration != .max }
        var algorithm: String { perChannel && !weightsOnly ? "FP8_PER_CHANNEL_PER_TOKEN" : "FP8" }
    }

    func run(_ input: Model, context: KilnContext) throws -> Model {
        let options = PassOptions(pass: name, context.options)
        let config = try Config(options)
        let model = try PassSupport.floatModel(input, pass: name, force: config.force)
        let topology = try PassSupport.llamaTopology(model, pass: name)
        var selection = LinearSelection(topology: topology, patterns: config.exclude)
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

        var worst: [String] = []
        if config.excludeWorst > 0, let stats {
            worst = FP8Pass.widestRanges(topology.groups, selection: selection, stats: stats, count: config.excludeWorst)
            selection = LinearSelection(topology: topology, patterns: config.exclude + worst)
        }

        var sensitive: [String] = []
        if config.measuresSensitivity, let stats {
            let work = topology.groups.filter { $0.weights.contains(where: selection.quantized.contains) }
            var groups: [(modules: [String], quantized: [Tensor], originals: [Tensor])] = []
            for group in work {
                let members = group.weights.filter(selection.quantized.contains)
                groups.append((members.map(FP8Pass.module), try quantize(members, model: model, stats: stats, config: config),
                               members.compactMap { model[$0] }))
            }
            let probe = try FP8Sensitivity.probe(model, options: options, context: context, samples: config.sensitivitySamples)
            let entries = try probe.measure(groups, detail: config.sensitivityReport, progress: context.progress)
            if config.sensitivityReport { probe.report(entries) }
            sensitive = FP8Sensitivity.worst(entries, count: config.autoExclude).flatMap(\.modules)
            selection = LinearSelection(topology: topology, patterns: config.exclude + worst + sensitive)
        }

        // Activation scales per input group, then the weights.
        var replaced: [String: Tensor] = [:]
        let work = topology.groups.filter { $0.weights.contains(where: selection.quantized.contains) }
        for (i, group) in work.enumerated() {
            let members = group.weights.filter(selection.quantized.contains)
            for t in try quantize(members, model: model, stats: stats, config: config) { replaced[t.name] = t }
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
        let note = "fp8: \(replaced.count) linears quantized (\(config.weightsOnly ? "\(config.perChannel ? "per-channel" : "per-tensor") weights only" : config.perChannel ? "per-channel, dynamic activations" : "per-tensor, static activations by \(config.calibration.rawValue)")"
            + (config.kvCache ? ", FP8 KV cache" : "") + "), \(selection.excludedModules.count) kept in high precision"
            + (worst.isEmpty ? "" : " (widest activation ranges: \(worst.joined(separator: ", ")))")
            + (sensitive.isEmpty ? "" : " (largest loss increase on calibration text: \(sensitive.joined(separator: ", ")))")
        return try PassSupport.rebuilt(model, tensors: tensors, record: record, note: note)
    }

    /// The FP8 tensors of one input group's `members` (weights read by the same input): the static
    /// activation scale from their calibration statistics (when activations are static), then each weight.
    /// - Throws: `KilnError(.internal)` when calibration returned no statistics for the group.
    func quantize(_ members: [String], model: Model, stats: CalibrationStatistics?, config: Config) throws -> [Tensor] {
        var inputScale: Float?
        if config.staticActivations, let stats {
            let observed = members.compactMap { stats.linears[$0] }
            guard !observed.isEmpty else {
                throw KilnError(.internal, path: ["tensor \"\(members[0])\""], "calibration returned no statistics for this linear")
            }
            inputScale = ActivationRange.scale(amax: try ActivationRange.amax(config.calibration, stats: observed, percentile: config.percentile))
        }
        return try members.compactMap { model[$0] }.map { try FP8Weights.quantize($0, perChannel: config.perChannel, inputScale: inputScale) }
    }

    /// `model.layers.0.mlp.down_proj` for `model.layers.0.mlp.down_proj.weight`.
    static func module(_ weight: String) -> String {
        weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
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

    /// The module names of the `count` quantized input groups with the largest activation crest factor
    /// `max|x| / mean_j(mean|x_j|)` (ties: topology order), for `exclude-worst`.
    /// - Complexity: O(groups · input width + groups · log groups).
    static func widestRanges(_ groups: [LinearTopology.Group], selection: LinearSelection, stats: CalibrationStatistics, count: Int) -> [String] {
        var ranked: [(crest: Float, index: Int, modules: [String])] = []
        for (i, group) in groups.enumerated() {
            let members = group.weights.filter(selection.quantized.contains)
            guard let s = members.lazy.compactMap({ stats.linears[$0] }).first, !s.inputMeanAbs.isEmpty else { continue }
            let mean = s.inputMeanAbs.reduce(0, +) / Float(s.inputMeanAbs.count)
            guard mean > 0 else { continue }
            ranked.append((s.absMax / mean, i, members.map(FP8Pass.module)))
        }
        ranked.sort { $0.crest != $1.crest ? $0.crest > $1.crest : $0.index < $1.index }
        return ranked.prefix(count).flatMap(\.modules)
    }
}
