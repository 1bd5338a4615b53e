import KilnCore

extension RankBuilder {
    /// Emit one TensorRT-LLM linear on every rank: weight, bias, and the scales its format needs
    /// (split rules: ModelOpt postprocess.py `_split_model_config_for_tp`).
    mutating func linear(_ l: LinearSpec, shared: [String: (weight: Float, input: Float?)]) throws {
        let weights = try partWeights(l)
        try checkShapes(l, weights)
        let quant = try LinearQuant.classify(l, weights: weights)
        let biasTensors = l.parts.map { model[$0.bias] }
        guard biasTensors.allSatisfy({ $0 == nil }) || biasTensors.allSatisfy({ $0 != nil }) else {
            throw KilnError(.invalidInput, path: ["tensor \"\(l.parts[0].bias)\""], "\(l.trt): some fused parts have a bias and some do not")
        }
        var hasInput = false
        switch quant.format {
        case .float:
            try floatWeight(l, weights)
        case .fp8:
            hasInput = try fp8(l, weights, quant, shared: shared[l.shareGroup]!)
        case .fp8PerChannel:
            try fp8PerChannel(l, weights, quant)
        case .int8:
            hasInput = try int8(l, weights, quant)
        case .int4(let group):
            hasInput = try int4(l, weights, quant, group: group)
        }
        if quant.specs.contains(where: { $0?.sparsity == .twoFour }) { sparse = true }
        if biasTensors.allSatisfy({ $0 != nil }) {
            let biases = try l.parts.map { try source($0.bias) }
            try bias(l, biases)
        }
        formats.append((l.trt, quant.format, hasInput))
    }

    func checkShapes(_ l: LinearSpec, _ weights: [Tensor]) throws {
        var rowsOf: [String: Int] = [:]
        for p in l.parts { rowsOf[p.weight, default: 0] += p.rows }
        for (p, t) in zip(l.parts, weights) {
            let rows = p.weight == "lm_head.weight" ? plan.spec.vocab : rowsOf[p.weight]!
            let expected: Shape = p.transposed ? [l.inFeatures, rows] : [rows, l.inFeatures]
            guard t.shape == expected else {
                throw KilnError.mismatch(file: nil, path: ["tensor \"\(t.name)\"", "shape"], expected: "\(expected) (from config.json)", found: "\(t.shape)")
            }
        }
    }

    /// The blocks of rank `r`'s weight rows, in part order, plus lm_head's zero padding.
    func blocks(_ l: LinearSpec, _ sources: [Source], rank r: Int, cols: Range<Int>) -> [Block] {
        var out: [Block] = []
        for (p, s) in zip(l.parts, sources) {
            let rr = p.rankRows[r]
            out.append(Block(source: s, rows: (p.rowOffset + rr.lowerBound)..<(p.rowOffset + rr.upperBound), cols: cols))
        }
        if let padded = l.paddedRowsPerRank {
            let have = out.reduce(0) { $0 + $1.rowCount }
            if padded > have { out.append(Block(source: nil, rows: 0..<0, cols: cols, zeroRows: padded - have)) }
        }
        return out
    }

    /// Same tensor, same layout on every rank: tp 1, or a row-parallel weight at tp 1 (zero-copy rename).
    func isIdentity(_ l: LinearSpec) -> Bool {
        tp == 1 && l.parts.count == 1 && !l.parts[0].transposed && l.paddedRowsPerRank.map { $0 == l.parts[0].rows } ?? true
    }

    mutating func floatWeight(_ l: LinearSpec, _ weights: [Tensor]) throws {
        let dt = weights[0].dtype
        guard weights.allSatisfy({ $0.dtype == dt }), dt.isFloat else {
            throw KilnError(.unsupported, path: ["tensor \"\(weights[0].name)\""], "\(l.trt): fused parts must share one float dtype")
        }
        if isIdentity(l) { return emitAll(renamed(weights[0], l.trt + ".weight")) }
        try assembled(l, l.trt + ".weight", dt, weights.map { Source(tensor: $0, transposed: l.parts[0].transposed) })
    }

    /// Emit `[rows_r, cols_r]` of the parts on each rank.
    mutating func assembled(_ l: LinearSpec, _ name: String, _ dt: DType, _ sources: [Source]) throws {
        let e = sources[0].elementSize
        for r in 0..<tp {
            let cols = l.cols(rank: r)
            let b = blocks(l, sources, rank: r, cols: cols)
            emit(r, Assemble.deferred(name, dt, [l.rows(rank: r), cols.count]) { try Assemble.rows(b, cols: cols.count, elementSize: e) })
        }
    }

    /// Column-parallel biases split with their rows; row-parallel ones are replicated (gpt/convert.py split()).
    mutating func bias(_ l: LinearSpec, _ biases: [Tensor]) throws {
        for (p, b) in zip(l.parts, biases) {
            let n = p.weight == "lm_head.weight" ? plan.spec.vocab : l.parts.filter { $0.bias == p.bias }.reduce(0) { $0 + $1.rows }
            guard b.shape == [n] else {
                throw KilnError.mismatch(file: nil, path: ["tensor \"\(b.name)\"", "shape"], expected: "[\(n)]", found: "\(b.shape)")
            }
        }
        let name = l.trt + ".bias"
        if l.parallel == .row || isIdentity(l) { return emitAll(renamed(biases[0], name)) }
        let sources = biases.map { Source(tensor: $0) }
        let e = Blocks.elementSize(biases[0].dtype)
        for r in 0..<tp {
            let b = blocks(l, sources, rank: r, cols: 0..<1)
            emit(r, Assemble.deferred(name, biases[0].dtype, [l.rows(rank: r)]) { try Assemble.rows(b, cols: 1, elementSize: e) })
        }
    }

    func refusePadding(_ l: LinearSpec, _ weights: [Tensor]) throws {
        if let padded = l.paddedRowsPerRank, padded * tp != l.outFeatures {
            throw KilnError(.unsupported, path: ["tensor \"\(weights[0].name)\""],
                            "dim 0 (\(l.outFeatures)) is not divisible by tp \(tp); a float lm_head is zero-padded, a quantized one cannot be")
        }
    }

    // MARK: - FP8

    /// F8_E4M3 weight; per-tensor weight and activation scales shared by the group (a part with a
    /// smaller scale is requantized to the shared one: ScaleValues.requantizeFP8).
    mutating func fp8(_ l: LinearSpec, _ weights: [Tensor], _ q: LinearQuant, shared: (weight: Float, input: Float?)) throws -> Bool {
        try refusePadding(l, weights)
        var sources: [Source] = []
        var requantized = false
        for (t, spec) in zip(weights, q.specs) {
            let s = try ScaleValues.scalar(spec!.scale, "scale")
            requantized = requantized || s != shared.weight
            sources.append(Source(tensor: s == shared.weight ? t : ScaleValues.requantizeFP8(t, from: s, to: shared.weight)))
        }
        if isIdentity(l) && !requantized {
            emitAll(renamed(weights[0], l.trt + ".weight"))
        } else {
            try assembled(l, l.trt + ".weight", .f8e4m3fn, sources)
        }
        emitAll(Assemble.f32(l.trt + ".weights_scaling_factor", [1], [shared.weight]))
        if let a = shared.input { emitAll(Assemble.f32(l.trt + ".activation_scaling_factor", [1], [a])) }
        return shared.input != nil
    }

    /// F8_E4M3 weight (split like any weight) and `per_channel_scale` F32 [rows_r] (TensorRT-LLM's
    /// Fp8RowwiseLinear); no activation scale: activations are quantized per token at run time.
    mutating func fp8PerChannel(_ l: LinearSpec, _ weights: [Tensor], _ q: LinearQuant) throws {
        try refusePadding(l, weights)
        if isIdentity(l) {
            emitAll(renamed(weights[0], l.trt + ".weight"))
        } else {
            try assembled(l, l.trt + ".weight", .f8e4m3fn, weights.map { Source(tensor: $0) })
        }
        try rowScales(l, q.specs.map { $0! }, name: l.trt + ".per_channel_scale")
    }

    /// One f32 scale per output row, named `name`: column-parallel split with the rows, row-parallel
    /// replicated (every rank holds all output rows).
    mutating func rowScales(_ l: LinearSpec, _ specs: [QuantSpec], name: String) throws {
        for (p, s) in zip(l.parts, specs) where s.scale.elementCount != p.rows {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(p.weight)\"", "scale"], expected: "\(p.rows) per-channel values", found: "\(s.scale.elementCount)")
        }
        let scales = specs.map { $0.scale.converted(to: .f32) }
        if l.parallel == .row {
            emitAll(renamed(scales[0], name))
        } else {
            let sources = scales.map { Source(tensor: $0) }
            for r in 0..<tp {
                let b = blocks(l, sources, rank: r, cols: 0..<1)
                emit(r, Assemble.deferred(name, .f32, [l.rows(rank: r)]) { try Assemble.rows(b, cols: 1, elementSize: 4) })
            }
        }
    }

    // MARK: - INT8 SmoothQuant

    mutating func int8(_ l: LinearSpec, _ weights: [Tensor], _ q: LinearQuant) throws -> Bool {
        try refusePadding(l, weights)
        let specs = q.specs.map { $0! }
        try assembled(l, l.trt + ".weight", .i8, weights.map { Source(tensor: $0) })
        try rowScales(l, specs, name: l.trt + ".weights_scaling_factor")
        let hasInput = try activationScale(l, specs, weights)
        try preQuant(l, specs, weights)
        return hasInput
    }

    // MARK: - INT4 AWQ

    /// Weight packed per rank with Int4Packing.packRowPairs (I8 [rows_r / 2, cols_r]); group scales
    /// F32 [rows_r, cols_r / G]: column-parallel splits rows, row-parallel splits groups.
    mutating func int4(_ l: LinearSpec, _ weights: [Tensor], _ q: LinearQuant, group: Int) throws -> Bool {
        try refusePadding(l, weights)
        let specs = q.specs.map { $0! }
        let first = weights[0].name
        guard l.inFeatures % group == 0 else {
            throw KilnError(.unsupported, path: ["tensor \"\(first)\""], "dim 1 (\(l.inFeatures)) is not a multiple of the group size \(group): a TensorRT-LLM checkpoint stores whole groups only; quantize with --option indivisible=skip to keep such layers in high precision, or write ONNX (--to onnx), which stores a partial last block")
        }
        if l.parallel == .row, (l.inFeatures / tp) % group != 0 {
            throw KilnError(.invalidInput, path: ["tensor \"\(first)\""],
                            "dim 1 (\(l.inFeatures)) split over tp \(tp) gives \(l.inFeatures / tp) columns per rank, not a multiple of the group size \(group) (row-parallel \(l.trt))")
        }
        for r in 0..<tp where l.rows(rank: r) % 2 != 0 {
            throw KilnError(.invalidInput, path: ["tensor \"\(first)\""],
                            "\(l.trt) has \(l.rows(rank: r)) rows on rank \(r) (tp \(tp)); int4 packs two rows per byte and needs an even count")
        }
        for (p, s) in zip(l.parts, specs) where s.scale.elementCount != p.rows * (l.inFeatures / group) {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(p.weight)\"", "scale"], expected: "[\(p.rows), \(l.inFeatures / group)]", found: "\(s.scale.shape)")
        }
        let sources = weights.map { Source(tensor: $0, unpack: .irInt4) }
        for r in 0..<tp {
            let cols = l.cols(rank: r)
            let b = blocks(l, sources, rank: r, cols: cols)
            let rows = l.rows(rank: r)
            emit(r, Assemble.deferred(l.trt + ".weight", .i8, [rows / 2, cols.count]) {
                let values = try Assemble.rows(b, cols: cols.count, elementSize: 1)
                let packed = Int4Packing.packRowPairs(UnsafeBufferPointer(start: values.pointer.assumingMemoryBound(to: Int8.self), count: values.count),
                                                      rows: rows, cols: cols.count)
                return TensorBuffer(values: packed)
            })
        }
        let scales = specs.map { Tensor(name: $0.scale.name, dtype: $0.scale.dtype, shape: [$0.scale.elementCount / (l.inFeatures / group), l.inFeatures / group], storage: $0.scale.storage).converted(to: .f32) }
        let scaleSources = scales.map { Source(tensor: $0) }
        for r in 0..<tp {
            let cols = l.cols(rank: r)
            let groups = (cols.lowerBound / group)..<(cols.upperBound / group)
            let b = blocks(l, scaleSources, rank: r, cols: groups)
            emit(r, Assemble.deferred(l.trt + ".weights_scaling_factor", .f32, [l.rows(rank: r), groups.count]) {
                try Assemble.rows(b, cols: groups.count, elementSize: 4)
            })
        }
        try preQuant(l, specs, weights)
        let hasInput = try activationScale(l, specs, weights)
        if hasInput || record?.algorithm == "W4A8_AWQ" {
            // weights_scaling_factor_2 = amax(weight) / 448 = max(group scale) · 7 / 448 (ModelOpt W4A8).
            let m = try specs.map { try $0.scale.floats().max() ?? 0 }.max() ?? 0
            emitAll(Assemble.f32(l.trt + ".weights_scaling_factor_2", [1], [m * 7 / 448]))
        }
        return hasInput
    }

    // MARK: - Shared scales

    /// activation_scaling_factor F32 [1]: the maximum over the fused parts (ModelOpt preprocess_linear_fusion).
    mutating func activationScale(_ l: LinearSpec, _ specs: [QuantSpec], _ weights: [Tensor]) throws -> Bool {
        let inputs = try specs.compactMap { try $0.inputScale.map { try ScaleValues.scalar($0, "input scale") } }
        guard inputs.isEmpty || inputs.count == specs.count else {
            throw KilnError(.invalidInput, path: ["tensor \"\(weights[0].name)\""], "\(l.trt): some fused parts have a static input scale and some do not")
        }
        guard let a = inputs.max() else { return false }
        emitAll(Assemble.f32(l.trt + ".activation_scaling_factor", [1], [a]))
        return true
    }

    /// prequant_scaling_factor [in] in the checkpoint dtype: one per fused linear (parts must agree),
    /// all ones when the IR has none (folded into the norm); column-parallel replicated, row-parallel split.
    mutating func preQuant(_ l: LinearSpec, _ specs: [QuantSpec], _ weights: [Tensor]) throws {
        let pqs = specs.map(\.preQuantScale)
        let pq: Tensor
        if pqs.allSatisfy({ $0 == nil }) {
            pq = Tensor(name: "ones", dtype: .f32, shape: [l.inFeatures], values: [Float](repeating: 1, count: l.inFeatures)).converted(to: dtype)
        } else {
            guard pqs.allSatisfy({ $0 != nil }), try ScaleValues.equal(pqs.map { $0! }) else {
                throw KilnError(.unsupported, path: ["tensor \"\(weights[0].name)\""],
                                "\(l.trt) fuses \(weights.map(\.name).joined(separator: ", ")) but their pre-quant scales differ; TensorRT-LLM holds one per fused linear (smooth them with a shared scale)")
            }
            guard pqs[0]!.elementCount == l.inFeatures else {
                throw KilnError.mismatch(file: nil, path: ["tensor \"\(weights[0].name)\"", "pre-quant scale"], expected: "\(l.inFeatures) values", found: "\(pqs[0]!.elementCount)")
            }
            pq = Tensor(name: pqs[0]!.name, dtype: pqs[0]!.dtype, shape: [l.inFeatures], storage: pqs[0]!.storage).converted(to: dtype)
        }
        let name = l.trt + ".prequant_scaling_factor"
        if l.parallel == .column || tp == 1 { return emitAll(renamed(pq, name)) }
        let e = Blocks.elementSize(dtype)
        for r in 0..<tp {
            let cols = l.cols(rank: r)
            let b = [Block(source: Source(tensor: pq), rows: cols, cols: 0..<1)]
            emit(r, Assemble.deferred(name, dtype, [cols.count]) { try Assemble.rows(b, cols: 1, elementSize: e) })
        }
    }

    // MARK: - config.json quantization

    /// The `quantization` object: algorithm from the tensors (checked against the model's record),
    /// exclude_modules = TensorRT-LLM names of the float linears.
    func quantSection() throws -> QuantSection {
        var s = QuantSection()
        let quantized = formats.filter { $0.format != .float }
        if let first = quantized.first {
            guard quantized.allSatisfy({ $0.format.algorithm == first.format.algorithm }) else {
                throw KilnError(.unsupported, path: [first.trt], "mixed quantization formats in one checkpoint are not supported")
            }
            var algo = first.format.algorithm!
            if case .int4(let g) = first.format {
                s.groupSize = g
                s.preQuantScale = true
                if record?.algorithm == "W4A8_AWQ" || quantized.contains(where: \.hasInputScale) { algo = "W4A8_AWQ" }
            }
            // INT8 SmoothQuant without static activation scales: per-token dynamic activations.
            if first.format == .int8, !quantized.contains(where: \.hasInputScale), record?.algorithm == Layout.int8PerToken {
                algo = Layout.int8PerToken
            }
            if let recorded = record?.algorithm, recorded != algo {
                throw KilnError.mismatch(file: nil, path: ["quantization record"], expected: "\"\(algo)\" (what the tensors hold)", found: "\"\(recorded)\"")
            }
            s.quantAlgo = algo
            s.excludeModules = formats.filter { $0.format == .float }.map(\.trt)
        } else if let g = record?.groupSize {
            s.groupSize = g
        }
        if kvLayers > 0 {
            let kv = record?.kvCacheAlgorithm ?? "FP8"
            guard Layout.kvCacheAlgorithms.contains(kv) else {
                throw KilnError.mismatch(file: nil, path: ["quantization record", "kv cache"], expected: Layout.kvCacheAlgorithms.joined(separator: " or "), found: "\"\(kv)\"")
            }
            s.kvCacheAlgo = kv
        } else if let kv = record?.kvCacheAlgorithm {
            throw KilnError(.invalidInput, path: ["quantization record", "kv cache"], "says \(kv) but the model has no k_scale / v_scale tensors")
        }
        return s
    }
}
