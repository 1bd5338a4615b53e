import KilnCore

/// `int4-awq`: activation-aware INT4 weight quantization (W4A16_AWQ, or W4A8_AWQ with `w4a8`).
///
/// Per group of linears sharing an input (q/k/v, gate/up, o, down; see ``AWQSearch``):
///
/// ```
/// s      = normalized mean|x|^α (or mean|x|^α / w_mean^(1−α), `scaling`), α on a grid minimizing
///          ‖X·Wᵀ − (X/s)·Q(W·s)ᵀ‖² on the calibration data; s ≡ 1 (round-to-nearest) is a candidate
/// clip   = per (row, block) max of W·s shrunk to 1 − i/20 (i < 10) where it lowers the block output error
///          (every member; `clip-qk=false` leaves q/k unclipped as llm-awq does)
/// output = Q(W·s) (int4, blocks of G, s_b = clip_b / 7), and p = 1/s applied to the input:
///          folded into the preceding norm (γ ← γ ⊙ p) for q/k/v and gate/up (`fold-norms`, default),
///          else QuantSpec.preQuantScale = p (o_proj, down_proj): the layer computes (x ⊙ p)·dequant(q)ᵀ
/// W4A8:  QuantSpec.inputScale = max_j(amax_j · p_j) / 448   (static FP8 per-tensor, after p)
/// ```
/// The objective is the output error over all calibration tokens through their XᵀX (`calib-gram`, default;
/// one decoder layer at a time when the host's service is a ``LayerwiseCalibrationService``), or over
/// `calib-rows` kept rows. Needs ``KilnContext/calibration`` and the `calib` option; see ``Int4Options``.
final class Int4AWQPass: ModelPass {
    let name = "int4-awq"
    let capabilities = ["int4", "w4a16", "w4a8", "awq", "block-128", "calibration"]
    let summary = "INT4 AWQ: activation-aware scale search + weight clipping, groups of 128 (W4A16_AWQ, W4A8_AWQ)"

    /// Calibrate, search every group, and return the quantized model.
    /// - Throws: `KilnError` for bad options, a missing calibration service or text, an already-quantized or
    ///   non-Llama model, indivisible widths (`indivisible=error`), bad statistics — naming the tensor.
    /// - Complexity: O(grid × Σ out × in²/2) multiply-adds (O(grid × Σ out × in × rows) on kept rows), both cores.
    func run(_ model: Model, context: KilnContext) throws -> Model {
        let options = try Int4Options(context.options, pass: name)
        let plan = try Int4Plan(model: model, options: options, pass: name)
        guard let service = context.calibration else {
            throw KilnError(.invalidInput, path: ["pass \"\(name)\""], "needs calibration, and the host offers no calibration service")
        }
        guard let text = options.calibPath, !text.isEmpty else {
            throw KilnError(.invalidInput, path: ["\(name) option \"calib\""], "missing: int4-awq needs calibration text (a .txt or .jsonl file)")
        }
        var request = CalibrationRequest(textPath: text, hessian: options.useGram, captureRows: options.useGram ? 0 : options.captureRows,
                                         only: plan.groups.map { $0.members[0] })
        if let n = options.calibSamples { request.samples = n }
        if let n = options.calibSequenceLength { request.sequenceLength = n }

        let results = AWQResults()
        var done = 0
        func search(_ indices: [Int], _ stats: CalibrationStatistics) throws {
            for i in indices {
                context.progress?.update(label: name, done: done, total: plan.groups.count)
                try Int4AWQPass.quantize(plan.groups[i], stats: stats, model: model, options: options, into: results)
                done += 1
            }
        }
        let decoder = plan.groups.indices.filter { plan.groups[$0].layer != nil }
        let others = plan.groups.indices.filter { plan.groups[$0].layer == nil }
        if let layerwise = service as? LayerwiseCalibrationService, !decoder.isEmpty {
            // One decoder layer's statistics at a time (XᵀX of every layer at once can take gigabytes);
            // the FP weights stay in place (AWQ searches against the floating-point model's activations).
            let byLayer = Dictionary(grouping: decoder, by: { plan.groups[$0].layer! })
            try layerwise.calibrateLayerwise(model, request: request, progress: context.progress) { layer, stats in
                try search(byLayer[layer] ?? [], stats)
                return []
            }
            if !others.isEmpty {
                var rest = request
                rest.only = others.map { plan.groups[$0].members[0] }
                try search(others, try service.calibrate(model, request: rest, progress: context.progress))
            }
            guard done == plan.groups.count else {
                throw KilnError(.internal, path: ["pass \"\(name)\""], "layer-by-layer calibration reported \(done) of \(plan.groups.count) groups")
            }
        } else {
            try search(Array(plan.groups.indices), try service.calibrate(model, request: request, progress: context.progress))
        }
        context.progress?.update(label: name, done: plan.groups.count, total: plan.groups.count)

        let algorithm = options.w4a8 ? "W4A8_AWQ" : "W4A16_AWQ"
        let record = QuantizationRecord(algorithm: algorithm, groupSize: options.groupSize, excludedModules: plan.excludedModules)
        let meanRatio = results.ratios.isEmpty ? 1 : results.ratios.reduce(0, +) / Double(results.ratios.count)
        let meanAlpha = results.alphas.isEmpty ? 0 : results.alphas.reduce(0, +) / Float(results.alphas.count)
        let data = options.useGram ? "tokens" : "rows"
        var line = "\(name): \(results.linears) linears in \(plan.groups.count) groups to \(algorithm) group \(options.groupSize)"
        if options.zeroPoint { line += " asymmetric" }
        line += ", \(options.scaling.rawValue) scaling grid \(options.grid), mean α \(Int4AWQPass.format(meanAlpha)), clipped \(results.clipped)"
        line += "; output error vs round-to-nearest on the calibration \(data) ×\(Int4AWQPass.format(Float(meanRatio))) (mean over groups)"
        if !plan.excludedModules.isEmpty { line += "; high precision: " + plan.excludedModules.joined(separator: ", ") }
        if !plan.notes.isEmpty { line += "; " + plan.notes.joined(separator: "; ") }
        return try Int4Plan.output(model, replacing: results.replaced, record: record, provenance: line)
    }
}
