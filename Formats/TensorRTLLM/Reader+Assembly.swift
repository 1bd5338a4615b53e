import KilnCore

/// Builds the Hugging Face tensors of a checkpoint, item by item (inverse of RankBuilder).
struct ModelAssembly {
    let job: ReadJob
    var tensors: [Tensor] = []
    /// HF module names of float linears (the record's excluded modules).
    var floatModules: [String] = []

    init(job: ReadJob) { self.job = job }

    var ranks: RankSet { job.ranks }
    var plan: Plan { job.plan }
    var tp: Int { job.config.tp }

    func renamed(_ t: Tensor, _ name: String, shape: Shape? = nil) -> Tensor {
        Tensor(name: name, dtype: t.dtype, shape: shape ?? t.shape, storage: t.storage)
    }

    mutating func plain(_ p: PlainSpec) throws {
        if p.kind == .replicated {
            let all = try ranks.all(p.trt, shape: { _ in [p.rows] })
            return tensors.append(renamed(all[0], p.hf))
        }
        let dtype = ranks.entries[0][p.trt]?.dtype
        let shards = try ranks.all(p.trt, shape: { r in
            let (_, stored, cols) = self.plan.embeddingRows(p, rank: r)
            return [stored, cols.count]
        }, dtype: dtype)
        guard plan.parallelEmbedding, tp > 1 else { return tensors.append(renamed(shards[0], p.hf)) }
        let pieces = (0..<tp).map { r -> (source: Source, srcRows: Range<Int>, row: Int, col: Int) in
            let (rows, _, cols) = plan.embeddingRows(p, rank: r)
            return (Source(tensor: shards[r]), 0..<rows.count, rows.lowerBound, cols.lowerBound)
        }
        let e = Blocks.elementSize(shards[0].dtype)
        tensors.append(Assemble.deferred(p.hf, shards[0].dtype, [p.rows, p.cols]) {
            try Assemble.scatter(pieces, rows: p.rows, cols: p.cols, elementSize: e, transposed: false)
        })
    }

    mutating func kvCache(k: String, v: String, trt: String) throws {
        let kName = trt + "k_cache_scaling_factor", vName = trt + "v_cache_scaling_factor", kvName = trt + "kv_cache_scaling_factor"
        let ks: Float, vs: Float
        if ranks.has(kName) || ranks.has(vName) {
            ks = try ranks.scalar(kName)
            vs = try ranks.scalar(vName)
        } else if ranks.has(kvName) {
            ks = try ranks.scalar(kvName)
            vs = ks
        } else {
            return
        }
        tensors.append(Assemble.f32(k, [], [ks]))
        tensors.append(Assemble.f32(v, [], [vs]))
    }

    /// The weight format on rank 0, from the weight dtype and the shape of weights_scaling_factor.
    func format(_ l: LinearSpec) throws -> WeightFormat {
        let wName = l.trt + ".weight"
        guard let w = ranks.entries[0][wName] else {
            throw KilnError(.invalidInput, file: ranks.path(0), path: ["tensor \"\(wName)\""], "missing (expected from \(ranks.describe))")
        }
        guard let s = ranks.entries[0][l.trt + ".weights_scaling_factor"] else {
            if w.dtype == .f8e4m3fn, ranks.has(l.trt + ".per_channel_scale") { return .fp8PerChannel }
            guard w.dtype.isFloat, w.dtype != .f8e4m3fn else {
                throw KilnError(.invalidInput, file: ranks.path(0), path: ["tensor \"\(wName)\""], "\(w.dtype.safetensorsName) weight without weights_scaling_factor (or per_channel_scale for FP8 per-channel)")
            }
            return .float
        }
        switch (w.dtype, s.shape.rank) {
        case (.f8e4m3fn, _): return .fp8
        case (.i8, 1): return .int8
        case (.i8, 2):
            let cols = l.cols(rank: 0).count
            guard s.shape[1] > 0, cols % s.shape[1] == 0 else {
                throw KilnError.mismatch(file: ranks.path(0), path: ["tensor \"\(l.trt).weights_scaling_factor\"", "shape"],
                                         expected: "[rows, \(cols) / group]", found: "\(s.shape)")
            }
            return .int4(group: cols / s.shape[1])
        default:
            throw KilnError(.invalidInput, file: ranks.path(0), path: ["tensor \"\(wName)\""],
                            "\(w.dtype.safetensorsName) weight with a \(s.shape.rank)-D weights_scaling_factor is not a layout TensorRT-LLM defines")
        }
    }

    /// Pieces that put rank tensors' rows back into one HF tensor (KV heads repeated over ranks are
    /// taken once, from the first rank that holds them).
    func pieces(_ l: LinearSpec, weight: String, sources: [Source]) -> [(source: Source, srcRows: Range<Int>, row: Int, col: Int)] {
        var out: [(source: Source, srcRows: Range<Int>, row: Int, col: Int)] = []
        var seen = Set<[Int]>()
        for r in 0..<tp {
            var offset = 0
            for (i, p) in l.parts.enumerated() {
                let rr = p.rankRows[r]
                defer { offset += rr.count }
                guard p.weight == weight, seen.insert([i, rr.lowerBound, l.cols(rank: r).lowerBound]).inserted else { continue }
                out.append((sources[r], offset..<(offset + rr.count), p.rowOffset + rr.lowerBound, l.cols(rank: r).lowerBound))
            }
        }
        return out
    }

    mutating func linear(_ l: LinearSpec) throws {
        let format = try format(l)
        if format == .float { floatModules += plan.hfModules(ofTRT: l.trt) }
        if l.trt == "lm_head", plan.spec.tied { return }
        let dtype = ranks.entries[0][l.trt + ".weight"]!.dtype
        let rowsShape: (Int) -> Shape = {
            if case .int4 = format { return [l.rows(rank: $0) / 2, l.cols(rank: $0).count] }
            return [l.rows(rank: $0), l.cols(rank: $0).count]
        }
        let weights = try ranks.all(l.trt + ".weight", shape: rowsShape, dtype: dtype)
        var distinct: [String] = []
        for p in l.parts where !distinct.contains(p.weight) { distinct.append(p.weight) }
        let specs = try quantSpecs(l, format: format)
        let hasBias = ranks.has(l.trt + ".bias")
        let biases = hasBias ? try ranks.all(l.trt + ".bias", shape: { l.parallel == .row ? [l.parts[0].rows] : [l.rows(rank: $0)] }) : []
        for name in distinct {
            let parts = l.parts.filter { $0.weight == name }
            let rows = parts.reduce(0) { $0 + $1.rows }
            let transposed = parts[0].transposed
            let shape: Shape = transposed ? [l.inFeatures, rows] : [rows, l.inFeatures]
            let index = l.parts.firstIndex { $0.weight == name }!
            var t: Tensor
            if case .int4 = format {
                let p = pieces(l, weight: name, sources: weights.map { Source(tensor: $0, unpack: .rowPairs) })
                t = Assemble.deferred(name, .i4, shape) {
                    let values = try Assemble.scatter(p, rows: rows, cols: l.inFeatures, elementSize: 1, transposed: false)
                    let v = Array(UnsafeBufferPointer(start: values.pointer.assumingMemoryBound(to: Int8.self), count: values.count))
                    return TensorBuffer(values: Int4Packing.packIR(v))
                }
            } else if tp == 1 && l.parts.count == 1 && !transposed && l.paddedRowsPerRank.map({ $0 == rows }) ?? true {
                t = renamed(weights[0], name, shape: shape)
            } else {
                let p = pieces(l, weight: name, sources: weights.map { Source(tensor: $0) })
                let e = Blocks.elementSize(dtype)
                t = Assemble.deferred(name, dtype, shape) {
                    try Assemble.scatter(p, rows: rows, cols: l.inFeatures, elementSize: e, transposed: transposed)
                }
            }
            t.quant = specs[index]
            tensors.append(t)
            if hasBias {
                let bname = parts[0].bias
                if l.parallel == .row || tp == 1 && l.parts.count == 1 {
                    tensors.append(renamed(biases[0], bname, shape: [rows]))
                } else {
                    let p = pieces(l, weight: name, sources: biases.map { Source(tensor: $0) }).map { ($0.source, $0.srcRows, $0.row, 0) }
                    let e = Blocks.elementSize(biases[0].dtype)
                    tensors.append(Assemble.deferred(bname, biases[0].dtype, [rows]) {
                        try Assemble.scatter(p, rows: rows, cols: 1, elementSize: e, transposed: false)
                    })
                }
            }
        }
    }
}
