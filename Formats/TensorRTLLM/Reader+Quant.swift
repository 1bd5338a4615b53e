import KilnCore

extension ModelAssembly {
    /// QuantSpecs of the parts of a quantized linear, indexed like `l.parts` (nil for float).
    /// Scales keep TensorRT-LLM's split rules in reverse (ModelOpt postprocess.py merge rules):
    /// per-tensor values come from rank 0, per-channel / group scales are reassembled like the weight,
    /// row-parallel pre-quant scales are concatenated; an all-ones pre-quant scale is dropped
    /// (the writer writes ones when the IR has none).
    func quantSpecs(_ l: LinearSpec, format: WeightFormat) throws -> [QuantSpec?] {
        if format == .float { return l.parts.map { _ in nil } }
        if l.parts.contains(where: \.transposed) {
            throw KilnError(.unsupported, file: ranks.path(0), path: ["tensor \"\(l.trt).weight\""],
                            "quantized GPT-2 (Conv1D) checkpoints are not supported yet")
        }
        let sparsity: QuantSpec.Sparsity? = job.config.sparse ? .twoFour : nil
        let wsf = l.trt + ".weights_scaling_factor", asf = l.trt + ".activation_scaling_factor"
        let input: Float? = ranks.has(asf) ? try ranks.all(asf, shape: { _ in [1] }).first.map { try ScaleValues.scalar($0, asf) } : nil
        func inputScale(_ p: LinearPart) -> Tensor? { input.map { Assemble.f32(p.module + ".input_scale", [], [$0]) } }

        switch format {
        case .float:
            return l.parts.map { _ in nil }
        case .fp8:
            let ws = try ScaleValues.scalar(try ranks.all(wsf, shape: { _ in [1] }, dtype: .f32)[0], wsf)
            return l.parts.map { p in
                QuantSpec(format: .fp8e4m3, granularity: .perTensor, scale: Assemble.f32(p.module + ".weight_scale", [], [ws]),
                          inputScale: inputScale(p), sparsity: sparsity)
            }
        case .fp8PerChannel:
            let scale = try rowScales(l, name: l.trt + ".per_channel_scale")
            return l.parts.map { p in
                QuantSpec(format: .fp8e4m3, granularity: .perChannel(axis: 0), scale: scale(p), sparsity: sparsity)
            }
        case .int8:
            let scale = try rowScales(l, name: wsf)
            let pq = try preQuant(l)
            return l.parts.map { p in
                QuantSpec(format: .int8, granularity: .perChannel(axis: 0), scale: scale(p),
                          preQuantScale: pq.map { renamed($0, p.module + ".pre_quant_scale") }, inputScale: inputScale(p), sparsity: sparsity)
            }
        case .int4(let group):
            let groups = l.inFeatures / group
            let scales = try ranks.all(wsf, shape: { [l.rows(rank: $0), l.cols(rank: $0).count / group] }, dtype: .f32)
            let pq = try preQuant(l)
            return l.parts.map { p in
                let pieces: [(source: Source, srcRows: Range<Int>, row: Int, col: Int)]
                if l.parallel == .row {
                    pieces = (0..<tp).map { r in (Source(tensor: scales[r]), 0..<p.rows, 0, l.cols(rank: r).lowerBound / group) }
                } else {
                    pieces = self.pieces(l, weight: p.weight, sources: scales.map { Source(tensor: $0) }).map { ($0.source, $0.srcRows, $0.row, 0) }
                }
                let scale = Assemble.deferred(p.module + ".weight_scale", .f32, [p.rows, groups]) {
                    try Assemble.scatter(pieces, rows: p.rows, cols: groups, elementSize: 4, transposed: false)
                }
                return QuantSpec(format: .int4, granularity: .perBlock(axis: 1, size: group), scale: scale,
                          preQuantScale: pq.map { renamed($0, p.module + ".pre_quant_scale") }, inputScale: inputScale(p), sparsity: sparsity)
            }
        }
    }

    /// Per-output-row f32 scales stored as `name` ([rows_r] per rank; row-parallel: all rows on every
    /// rank), as a function giving each part's `[rows]` scale tensor.
    func rowScales(_ l: LinearSpec, name: String) throws -> (LinearPart) -> Tensor {
        let scales = try ranks.all(name, shape: { l.parallel == .row ? [l.parts[0].rows] : [l.rows(rank: $0)] }, dtype: .f32)
        return { p in
            if l.parallel == .row { return renamed(scales[0], p.module + ".weight_scale") }
            let pieces = self.pieces(l, weight: p.weight, sources: scales.map { Source(tensor: $0) }).map { ($0.source, $0.srcRows, $0.row, 0) }
            return Assemble.deferred(p.module + ".weight_scale", .f32, [p.rows]) {
                try Assemble.scatter(pieces, rows: p.rows, cols: 1, elementSize: 4, transposed: false)
            }
        }
    }

    /// The pre-quant scale of a linear ([in], stored dtype), or nil when absent or all ones.
    func preQuant(_ l: LinearSpec) throws -> Tensor? {
        let name = l.trt + ".prequant_scaling_factor"
        guard ranks.has(name) else { return nil }
        let dtype = ranks.entries[0][name]!.dtype
        let shards = try ranks.all(name, shape: { [l.parallel == .row ? l.cols(rank: $0).count : l.inFeatures] }, dtype: dtype)
        let full: Tensor
        if l.parallel == .column || tp == 1 {
            full = shards[0]
        } else {
            let pieces = (0..<tp).map { r in (source: Source(tensor: shards[r]), srcRows: 0..<shards[r].elementCount, row: l.cols(rank: r).lowerBound, col: 0) }
            let e = Blocks.elementSize(dtype)
            full = Tensor(name: name, dtype: dtype, shape: [l.inFeatures],
                          storage: .owned(try Assemble.scatter(pieces, rows: l.inFeatures, cols: 1, elementSize: e, transposed: false)))
        }
        return try full.floats().allSatisfy({ $0 == 1 }) ? nil : full
    }
}
