import KilnCore

/// The `int8-sq` pass: SmoothQuant (Xiao et al. 2023) then INT8 per-channel weights and INT8
/// activations, for Llama-family models.
///
/// ```
/// s_j = clamp(max|X_j|^α / max(max|W_j|, 1e-5)^(1−α), 1e-4, 1e4)     per input channel j (Smoothing)
///       max|W_j| over every quantized linear of the group sharing the input (q/k/v; gate/up)
/// X ← X / s:  folded into the norm feeding the group (norm_j ← norm_j / s_j: q/k/v → input_layernorm,
///             gate/up → post_attention_layernorm), otherwise carried as pre-quant scale p = 1/s (o, down)
/// W ← W · diag(s),  then s_c = amax_c / 127,  q = clamp(round_half_even(W / s_c), −128, 127)
/// static activations: s_x = max_j(max|X_j| / s_j) / 127   (dynamic: per token, at run time)
/// ```
///
/// Options (kebab-case, as the CLI flags):
/// - `calib` FILE (required), `calib-samples` N (default 128), `calib-seq-len` L (default 512).
/// - `alpha`: a number in 0...1 (default 0.5) or `auto`: per group, the α of the grid 0, 0.05, …, 1 with
///   the smallest fake-quantized output MSE on captured rows (``AlphaSearch``); `capture-rows` R rows per
///   input for that search (default 512; the search costs 21 · R · in · out multiply-adds per group);
///   `alpha-step` the grid step, dividing 1 (default 0.05; 0.1 halves the search time).
/// - `activation`: `static` (default; `W8A8_SQ_PER_CHANNEL`) | `dynamic` (per-token;
///   `W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN`).
/// - `fold-norms`: `true` (default) folds 1/s into the norms; `false` keeps p = 1/s as the pre-quant scale
///   of every linear (one shared by q/k/v, one by gate/up: ModelOpt's export layout), norms untouched.
/// - `exclude`: comma-separated globs of modules kept in high precision (lm_head always is). An excluded
///   member of a folded group is still multiplied by s (in its own dtype), since its input changes too.
/// - `force`: re-quantize an already quantized model (dequantized first).
///
/// Output per quantized linear: `i8` payload `[out, in]` with ``QuantSpec`` format `.int8`,
/// granularity `.perChannel(axis: 0)`, `scale` f32 `[out]` (`<weight>.scale`), `inputScale` f32 `[1]`
/// (`<weight>.input_scale`, static only; one value shared by the group), `preQuantScale` f32 `[in]`
/// (`<weight>.pre_quant_scale`, = 1/s) on o_proj / down_proj only (on every linear with `fold-norms false`). Norms that absorbed 1/s keep their
/// name and dtype.
final class SmoothQuantPass: ModelPass {
    let name = "int8-sq"
    let summary = "INT8 SmoothQuant W8A8: smoothing folded into the norms (α fixed or searched), per-channel INT8 weights, static or per-token INT8 activations (Llama family)"

    /// Option names this pass reads.
    static let optionNames = ["calib", "calib-samples", "calib-seq-len", "alpha", "alpha-step", "capture-rows", "activation", "fold-norms", "exclude", "force"]

    var capabilities: [String] {
        ["int8", "w8a8", "smoothquant", "alpha-auto", "per-token", "llama", "mistral", "qwen2"] + SmoothQuantPass.optionNames.map { "--" + $0 }
    }

    /// Validated options.
    struct Config {
        /// nil: search (`auto`).
        var alpha: Float? = 0.5
        var staticActivations = true
        var captureRows = 512
        /// Grid intervals for `auto` (1 / alpha-step).
        var gridIntervals = 20
        var foldNorms = true
        var exclude: [String] = []
        var force = false

        init(_ o: PassOptions) throws {
            if o["alpha"]?.lowercased() == "auto" {
                alpha = nil
            } else if let raw = o["alpha"] {
                guard let a = Float(raw), a.isFinite, (0...1).contains(a) else {
                    throw KilnError.mismatch(file: nil, path: ["int8-sq --alpha"], expected: "a number in 0...1 or \"auto\"", found: "\"\(raw)\"")
                }
                alpha = a
            }
            staticActivations = try o.choice("activation", ["static", "dynamic"], default: "static") == "static"
            captureRows = try o.int("capture-rows", default: 512, in: 1...1_000_000)
            let step = try o.float("alpha-step", default: 0.05, in: 0.01...0.5)
            gridIntervals = Int((1 / Double(step)).rounded())
            guard abs(Double(gridIntervals) * Double(step) - 1) < 1e-4 else {
                throw KilnError.mismatch(file: nil, path: ["int8-sq --alpha-step"], expected: "a step dividing 1 (0.05, 0.1, 0.125, 0.25, ...)", found: "\"\(o["alpha-step"]!)\"")
            }
            foldNorms = try o["fold-norms"] == nil || o.flag("fold-norms")
            exclude = o.list("exclude")
            force = try o.flag("force")
        }

        var algorithm: String { staticActivations ? "W8A8_SQ_PER_CHANNEL" : "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN" }
    }

    func run(_ input: Model, context: KilnContext) throws -> Model {
        MatMul.service = context.matrix
        defer { MatMul.service = nil }
        let options = PassOptions(pass: name, context.options)
        let config = try Config(options)
        let model = try PassSupport.floatModel(input, pass: name, force: config.force)
        let topology = try PassSupport.llamaTopology(model, pass: name)
        let selection = LinearSelection(topology: topology, patterns: config.exclude)
        for p in selection.unmatchedPatterns { PassSupport.warn("\(name): --exclude pattern \"\(p)\" matches no linear layer") }

        let work = topology.groups.filter { $0.role != "lm_head" && $0.weights.contains(where: selection.quantized.contains) }
        let stats = try options.calibrate(model, context: context) { r in
            // Linears of a group read the same input: one representative each is enough.
            r.only = work.compactMap { $0.weights.first(where: selection.quantized.contains) }
            r.captureRows = config.alpha == nil ? config.captureRows : 0
        }

        var replaced: [String: Tensor] = [:]
        var chosen: [String] = []
        for (i, group) in work.enumerated() {
            let alpha = try smooth(group, model: model, selection: selection, stats: stats, config: config, into: &replaced)
            chosen.append("\(group.layer.map(String.init) ?? "-").\(group.role)=\(alpha)")
            context.progress?.update(label: "int8-sq", done: i + 1, total: work.count)
        }
        let tensors = model.tensors.map { replaced[$0.name] ?? $0 }
        let record = QuantizationRecord(algorithm: config.algorithm, excludedModules: selection.excludedModules)
        let note = "int8-sq: \(work.flatMap(\.weights).filter(selection.quantized.contains).count) linears quantized, "
            + "\(config.staticActivations ? "static" : "per-token") activations, α " + (config.alpha.map { "\($0)" } ?? "auto: " + chosen.joined(separator: " "))
        return try PassSupport.rebuilt(model, tensors: tensors, record: record, note: note)
    }

    /// Smooths and quantizes one group; returns the α used.
    /// - Throws: `KilnError(.internal)` when calibration lacks the group's statistics or rows.
    func smooth(_ group: LinearTopology.Group, model: Model, selection: LinearSelection, stats: CalibrationStatistics,
                config: Config, into replaced: inout [String: Tensor]) throws -> Float {
        let members = group.weights.filter(selection.quantized.contains)
        let sources = try members.map { w -> Tensor in
            guard let t = model[w], t.shape.rank == 2, t.dtype.isFloat, !t.dtype.isPacked else {
                throw KilnError.mismatch(file: nil, path: ["tensor \"\(w)\""], expected: "a 2-D float weight [out, in]",
                                         found: model[w].map { "\($0.dtype) \($0.shape)" } ?? "nothing")
            }
            return t
        }
        let cols = sources[0].shape[1]
        for t in sources where t.shape[1] != cols {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(t.name)\"", "shape"], expected: "\(cols) input columns (as \(sources[0].name))",
                                     found: t.shape.description)
        }
        let observed = members.compactMap { stats.linears[$0] }.filter { $0.inputAbsMax.count == cols }
        guard !observed.isEmpty else {
            throw KilnError(.internal, path: ["tensor \"\(members[0])\""], "calibration returned no input statistics of \(cols) channels for this linear")
        }
        var xMax = observed[0].inputAbsMax
        for s in observed.dropFirst() { for j in 0..<cols { xMax[j] = max(xMax[j], s.inputAbsMax[j]) } }
        let values = try sources.map { try $0.floats() }

        let alpha: Float
        if let fixed = config.alpha {
            alpha = fixed
        } else {
            guard let rows = observed.lazy.compactMap(\.capturedInputs).first, rows.count >= cols else {
                throw KilnError(.internal, path: ["tensor \"\(members[0])\""], "calibration returned no captured input rows, needed by --alpha auto")
            }
            let n = rows.count / cols
            let search = AlphaSearch(x: Array(rows[0..<(n * cols)]), rows: n, cols: cols, xMax: xMax,
                                     weights: zip(values, sources).map { ($0, $1.shape[0]) }, dynamic: !config.staticActivations)
            alpha = search.best(grid: AlphaSearch.grid(intervals: config.gridIntervals)).alpha
        }
        let s = Smoothing.factors(xMax: xMax, wMax: Smoothing.weightColumnMax(values, cols: cols), alpha: alpha)
        let folded = config.foldNorms ? group.norm.flatMap { model[$0] } : nil
        if let norm = folded {
            replaced[norm.name] = try Self.divided(norm, by: s)
            for w in group.weights where !selection.quantized.contains(w) {
                if let t = model[w] { replaced[w] = Self.scaled(t, by: s) }
            }
        }
        let inputScale = config.staticActivations ? Smoothing.staticInputScale(xMax: xMax, factors: s) : nil
        let p = folded == nil ? s.map { 1 / $0 } : nil
        for (t, v) in zip(sources, values) {
            replaced[t.name] = Self.quantized(t, values: v, factors: s, preQuant: p, inputScale: inputScale)
        }
        return alpha
    }

    /// The INT8 tensor of `t · diag(s)`; the payload is recomputed from `t` when read (deferred).
    static func quantized(_ t: Tensor, values: [Float], factors s: [Float], preQuant p: [Float]?, inputScale: Float?) -> Tensor {
        let rows = t.shape[0], cols = t.shape[1]
        let scales = Int8Weights.quantize(Smoothing.scaledColumns(values, by: s), rows: rows, cols: cols).scales
        let spec = QuantSpec(format: .int8, granularity: .perChannel(axis: 0),
                             scale: Tensor(name: t.name + ".scale", dtype: .f32, shape: [rows], values: scales),
                             preQuantScale: p.map { Tensor(name: t.name + ".pre_quant_scale", dtype: .f32, shape: [cols], values: $0) },
                             inputScale: inputScale.map { PassSupport.scalar(t.name + ".input_scale", $0) })
        return Tensor(name: t.name, dtype: .i8, shape: t.shape, storage: .deferred {
            TensorBuffer(values: Int8Weights.quantize(Smoothing.scaledColumns(try t.floats(), by: s), rows: rows, cols: cols).q)
        }, quant: spec)
    }

    /// `t · diag(s)` in `t`'s dtype (an excluded member of a folded group), deferred.
    static func scaled(_ t: Tensor, by s: [Float]) -> Tensor {
        Tensor(name: t.name, dtype: t.dtype, shape: t.shape, storage: .deferred {
            try converted(Smoothing.scaledColumns(try t.floats(), by: s), to: t.dtype)
        })
    }

    /// `norm_j / s_j` (f32 division, rounded once to the norm's dtype).
    /// - Throws: `KilnError(.invalidInput)` when the norm's size is not the input width.
    static func divided(_ norm: Tensor, by s: [Float]) throws -> Tensor {
        let v = try norm.floats()
        guard v.count == s.count, norm.dtype.isFloat else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(norm.name)\""], expected: "\(s.count) float values (the input width)",
                                     found: "\(v.count) × \(norm.dtype)")
        }
        let out = zip(v, s).map { $0 / $1 }
        return Tensor(name: norm.name, dtype: norm.dtype, shape: norm.shape, storage: .owned(try converted(out, to: norm.dtype)))
    }

    /// f32 values as a buffer of `dtype` (round to nearest even).
    static func converted(_ values: [Float], to dtype: DType) throws -> TensorBuffer {
        let out = TensorBuffer(count: dtype.byteCount(elements: values.count) ?? 0, zeroed: false)
        try values.withUnsafeBytes { try DType.convert(values.count, from: .f32, $0.baseAddress!, to: dtype, out.pointer) }
        return out
    }
}
