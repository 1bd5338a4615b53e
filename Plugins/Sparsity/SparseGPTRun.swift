import KilnCore

/// SparseGPT over a whole model: calibration for the Hessians, one factorization per input group,
/// pruning of each linear of the group.
///
/// Sequential (default): for each decoder layer L, calibration runs on the model whose layers < L are
/// already pruned (as sparsegpt's llama.py feeds each layer the outputs of the pruned layers before it)
/// and observes only layer L's linears; only those Hessians are in memory:
/// ```
/// for L in layers:
///     H_g = XᵀX of group g's input, for g ∈ {qkv, o, gate_up, down} of L   (one linear per group asked)
///     U_g = HessianFactor(H_g, damp)                                       (shared by q, k, v / gate, up)
///     W ← SparseGPT(W, U_g) for every selected linear W of g
/// ```
/// With a ``LayerwiseCalibrationService`` the sequential schedule is one calibration run (hidden states
/// kept between layers); otherwise one run per decoder layer. Non-sequential: one calibration run of the
/// dense model for every group (all Hessians in memory).
struct SparseGPTRun {
    let pass: String
    let model: Model
    let topology: LinearTopology
    /// Weights to prune.
    let targets: Set<String>
    let config: SparsityPass.Config
    let options: PassOptions
    let context: KilnContext

    /// Pruned weights by name.
    private(set) var replaced: [String: Tensor] = [:]
    /// "module (damping used)" for every group whose damping had to be raised.
    private(set) var retries: [String] = []
    /// Representatives whose calibration saw fewer tokens than input channels.
    private(set) var shortCalibration: [String] = []

    init(pass: String, model: Model, topology: LinearTopology, targets: Set<String>, config: SparsityPass.Config,
         options: PassOptions, context: KilnContext) {
        self.pass = pass
        self.model = model
        self.topology = topology
        self.targets = targets
        self.config = config
        self.options = options
        self.context = context
    }

    /// Prune every target.
    /// - Throws: what calibration throws (with the pass name as context), `KilnError(.internal)` when it
    ///   returns no Hessian for a requested linear, `KilnError(.invalidInput)` for a Hessian that is
    ///   non-finite, of the wrong size or indefinite even after retries, or a non-finite weight.
    mutating func execute() throws {
        let groups = topology.groups.filter { $0.weights.contains(where: targets.contains) }
        guard !groups.isEmpty else { return }
        var stages: [[LinearTopology.Group]] = []
        if config.sequential {
            for g in groups {
                if let last = stages.last?.last, last.layer == g.layer { stages[stages.count - 1].append(g) } else { stages.append([g]) }
            }
        } else {
            stages = [groups]
        }
        let (service, base) = try options.calibration(context: context) { $0.hessian = true }
        if config.sequential, let layerwise = service as? LayerwiseCalibrationService {
            try runLayerwise(stages, service: layerwise, request: base)
        } else {
            for stage in stages {
                let working = replaced.isEmpty ? model
                    : try SparsityPass.output(model, replaced: replaced, note: "\(pass): calibrating layer \(stage[0].layer ?? -1) after pruning the layers before it")
                var request = base
                request.only = representatives(stage)
                let stats: CalibrationStatistics
                do {
                    stats = try service.calibrate(working, request: request, progress: context.progress)
                } catch let e as KilnError {
                    throw e.adding(context: pass)
                }
                _ = try prune(stage, stats: stats)
            }
        }
        if let first = shortCalibration.first {
            PassSupport.warn("\(pass): calibration saw fewer tokens than input channels for \(shortCalibration.count) linear input(s) (first: \(first)); "
                + "their Hessians are rank-deficient and only damping keeps them invertible; use more --calib-samples")
        }
    }

    /// One calibration run, layer by layer, pruning each layer before it feeds the next.
    mutating func runLayerwise(_ stages: [[LinearTopology.Group]], service: LayerwiseCalibrationService, request base: CalibrationRequest) throws {
        var request = base
        request.only = stages.flatMap(representatives)
        var byLayer: [Int: [LinearTopology.Group]] = [:]
        for stage in stages { if let l = stage[0].layer { byLayer[l] = stage } }
        var visited = Set<Int>()
        var own: (any Error)?
        do {
            try service.calibrateLayerwise(model, request: request, progress: context.progress) { layer, stats in
                guard let stage = byLayer[layer] else { return [] }
                visited.insert(layer)
                do { return try prune(stage, stats: stats) } catch { own = error; throw error }
            }
        } catch let e as KilnError where own == nil {
            throw e.adding(context: pass)
        }
        if let missing = byLayer.keys.sorted().first(where: { !visited.contains($0) }) {
            throw KilnError(.internal, path: ["layer \(missing)"], "layerwise calibration never reached this layer")
        }
    }

    /// The representative of each group: its first weight to prune (the group's linears share the input).
    func representatives(_ stage: [LinearTopology.Group]) -> [String] {
        stage.map { $0.weights.first(where: targets.contains)! }
    }

    /// Prune the groups of one stage with `stats`; the pruned tensors, also kept in ``replaced``.
    mutating func prune(_ stage: [LinearTopology.Group], stats: CalibrationStatistics) throws -> [Tensor] {
        var out: [Tensor] = []
        for (group, representative) in zip(stage, representatives(stage)) {
            let factor = try self.factor(representative, stats: stats)
            stats.linears[representative]?.hessian = nil
            for w in group.weights where targets.contains(w) {
                let t = try SparseGPT.pruned(model[w]!, factor: factor, blockSize: config.blockSize)
                replaced[w] = t
                out.append(t)
                context.progress?.update(label: pass, done: replaced.count, total: targets.count)
            }
        }
        return out
    }

    /// The damped inverse-Hessian factor of `weight`'s input.
    mutating func factor(_ weight: String, stats: CalibrationStatistics) throws -> HessianFactor {
        let at = ["tensor \"\(weight)\""]
        guard let s = stats.linears[weight], let h = s.hessian else {
            throw KilnError(.internal, path: at, "calibration returned no Hessian (XᵀX) for this linear")
        }
        let n = model[weight]!.shape[1]
        guard s.inputChannels == n else {
            throw KilnError.mismatch(file: nil, path: at + ["calibration statistics"], expected: "\(n) input channels", found: "\(s.inputChannels)")
        }
        guard s.tokens > 0 else {
            throw KilnError(.invalidInput, path: at, "calibration observed no tokens for this linear; the calibration text is too short")
        }
        if s.tokens < n { shortCalibration.append(weight) }
        let f = try HessianFactor.make(h, n: n, damping: config.damping, tensor: weight)
        if f.damping != config.damping {
            let module = weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
            retries.append("\(module) (\(f.damping))")
            PassSupport.warn("\(pass): the Hessian of \(module)'s input is not positive definite with damping \(config.damping); used \(f.damping)")
        }
        return f
    }
}
