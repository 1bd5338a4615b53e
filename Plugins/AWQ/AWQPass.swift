import KilnCore

/// `int4-awq`: activation-aware INT4 weight quantization (W4A16_AWQ, or W4A8_AWQ with `w4a8`).
///
/// Per group of linears sharing an input (q/k/v, gate/up, o, down; see ``AWQSearch``):
///
/// ```
/// s      = normalized mean|x|^α, α searched on a grid minimizing ‖X·Wᵀ − (X/s)·Q(W·s)ᵀ‖² on calibration rows
/// clip   = per (row, block) max of W·s shrunk to 1 − i/20 (i < 10) where it lowers the block output error
/// output = Q(W·s) (int4, blocks of G, s_b = clip_b / 7), and p = 1/s applied to the input:
///          folded into the preceding norm (γ ← γ ⊙ p) for q/k/v and gate/up (`fold-norms`, default),
///          else QuantSpec.preQuantScale = p (o_proj, down_proj): the layer computes (x ⊙ p)·dequant(q)ᵀ
/// W4A8:  QuantSpec.inputScale = max_j(amax_j · p_j) / 448   (static FP8 per-tensor, after p)
/// ```
/// Needs ``KilnContext/calibration`` and the `calib` option; see ``Int4Options`` for the rest.
final class Int4AWQPass: ModelPass {
    let name = "int4-awq"
    let capabilities = ["int4", "w4a16", "w4a8", "awq", "block-128", "calibration"]
    let summary = "INT4 AWQ: activation-aware scale search + weight clipping, groups of 128 (W4A16_AWQ, W4A8_AWQ)"

    /// Calibrate, search every group, and return the quantized model.
    /// - Throws: `KilnError` for bad options, a missing calibration service or text, an already-quantized or
    ///   non-Llama model, indivisible widths (`indivisible=error`), bad statistics — naming the tensor.
    /// - Complexity: O(grid × Σ out × in × min(rows, in/2)) multiply-adds, over both cores.
    func run(_ model: Model, context: KilnContext) throws -> Model {
        let options = try Int4Options(context.options, pass: name)
        let plan = try Int4Plan(model: model, options: options, pass: name)
        guard let service = context.calibration else {
            throw KilnError(.invalidInput, path: ["pass \"\(name)\""], "needs calibration, and the host offers no calibration service")
        }
        guard let text = options.calibPath, !text.isEmpty else {
            throw KilnError(.invalidInput, path: ["\(name) option \"calib\""], "missing: int4-awq needs calibration text (a .txt or .jsonl file)")
        }
        var request = CalibrationRequest(textPath: text, captureRows: options.captureRows, only: plan.groups.map { $0.members[0] })
        if let n = options.calibSamples { request.samples = n }
        if let n = options.calibSequenceLength { request.sequenceLength = n }
        let stats = try service.calibrate(model, request: request, progress: context.progress)

        var replaced: [String: Tensor] = [:]
        var ratios: [Double] = [], alphas: [Float] = []
        var clipped = 0, linears = 0
        for (i, group) in plan.groups.enumerated() {
            context.progress?.update(label: name, done: i, total: plan.groups.count)
            let st = try Int4AWQPass.statistics(group, stats)
            let weights = try group.members.map { try Int4Quantizer.finiteFloats(model[$0]!) }
            let problem = AWQProblem(
                names: group.members, weights: weights, outs: group.members.map { model[$0]!.shape[0] }, cols: group.cols,
                group: options.groupSize, scheme: options.scheme,
                clip: group.members.map { options.clip && (options.clipQK || !Int4AWQPass.isQueryOrKey($0)) },
                meanAbs: st.inputMeanAbs)
            let objective = GroupObjective(rows: st.capturedInputs!, cols: group.cols)
            let solution = AWQSearch.solve(problem, objective: objective, scaling: options.scaling, grid: options.grid)

            var fold = false
            if options.foldNorms, group.excludedMembers.isEmpty, let norm = group.norm, let t = model[norm],
               t.dtype.isFloat, t.quant == nil, t.elementCount == group.cols {
                fold = true
                let gamma = try t.floats()
                let folded = Tensor(name: norm, dtype: .f32, shape: t.shape, values: zip(gamma, solution.preQuant).map { $0 * $1 })
                replaced[norm] = t.dtype == .f32 ? folded : Tensor(name: norm, dtype: t.dtype, shape: t.shape, storage: .owned(try folded.converted(to: t.dtype).materialized()))
            }
            var inputScale: Float?
            if options.w4a8 {
                var amax: Float = 0
                for j in 0..<group.cols { amax = max(amax, st.inputAbsMax[j] * solution.preQuant[j]) }
                inputScale = amax > 0 ? amax / Limits.fp8Max : 1
            }
            for (m, name) in group.members.enumerated() {
                let scaled = (0..<weights[m].count).map { weights[m][$0] * solution.scales[$0 % group.cols] }
                let q = scaled.withUnsafeBufferPointer {
                    Int4RTNPass.quantizeParallel($0, rows: problem.outs[m], cols: group.cols, group: options.groupSize,
                                                 scheme: options.scheme, clip: solution.clip[m])
                }
                replaced[name] = Int4Quantizer.tensor(name: name, q, scheme: options.scheme,
                                                      preQuantScale: fold ? nil : solution.preQuant, inputScale: inputScale)
                if solution.clip[m] != nil { clipped += 1 }
            }
            linears += group.members.count
            if solution.rtnError > 0 { ratios.append(solution.finalError / solution.rtnError) }
            if let a = solution.alpha { alphas.append(a) }
        }
        context.progress?.update(label: name, done: plan.groups.count, total: plan.groups.count)

        let algorithm = options.w4a8 ? "W4A8_AWQ" : "W4A16_AWQ"
        let record = QuantizationRecord(algorithm: algorithm, groupSize: options.groupSize, excludedModules: plan.excludedModules)
        let meanRatio = ratios.isEmpty ? 1 : ratios.reduce(0, +) / Double(ratios.count)
        let meanAlpha = alphas.isEmpty ? 0 : alphas.reduce(0, +) / Float(alphas.count)
        var line = "\(name): \(linears) linears in \(plan.groups.count) groups to \(algorithm) group \(options.groupSize)"
            + (options.zeroPoint ? " asymmetric" : "") + ", \(options.scaling.rawValue) scaling grid \(options.grid), mean α \(Int4AWQPass.format(meanAlpha))"
            + ", clipped \(clipped); calibration-row output error vs round-to-nearest ×\(Int4AWQPass.format(Float(meanRatio))) (mean over groups)"
        if !plan.excludedModules.isEmpty { line += "; high precision: " + plan.excludedModules.joined(separator: ", ") }
        if !plan.notes.isEmpty { line += "; " + plan.notes.joined(separator: "; ") }
        return try Int4Plan.output(model, replacing: replaced, record: record, provenance: line)
    }

    /// The statistics of a group's input (any member's), checked against its width.
    /// - Throws: `KilnError` naming the weight when the calibration has none, or they do not fit.
    static func statistics(_ group: Int4Plan.Group, _ stats: CalibrationStatistics) throws -> LinearStatistics {
        let at = ["tensor \"\(group.members[0])\"", "calibration statistics"]
        guard let st = (group.members + group.excludedMembers).lazy.compactMap({ stats.linears[$0] }).first else {
            throw KilnError(.internal, path: at, "missing: the calibration observed no input of this linear")
        }
        let c = group.cols
        guard st.inputChannels == c, st.inputMeanAbs.count == c, st.inputAbsMax.count == c else {
            throw KilnError.mismatch(file: nil, path: at, expected: "\(c) input channels", found: "\(st.inputMeanAbs.count)")
        }
        guard let x = st.capturedInputs, !x.isEmpty, x.count % c == 0 else {
            throw KilnError(.internal, path: at, "no captured input rows (\(st.capturedInputs?.count ?? 0) values for width \(c)); AWQ needs captureRows > 0")
        }
        for (label, v) in [("mean |x|", st.inputMeanAbs), ("max |x|", st.inputAbsMax)] {
            if let j = v.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
                throw KilnError(.invalidInput, path: at + ["channel \(j)"], "\(label) is \(v[j]); activations must be finite")
            }
        }
        if let k = x.firstIndex(where: { !$0.isFinite }) {
            throw KilnError(.invalidInput, path: at + ["captured row \(k / c)"], "non-finite activation \(x[k])")
        }
        return st
    }

    /// q_proj / k_proj: llm-awq leaves them unclipped (their error is amplified through q·kᵀ).
    static func isQueryOrKey(_ weight: String) -> Bool {
        weight.hasSuffix("q_proj.weight") || weight.hasSuffix("k_proj.weight")
    }

    /// Three decimals.
    static func format(_ v: Float) -> String {
        let r = (Double(v) * 1000).rounded() / 1000
        return String(r)
    }
}
