import KilnCore

/// What the AWQ pass produced so far: replaced tensors and the numbers of its provenance line.
final class AWQResults {
    var replaced: [String: Tensor] = [:]
    /// Per group: final error / round-to-nearest error on the calibration data.
    var ratios: [Double] = []
    var alphas: [Float] = []
    var clipped = 0
    var linears = 0
}

extension Int4AWQPass {
    /// Search one group and store its quantized weights (and folded norm) in `results`.
    /// - Throws: `KilnError` for missing or bad statistics and non-finite weights, naming the tensor.
    static func quantize(_ group: Int4Plan.Group, stats: CalibrationStatistics, model: Model, options: Int4Options,
                         into results: AWQResults) throws {
        let st = try statistics(group, stats, gram: options.useGram)
        let weights = try group.members.map { try Int4Quantizer.finiteFloats(model[$0]!) }
        let problem = AWQProblem(
            names: group.members, weights: weights, outs: group.members.map { model[$0]!.shape[0] }, cols: group.cols,
            group: options.groupSize, scheme: options.scheme,
            clip: group.members.map { options.clip && (options.clipQK || !isQueryOrKey($0)) },
            meanAbs: st.inputMeanAbs)
        let solution = AWQSearch.solve(problem, objective: try objective(group, st, gram: options.useGram),
                                       scaling: options.scaling, grid: options.grid)

        var fold = false
        if options.foldNorms, group.excludedMembers.isEmpty, let norm = group.norm, let t = model[norm],
           t.dtype.isFloat, t.quant == nil, t.elementCount == group.cols {
            fold = true
            let gamma = try t.floats()
            let folded = Tensor(name: norm, dtype: .f32, shape: t.shape, values: zip(gamma, solution.preQuant).map { $0 * $1 })
            results.replaced[norm] = t.dtype == .f32
                ? folded : Tensor(name: norm, dtype: t.dtype, shape: t.shape, storage: .owned(try folded.converted(to: t.dtype).materialized()))
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
            results.replaced[name] = Int4Quantizer.tensor(name: name, q, scheme: options.scheme,
                                                          preQuantScale: fold ? nil : solution.preQuant, inputScale: inputScale)
            if solution.clip[m] != nil { results.clipped += 1 }
        }
        results.linears += group.members.count
        if solution.rtnError > 0 { results.ratios.append(solution.finalError / solution.rtnError) }
        if let a = solution.alpha { results.alphas.append(a) }
    }

    /// The statistics of a group's input (any member's), checked against its width.
    /// - Throws: `KilnError` naming the weight when the calibration has none, or they do not fit.
    static func statistics(_ group: Int4Plan.Group, _ stats: CalibrationStatistics, gram: Bool) throws -> LinearStatistics {
        let at = ["tensor \"\(group.members[0])\"", "calibration statistics"]
        guard let st = (group.members + group.excludedMembers).lazy.compactMap({ stats.linears[$0] }).first else {
            throw KilnError(.internal, path: at, "missing: the calibration observed no input of this linear")
        }
        let c = group.cols
        guard st.inputChannels == c, st.inputMeanAbs.count == c, st.inputAbsMax.count == c else {
            throw KilnError.mismatch(file: nil, path: at, expected: "\(c) input channels", found: "\(st.inputMeanAbs.count)")
        }
        for (label, v) in [("mean |x|", st.inputMeanAbs), ("max |x|", st.inputAbsMax)] {
            if let j = v.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
                throw KilnError(.invalidInput, path: at + ["channel \(j)"], "\(label) is \(v[j]); activations must be finite")
            }
        }
        if gram {
            guard let h = st.hessian, h.count == c * c, st.tokens > 0 else {
                throw KilnError(.internal, path: at, "no XᵀX of \(c)×\(c) (found \(st.hessian?.count ?? 0) values); calib-gram needs the hessian statistic")
            }
            if let k = h.firstIndex(where: { !$0.isFinite }) {
                throw KilnError(.invalidInput, path: at + ["XᵀX element \(k)"], "non-finite value \(h[k])")
            }
        }
        let x = st.capturedInputs ?? []
        guard gram || (!x.isEmpty && x.count % c == 0) else {
            throw KilnError(.internal, path: at, "no captured input rows (\(x.count) values for width \(c)); AWQ needs captureRows > 0")
        }
        if let k = x.firstIndex(where: { !$0.isFinite }) {
            throw KilnError(.invalidInput, path: at + ["captured row \(k / c)"], "non-finite activation \(x[k])")
        }
        return st
    }

    /// The search objective of a group: its captured rows, or XᵀX of all tokens with `calib-gram`.
    /// - Throws: `KilnError(.invalidInput)` when XᵀX cannot be factored (not positive semi-definite).
    static func objective(_ group: Int4Plan.Group, _ st: LinearStatistics, gram: Bool) throws -> GroupObjective {
        guard gram else { return GroupObjective(rows: st.capturedInputs!, cols: group.cols) }
        guard let o = GroupObjective(gram: st.hessian!, tokens: st.tokens, cols: group.cols) else {
            throw KilnError(.invalidInput, path: ["tensor \"\(group.members[0])\"", "calibration statistics"],
                            "XᵀX is not positive semi-definite (Cholesky failed even with jitter 1e-3 × mean diagonal)")
        }
        return o
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
