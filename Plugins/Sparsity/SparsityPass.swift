import KilnCore

/// The `sparse-2:4` pass: 2:4 structured sparsity for the linear layers of Llama-family models, by
/// magnitude or by SparseGPT.
///
/// ```
/// groups:     W[r, 4g ..< 4g+4] for every output row r and g < in/4 (along the input dimension)
/// magnitude:  keep the 2 largest |w| of each group (ties: lower index), zero the other 2
/// sparsegpt:  H = XᵀX (calibration, f64), H⁻¹ = UᵀU after damping λ = d·mean(diag H);
///             columns in blocks; per group keep the 2 largest w²/U[j,j]², then
///             W[:, i+1 ..] −= (w_i − q_i)/U[i,i] · U[i, i+1 ..]        (SparseGPT.swift)
/// ```
///
/// Options (kebab-case, as the CLI flags):
/// - `method`: `sparsegpt` (default) | `magnitude`.
/// - `calib` FILE (sparsegpt: required), `calib-samples` N (default 128), `calib-seq-len` L (default 512).
/// - `damp` d: relative Hessian damping, default 0.01 (the SparseGPT paper; ModelOpt uses 0.1), in 0...10.
///   When H + λI is not positive definite the pass retries with 10·d (up to 6 times) and warns.
/// - `block-size` B: columns per lazy-update block, default 128, a multiple of 4.
/// - `sequential`: `true` (default) calibrates layer by layer, each layer on the model with the earlier
///   layers already pruned, with the Hessians of one layer in memory: one calibration run when the host's
///   service is a ``LayerwiseCalibrationService``, else one run per decoder layer. `false` runs
///   calibration once on the dense model (all Hessians in memory at once).
/// - `exclude`: comma-separated globs of modules left dense (lm_head and the embeddings always are).
/// - `force`: sparsify an already quantized model (dequantized to f32 first).
///
/// Output: every selected linear weight, same name, shape and dtype, dense with the zeros stored; other
/// tensors untouched. A weight that already obeys 2:4 is left as it is (reported). The record is
/// ``QuantizationRecord/sparseFloat(_:)`` (`algorithm "NONE"`, `sparsity "2:4"`), which quantization
/// passes run afterwards keep; input widths must be multiples of 4.
final class SparsityPass: ModelPass {
    let name = "sparse-2:4"
    let summary = "2:4 structured sparsity of linear weights by magnitude or SparseGPT (OBS weight update; Llama family)"

    /// Option names this pass reads.
    static let optionNames = ["method", "calib", "calib-samples", "calib-seq-len", "damp", "block-size", "sequential",
                              "exclude", "force"]

    var capabilities: [String] {
        ["2:4", "magnitude", "sparsegpt", "llama", "mistral", "qwen2"] + SparsityPass.optionNames.map { "--" + $0 }
    }

    enum Method: String, CaseIterable { case sparsegpt, magnitude }

    /// Validated options.
    struct Config {
        var method = Method.sparsegpt
        var damping = 0.01
        var blockSize = 128
        var sequential = true
        var exclude: [String] = []
        var force = false

        init(_ o: PassOptions) throws {
            method = Method(rawValue: try o.choice("method", Method.allCases.map(\.rawValue), default: "sparsegpt"))!
            _ = try o.float("damp", default: 0.01, in: 0...10)  // validation; the value is read in f64 below
            damping = o["damp"].flatMap { Double(String($0.filter { $0 != " " && $0 != "\t" })) } ?? 0.01
            blockSize = try o.int("block-size", default: 128, in: 4...1 << 20)
            guard blockSize % 4 == 0 else {
                throw KilnError.mismatch(file: nil, path: ["\(o.pass) --block-size"], expected: "a multiple of 4 (groups of 4 must not straddle a block)", found: "\(blockSize)")
            }
            sequential = o["sequential"] == nil ? true : try o.flag("sequential")
            exclude = o.list("exclude")
            force = try o.flag("force")
            if method == .sparsegpt, (o["calib"] ?? "").isEmpty {
                throw KilnError(.invalidInput, "\(o.pass) --method sparsegpt needs --calib FILE (calibration text for the Hessians); --method magnitude needs none")
            }
        }
    }

    func run(_ input: Model, context: KilnContext) throws -> Model {
        let options = PassOptions(pass: name, context.options)
        let config = try Config(options)
        let model = try PassSupport.floatModel(input, pass: name, force: config.force)
        let topology = try PassSupport.llamaTopology(model, pass: name)
        let selection = LinearSelection(topology: topology, patterns: config.exclude)
        for p in selection.unmatchedPatterns { PassSupport.warn("\(name): --exclude pattern \"\(p)\" matches no linear layer") }

        // Check every selected weight before any work; skip those already 2:4.
        var targets: [String] = [], alreadySparse: [String] = []
        for w in topology.linearWeights where selection.quantized.contains(w) {
            guard let t = model[w] else { continue }
            try Self.check(t)
            if try StructuredSparsity.twoFour(t).isTwoFour { alreadySparse.append(w) } else { targets.append(w) }
        }
        if !alreadySparse.isEmpty {
            PassSupport.warn("\(name): \(alreadySparse.count) linear(s) already obey 2:4 and are left unchanged (first: \(alreadySparse[0]))")
        }

        var replaced: [String: Tensor] = [:]
        var note: String
        switch config.method {
        case .magnitude:
            for (i, w) in targets.enumerated() {
                replaced[w] = TwoFour.magnitudePruned(model[w]!)
                context.progress?.update(label: name, done: i + 1, total: targets.count)
            }
            note = "\(name): \(targets.count) linears pruned to 2:4 by magnitude"
        case .sparsegpt:
            var run = SparseGPTRun(pass: name, model: model, topology: topology, targets: Set(targets), config: config,
                                   options: options, context: context)
            try run.execute()
            replaced = run.replaced
            note = "\(name): \(targets.count) linears pruned to 2:4 by SparseGPT (damp \(config.damping), block \(config.blockSize), "
                + (config.sequential ? "sequential" : "one calibration run") + ")"
            if !run.retries.isEmpty { note += "; damping raised for " + run.retries.joined(separator: ", ") }
        }
        if !alreadySparse.isEmpty { note += "; \(alreadySparse.count) already 2:4, unchanged" }
        let excluded = selection.excludedModules.count
        if excluded > 0 { note += "; \(excluded) left dense" }
        return try Self.output(model, replaced: replaced, note: note)
    }

    /// `model` with `replaced` tensors in place, recorded as 2:4 sparse float weights.
    static func output(_ model: Model, replaced: [String: Tensor], note: String) throws -> Model {
        let tensors = model.tensors.map { replaced[$0.name] ?? $0 }
        return try PassSupport.rebuilt(model, tensors: tensors, record: .sparseFloat(), note: note)
    }

    /// A weight the pass can prune: `[out, in]`, in a multiple of 4, not quantized.
    /// - Throws: `KilnError(.invalidInput)` naming the tensor.
    static func check(_ t: Tensor) throws {
        let at = ["tensor \"\(t.name)\""]
        guard t.shape.rank == 2 else {
            throw KilnError.mismatch(file: nil, path: at, expected: "a [out, in] linear weight", found: "shape \(t.shape)")
        }
        guard t.shape[1] % 4 == 0 else {
            throw KilnError(.invalidInput, path: at,
                            "input width \(t.shape[1]) is not a multiple of 4, so it has no 2:4 groups; leave it dense with --exclude")
        }
        guard t.quant == nil else {
            throw KilnError(.invalidInput, path: at, "is quantized; sparsify the floating-point model (or pass --force)")
        }
    }
}
