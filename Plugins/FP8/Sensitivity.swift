import KilnCore
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end sensitivity of each linear input group to FP8 (options `auto-exclude`, `sensitivity-report`).
///
/// ```
/// for each quantized group g (q/k/v, o, gate/up, down of one layer):
///     Δ_g = NLL(model with only g in FP8) − NLL(model)        on the first `sensitivity-samples`
///                                                             calibration sequences (LossProbe)
/// auto-exclude N:  keep in high precision the N groups with the largest Δ_g  (ties: topology order)
/// report:          also Δ_g(weights only) and Δ_g(activations only), one line per group on stderr
/// ```
/// Single-group deltas add up to about the whole model's loss increase (the errors of different layers
/// are nearly independent), so excluding the largest ones is the best use of a budget of N groups. The
/// probe reads calibration text only — never the evaluation text.
struct FP8Sensitivity {
    /// One group's loss increases (nats per token).
    struct Entry {
        var index: Int
        var modules: [String]
        var both: Double
        var weightsOnly: Double?
        var activationsOnly: Double?
    }

    let probe: any LossProbe

    /// The probe of the pass's host on the first `samples` calibration sequences.
    /// - Throws: `KilnError(.unsupported)` when the host's calibration service cannot measure losses.
    static func probe(_ model: Model, options: PassOptions, context: KilnContext, samples: Int) throws -> FP8Sensitivity {
        let (service, request) = try options.calibration(context: context)
        guard let prober = service as? LossProbeService else {
            throw KilnError(.unsupported, "\(options.pass) --auto-exclude needs a host that measures losses on calibration text (this calibration service does not)")
        }
        var r = request
        r.samples = min(samples, request.samples)
        do {
            return FP8Sensitivity(probe: try prober.lossProbe(model, request: r, progress: context.progress))
        } catch let e as KilnError {
            throw e.adding(context: options.pass)
        }
    }

    /// Δ of every group, given its FP8 tensors (`quantized[i]`: the group's weights with their QuantSpecs).
    ///
    /// - Parameters:
    ///   - groups: (modules, FP8 tensors, float originals) per group, in topology order.
    ///   - detail: also measure weights only and activations only.
    /// - Complexity: one probe evaluation per group (three with `detail`).
    func measure(_ groups: [(modules: [String], quantized: [Tensor], originals: [Tensor])], detail: Bool,
                 progress: ProgressSink?) throws -> [Entry] {
        var out: [Entry] = []
        for (i, g) in groups.enumerated() {
            var e = Entry(index: i, modules: g.modules, both: try probe.loss(replacing: g.quantized) - probe.baseline)
            if detail {
                let weights = g.quantized.map { t -> Tensor in
                    var w = t
                    w.quant?.inputScale = nil
                    return w
                }
                let activations = zip(g.quantized, g.originals).map { q, o -> Tensor in
                    var a = o
                    a.quant = q.quant
                    return a
                }
                e.weightsOnly = try probe.loss(replacing: weights) - probe.baseline
                e.activationsOnly = g.quantized.contains { $0.quant?.inputScale != nil }
                    ? try probe.loss(replacing: activations) - probe.baseline : 0
            }
            out.append(e)
            progress?.update(label: "fp8 sensitivity", done: i + 1, total: groups.count)
        }
        return out
    }

    /// The modules of the `count` entries with the largest Δ (ties: topology order).
    static func worst(_ entries: [Entry], count: Int) -> [Entry] {
        Array(ranked(entries).prefix(count))
    }

    /// Largest Δ first; ties in topology order.
    static func ranked(_ entries: [Entry]) -> [Entry] {
        entries.sorted { $0.both != $1.both ? $0.both > $1.both : $0.index < $1.index }
    }

    /// The report on stderr: the baseline, then one line per group, largest Δ first, as relative
    /// perplexity increases `exp(Δ) − 1`.
    func report(_ entries: [Entry]) {
        func pct(_ d: Double?) -> String {
            guard let d else { return "" }
            let v = (expm1(d) * 100 * 1000).rounded() / 1000
            return v == 0 ? "0%" : (v > 0 ? "+" : "") + String(v) + "%"
        }
        var lines = ["fp8 sensitivity on \(probe.tokens) calibration tokens (baseline loss \(probe.baseline)); ppl change with one group in FP8:",
                     "group\tweights+activations\tweights only\tactivations only"]
        for e in Self.ranked(entries) {
            lines.append("\(e.modules.joined(separator: ","))\t\(pct(e.both))\t\(pct(e.weightsOnly))\t\(pct(e.activationsOnly))")
        }
        fputs(lines.joined(separator: "\n") + "\n", stderr)
    }
}
