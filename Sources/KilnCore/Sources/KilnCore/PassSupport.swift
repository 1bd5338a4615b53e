#if canImport(Glibc)
import Glibc
#endif

/// Typed access to a pass's string options (``KilnContext/options``), with errors that name the option.
///
/// Option names are kebab-case, as the CLI spells its flags (`--calib-seq-len` → `calib-seq-len`).
/// A bad value is a ``KilnError`` of kind `.invalidInput` rendered as
/// `int8-sq --alpha: expected a number in 0...1 or "auto", found "2"`.
public struct PassOptions: Sendable {
    /// The pass reading the options (`fp8`, `int8-sq`), used in messages.
    public let pass: String
    /// The raw values by option name.
    public let values: [String: String]

    /// Options of `pass`, from a context's option dictionary.
    public init(pass: String, _ values: [String: String]) {
        self.pass = pass
        self.values = values
    }

    /// The raw value of `name`, or nil when absent.
    public subscript(name: String) -> String? { values[name] }

    func bad(_ name: String, expected: String, found: String) -> KilnError {
        KilnError.mismatch(file: nil, path: ["\(pass) --\(name)"], expected: expected, found: "\"\(found)\"")
    }

    /// One of `allowed` (compared case-insensitively, returned as spelled in `allowed`), or `default` when absent.
    /// - Throws: `KilnError(.invalidInput)` listing the allowed values.
    public func choice(_ name: String, _ allowed: [String], default value: String) throws -> String {
        guard let raw = values[name] else { return value }
        guard let hit = allowed.first(where: { $0.lowercased() == raw.lowercased() }) else {
            throw bad(name, expected: "one of " + allowed.joined(separator: ", "), found: raw)
        }
        return hit
    }

    /// An integer in `range`, or `default` when absent.
    /// - Throws: `KilnError(.invalidInput)` for a non-integer or a value out of range.
    public func int(_ name: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let raw = values[name] else { return value }
        guard let v = Int(raw.trimmingSpaces), range.contains(v) else {
            throw bad(name, expected: "an integer in \(range.lowerBound)...\(range.upperBound)", found: raw)
        }
        return v
    }

    /// A finite number in `range`, or `default` when absent.
    /// - Throws: `KilnError(.invalidInput)` for a non-number or a value out of range.
    public func float(_ name: String, default value: Float, in range: ClosedRange<Float>) throws -> Float {
        guard let raw = values[name] else { return value }
        guard let v = Float(raw.trimmingSpaces), v.isFinite, range.contains(v) else {
            throw bad(name, expected: "a number in \(range.lowerBound)...\(range.upperBound)", found: raw)
        }
        return v
    }

    /// A boolean flag: absent → false; `""`, `true`, `1`, `yes` → true; `false`, `0`, `no` → false.
    /// - Throws: `KilnError(.invalidInput)` for anything else.
    public func flag(_ name: String) throws -> Bool {
        guard let raw = values[name] else { return false }
        switch raw.lowercased() {
        case "", "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw bad(name, expected: "true or false", found: raw)
        }
    }

    /// A comma-separated list (`--exclude "*.down_proj,lm_head"`), items trimmed, empty items dropped.
    public func list(_ name: String) -> [String] {
        guard let raw = values[name] else { return [] }
        return raw.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
    }

    /// Runs the host's calibration over the text named by the `calib` option.
    ///
    /// Options read: `calib` (required: the calibration text), `calib-samples` (sequences, default 128),
    /// `calib-seq-len` (tokens per sequence, default 512). `configure` adds what the pass needs
    /// (captured rows, K/V statistics, ...).
    /// - Throws: `KilnError(.invalidInput)` "`pass` needs --calib FILE" when the option or the host's
    ///   calibration service is missing; whatever the service throws, with the pass name as context.
    public func calibrate(_ model: Model, context: KilnContext,
                          configure: (inout CalibrationRequest) -> Void = { _ in }) throws -> CalibrationStatistics {
        let (service, request) = try calibration(context: context, configure: configure)
        do {
            return try service.calibrate(model, request: request, progress: context.progress)
        } catch let e as KilnError {
            throw e.adding(context: pass)
        }
    }

    /// The host's calibration service and the request ``calibrate(_:context:configure:)`` would send, for
    /// passes that call the service themselves (e.g. ``LayerwiseCalibrationService``).
    /// - Throws: the same errors as ``calibrate(_:context:configure:)`` for a missing option or service.
    public func calibration(context: KilnContext, configure: (inout CalibrationRequest) -> Void = { _ in })
        throws -> (service: any CalibrationService, request: CalibrationRequest) {
        guard let path = values["calib"], !path.isEmpty else {
            throw KilnError(.invalidInput, "\(pass) needs --calib FILE")
        }
        guard let service = context.calibration else {
            throw KilnError(.invalidInput, "\(pass) needs --calib FILE and a host that runs calibration (this one provides no calibration service)")
        }
        var request = CalibrationRequest(textPath: path,
                                         samples: try int("calib-samples", default: 128, in: 1...1_000_000),
                                         sequenceLength: try int("calib-seq-len", default: 512, in: 2...1_000_000))
        configure(&request)
        return (service, request)
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (no Foundation in KilnCore).
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// Which linear layers a quantization pass changes: every linear of a ``LinearTopology`` except the
/// lm_head (always kept in high precision) and those matching an `--exclude` glob.
///
/// A pattern matches a linear when it matches its module name (`model.layers.0.mlp.down_proj`) or its
/// weight name (`….down_proj.weight`); see ``LinearTopology/matches(_:pattern:)``.
public struct LinearSelection: Sendable {
    /// Weight names to quantize.
    public let quantized: Set<String>
    /// Module names kept in high precision, in topology order; `lm_head` (also for a tied head) last.
    public let excludedModules: [String]
    /// Patterns that matched no linear (the CLI warns about them).
    public let unmatchedPatterns: [String]

    /// The selection for `topology` and `patterns`.
    /// - Complexity: O(linears × patterns × name length²) at worst.
    public init(topology: LinearTopology, patterns: [String]) {
        var quantized = Set<String>(), excluded: [String] = [], used = Set<String>()
        for weight in topology.linearWeights {
            let module = weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
            let names = weight == topology.lmHead ? [module, weight, "lm_head"] : [module, weight]
            let hits = patterns.filter { p in names.contains { LinearTopology.matches($0, pattern: p) } }
            used.formUnion(hits)
            if weight == topology.lmHead { continue }
            if hits.isEmpty { quantized.insert(weight) } else { excluded.append(module) }
        }
        if topology.lmHead != nil { excluded.append("lm_head") }
        self.quantized = quantized
        excludedModules = excluded
        unmatchedPatterns = patterns.filter { !used.contains($0) }
    }
}

/// Helpers shared by quantization passes.
public enum PassSupport {
    /// Print `warning: <message>` on stderr (passes have no other channel to the user).
    public static func warn(_ message: String) {
        fputs("warning: \(message)\n", stderr)
    }

    /// The model a quantization pass may start from.
    ///
    /// A float model is returned as is (also one whose record quantizes nothing, e.g. a 2:4 sparse one:
    /// ``QuantizationRecord/quantizesNothing``). An already quantized one (any other ``QuantizationRecord``
    /// or any tensor with a ``QuantSpec``) is refused unless `force`; with `force` the result holds every
    /// quantized weight dequantized to f32 with its pre-quant scale multiplied in (`w = dequant(q) · diag(p)`,
    /// so `x · wᵀ` is what the quantized layer computed before activation rounding), no KV-cache scales
    /// (`*.k_scale`, `*.v_scale`) and no record but the sparsity one (``QuantizationRecord/sparseFloat(_:)``)
    /// when the input stated a sparsity.
    /// - Throws: `KilnError(.invalidInput)` "model is already quantized (…); pass --force to re-quantize".
    /// - Complexity: O(quantized elements), lazily (tensors are dequantized when read).
    public static func floatModel(_ model: Model, pass: String, force: Bool) throws -> Model {
        let quantized = model.tensors.filter { $0.quant != nil }
        // A record that quantizes nothing (2:4 sparse float weights) leaves the model a float model.
        let recorded = model.quantization.map { !$0.quantizesNothing } ?? false
        guard recorded || !quantized.isEmpty else { return model }
        guard force else {
            let what = model.quantization?.algorithm ?? quantized.first!.quant!.format.rawValue
            throw KilnError(.invalidInput, file: model.sourcePath,
                            "model is already quantized (\(what)); \(pass) re-quantizes it only with --force")
        }
        var tensors: [Tensor] = []
        for t in model.tensors where !(t.name.hasSuffix(".k_scale") || t.name.hasSuffix(".v_scale")) {
            guard let q = t.quant else { tensors.append(t); continue }
            tensors.append(Tensor(name: t.name, dtype: .f32, shape: t.shape, storage: .deferred {
                var w = try q.dequantize(t).floats()
                if let p = try q.preQuantScale?.floats(), t.shape.rank == 2, p.count == t.shape[1] {
                    for i in w.indices { w[i] *= p[i % p.count] }
                }
                return TensorBuffer(values: w)
            }))
        }
        // Zeros dequantize to zeros: a structured sparsity pattern survives.
        let out = try Model(tensors: tensors, graph: model.graph, config: model.config, metadata: model.metadata,
                            quantization: model.quantization?.sparsity.map { QuantizationRecord.sparseFloat($0) },
                            provenance: model.provenance + ["\(pass): dequantized for re-quantization (--force)"],
                            sourcePath: model.sourcePath)
        out.attachments = model.attachments
        out.opsetImports = model.opsetImports
        out.functions = model.functions
        out.formatExtras = model.formatExtras
        return out
    }

    /// A copy of `model` with `tensors` in place of its own and `record` as its quantization record
    /// (graph, config, metadata, attachments and provenance carried over, plus `note`). A structured
    /// sparsity the model's own record states (``QuantizationRecord/sparsity``) is carried into `record`
    /// when `record` states none: quantizing zeros keeps them zero.
    /// - Throws: `KilnError(.invalidInput)` for duplicate tensor names.
    public static func rebuilt(_ model: Model, tensors: [Tensor], record: QuantizationRecord, note: String) throws -> Model {
        var record = record
        if record.sparsity == nil { record.sparsity = model.quantization?.sparsity }
        let out = try Model(tensors: tensors, graph: model.graph, config: model.config, metadata: model.metadata,
                            quantization: record, provenance: model.provenance + [note], sourcePath: model.sourcePath)
        out.attachments = model.attachments
        out.opsetImports = model.opsetImports
        out.functions = model.functions
        out.formatExtras = model.formatExtras
        return out
    }

    /// The Llama-family map of `model` for `pass`.
    /// - Throws: `KilnError(.unsupported)` naming the supported architectures and the model's own
    ///   (`config.json` `architectures[0]`), with the topology's error as cause.
    public static func llamaTopology(_ model: Model, pass: String) throws -> LinearTopology {
        do {
            return try LinearTopology.llama(model)
        } catch let e as KilnError where e.kind == .unsupported {
            let arch = model.config?["architectures"]?[0]?.stringValue ?? model.config?["model_type"]?.stringValue ?? "unknown"
            throw KilnError(.unsupported, file: model.sourcePath,
                            "\(pass) supports Llama-family models (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM); this model is \(arch)",
                            cause: e)
        }
    }

    /// A scalar f32 tensor of shape [1] (per-tensor scales).
    public static func scalar(_ name: String, _ value: Float) -> Tensor {
        Tensor(name: name, dtype: .f32, shape: [1], values: [value])
    }
}
