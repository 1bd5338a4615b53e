import KilnCore

/// Which linears an INT4 pass quantizes, grouped by shared input, and which it leaves in high precision.
struct Int4Plan {
    /// Linears reading one input, with the norm that produces it.
    struct Group {
        /// "qkv", "o", "gate_up", "down", "lm_head".
        var role: String
        /// Decoder layer index (nil for lm_head).
        var layer: Int?
        /// The norm producing the input (the AWQ scales fold into it), if any.
        var norm: String?
        /// The weights to quantize, in topology order.
        var members: [String]
        /// Members of the topology group left in high precision (excluded by a pattern).
        var excludedMembers: [String]
        /// Input width.
        var cols: Int
        /// Whether the width is not a multiple of the group size (quantized with a partial last group).
        var partial: Bool
    }

    var groups: [Group]
    /// Module names left in high precision, in layer order, then `lm_head` (the record's `excludedModules`).
    var excludedModules: [String]
    /// Human-readable notes for the provenance (skipped layers and why).
    var notes: [String]

    /// Plan `model` for `options`.
    /// - Throws: `KilnError` when the model is already quantized, is not Llama-family, has a non-float or
    ///   non-2-D linear weight, or (with `indivisible=error`) an input width that is not a multiple of the
    ///   group size — naming the tensor.
    init(model: Model, options: Int4Options, pass: String) throws {
        if let q = model.quantization {
            throw KilnError(.invalidInput, file: model.sourcePath, path: ["quantization record"],
                            "the model is already quantized (\(q.algorithm)); \(pass) needs a floating-point checkpoint")
        }
        let topology = try LinearTopology.llama(model)
        let g = options.groupSize
        groups = []
        excludedModules = []
        notes = []
        var lmHeadExcluded = false
        var skipped: [Int: Int] = [:], padded: [Int: Int] = [:]   // input width → linears
        for group in topology.groups {
            if group.role == "lm_head" {
                let tied = topology.lmHead == topology.embedding
                if !options.quantizeLMHead || tied || options.excludes("lm_head.weight") {
                    lmHeadExcluded = true
                    if options.quantizeLMHead && tied { notes.append("lm_head is tied to the embedding: kept in high precision") }
                    continue
                }
            }
            var members: [String] = [], excluded: [String] = []
            var cols = 0
            for name in group.weights {
                guard let t = model[name] else {
                    throw KilnError(.invalidInput, file: model.sourcePath, path: ["tensor \"\(name)\""], "missing")
                }
                try Int4Plan.check(t)
                cols = t.shape[1]
                if options.excludes(name) { excluded.append(name) } else { members.append(name) }
            }
            excludedModules += excluded.map(Int4Plan.module)
            guard !members.isEmpty else { continue }
            var partial = false
            if cols % g != 0 {
                switch options.indivisible {
                case .error:
                    throw KilnError(.invalidInput, path: ["tensor \"\(members[0])\""],
                                    "input width \(cols) is not a multiple of the group size \(g); use indivisible=skip to keep it in high precision or indivisible=pad for a partial last group")
                case .skip:
                    excludedModules += members.map(Int4Plan.module)
                    skipped[cols, default: 0] += members.count
                    continue
                case .pad:
                    partial = true
                    padded[cols, default: 0] += members.count
                }
            }
            groups.append(Group(role: group.role, layer: group.layer, norm: group.norm, members: members, excludedMembers: excluded, cols: cols, partial: partial))
        }
        if lmHeadExcluded { excludedModules.append("lm_head") }
        for (cols, n) in skipped.sorted(by: { $0.key < $1.key }) {
            notes.append("\(n) linears of input width \(cols) (not a multiple of \(g)) kept in high precision")
        }
        for (cols, n) in padded.sorted(by: { $0.key < $1.key }) {
            notes.append("\(n) linears of input width \(cols) quantized with a last group of \(cols % g)")
        }
    }

    /// The module name of a weight (`….q_proj.weight` → `….q_proj`).
    static func module(_ weight: String) -> String {
        weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
    }

    /// Refuse a weight that is already quantized, not floating point, or not 2-D.
    static func check(_ t: Tensor) throws {
        let at = ["tensor \"\(t.name)\""]
        if t.quant != nil || !t.dtype.isFloat {
            throw KilnError(.invalidInput, path: at, "already quantized (\(t.dtype)); quantize the floating-point checkpoint")
        }
        guard t.shape.rank == 2, t.shape[0] > 0, t.shape[1] > 0 else {
            throw KilnError.mismatch(file: nil, path: at, expected: "a 2-D [out, in] linear weight", found: "shape \(t.shape)")
        }
    }

    /// A copy of `model` with `replaced` tensors swapped in (same order), the record and one more provenance line.
    static func output(_ model: Model, replacing replaced: [String: Tensor], record: QuantizationRecord, provenance: String) throws -> Model {
        let tensors = model.tensors.map { replaced[$0.name] ?? $0 }
        let out = try Model(tensors: tensors, graph: model.graph, config: model.config, metadata: model.metadata,
                            quantization: record, provenance: model.provenance + [provenance], sourcePath: model.sourcePath)
        out.attachments = model.attachments
        out.opsetImports = model.opsetImports
        out.functions = model.functions
        out.formatExtras = model.formatExtras
        return out
    }
}
