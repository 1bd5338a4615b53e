import KilnCore

/// The state of one forward pass: live values and the token rows.
struct Run {
    let batch: Int
    let seq: Int
    let lengths: [Int]
    /// Position of the first token (the KV cache length).
    let offset: Int
    var values: [String: Activation] = [:]
    /// Token id per row (padding rows hold 0).
    var ids: [Int]
    var positions: [Int]
    var padding: [Bool]
    var rows: Int
    /// The keys/values of the current attention node when no cache is kept.
    var scratch: KVCache.Layer?

    init(ids: [[Int]], offset: Int) {
        batch = ids.count
        lengths = ids.map(\.count)
        seq = lengths.max()!
        self.offset = offset
        rows = batch * seq
        self.ids = Array(repeating: 0, count: rows)
        positions = Array(repeating: 0, count: rows)
        padding = Array(repeating: false, count: rows)
        for (b, sequence) in ids.enumerated() {
            for i in 0..<seq {
                let r = b * seq + i
                if i < sequence.count { self.ids[r] = sequence[i] } else { padding[r] = true }
                positions[r] = offset + i
            }
        }
    }

    /// Keep only each sequence's last real token (rows become one per sequence).
    mutating func selectLastRows() {
        let keep = (0..<batch).map { $0 * seq + lengths[$0] - 1 }
        for (name, v) in values where v.rows == rows { values[name] = v.selecting(rows: keep) }
        ids = keep.map { ids[$0] }
        positions = keep.map { positions[$0] }
        padding = keep.map { padding[$0] }
        rows = keep.count
    }
}

extension Executor {
    func execute(_ step: Step, _ run: inout Run, cache: KVCache?) throws {
        let context = ["graph", "node \"\(step.node.name)\""]
        func value(_ i: Int) throws -> Activation {
            guard case .value(let name) = step.operands[i], let v = run.values[name] else {
                throw KilnError(.unsupported, path: context + ["input \(i)"], "expected an activation (an earlier node's output)")
            }
            return v
        }
        func weightName(_ i: Int) throws -> String {
            guard case .weight(let name) = step.operands[i] else {
                throw KilnError(.unsupported, path: context + ["input \(i)"], "expected a weight")
            }
            return name
        }
        /// Input `i`'s buffer to overwrite: taken when this is its last use, else copied.
        func writable(_ i: Int) throws -> Activation {
            let v = try value(i)
            if case .value(let name) = step.operands[i], step.release.contains(name),
               step.operands.filter({ if case .value(name) = $0 { return true }; return false }).count == 1 {
                run.values[name] = nil
                return v
            }
            let copy = allocate(v.rows, v.cols)
            copy.pointer.update(from: v.pointer, count: v.count)
            return copy
        }
        func mismatch(_ what: String, expected: String, found: String) -> KilnError {
            KilnError.mismatch(file: nil, path: context + [what], expected: expected, found: found)
        }
        var result: Activation
        switch step.kind {
        case .gather:
            let name = try weightName(0)
            let indices: [Int]
            switch step.operands[1] {
            case .inputIDs: indices = run.ids
            case .positionIDs: indices = run.positions
            case .tokenTypeIDs: indices = Array(repeating: 0, count: run.rows)
            default: throw KilnError(.unsupported, path: context + ["input 1"], "expected input_ids, position_ids or token_type_ids")
            }
            let table = try weights.tensor(name)
            guard table.shape.rank == 2 else { throw mismatch("input 0", expected: "a 2-D table", found: table.shape.description) }
            let (count, width) = (table.shape[0], table.shape[1])
            if case .positionIDs = step.operands[1], let last = indices.max(), last >= count {
                throw KilnError.mismatch(file: nil, path: ["position_ids"], expected: "positions below \(count) (the rows of \"\(name)\")",
                                         found: "\(last)", note: "a sequence of \(last + 1) tokens is longer than the model's maximum of \(count) positions")
            }
            let data = try weights.floats(name)
            result = allocate(run.rows, width)
            for (r, id) in indices.enumerated() {
                guard id >= 0, id < count else {
                    throw KilnError.mismatch(file: nil, path: ["input_ids"], expected: "ids in 0..<\(count)", found: "\(id)")
                }
                (result.pointer + r * width).update(from: data.pointer + id * width, count: width)
            }
        case .add, .mul:
            var (first, second) = (0, 1)
            if case .weight = step.operands[0] { (first, second) = (1, 0) }
            result = try writable(first)
            let bPointer: UnsafePointer<Float>, bCount: Int
            if case .weight(let name) = step.operands[second] {
                let w = try weights.floats(name)
                (bPointer, bCount) = (UnsafePointer(w.pointer), w.count)
                guard bCount == result.cols || bCount == result.count else {
                    throw mismatch("input \(second)", expected: "\(result.cols) or \(result.count) values", found: "\(bCount)")
                }
                result.buffer = try combine(step.kind, result, bPointer, bCount, keep: w)
            } else {
                let b = try value(second)
                guard b.rows == result.rows, b.cols == result.cols else {
                    throw mismatch("input \(second)", expected: "[\(result.rows), \(result.cols)]", found: "[\(b.rows), \(b.cols)]")
                }
                result.buffer = try combine(step.kind, result, UnsafePointer(b.pointer), b.count, keep: b.buffer)
            }
        case .sigmoid:
            result = try writable(0)
            Kernels.sigmoid(result.pointer, count: result.count, result.pointer)
        case .tanh:
            result = try writable(0)
            Kernels.tanh(result.pointer, count: result.count)
        case .gelu(let tanh):
            result = try writable(0)
            Kernels.gelu(result.pointer, count: result.count, tanh: tanh)
        case .layerNorm(let eps):
            let x = try value(0), w = try weights.floats(try weightName(1))
            guard w.count == x.cols else { throw mismatch("input 1", expected: "\(x.cols) values", found: "\(w.count)") }
            var bias: FloatBuffer?
            if step.operands.count == 3, case .weight(let name) = step.operands[2] {
                bias = try weights.floats(name)
                guard bias!.count == x.cols else { throw mismatch("input 2", expected: "\(x.cols) values", found: "\(bias!.count)") }
            }
            result = allocate(x.rows, x.cols)
            Kernels.layerNorm(x: x.pointer, rows: x.rows, cols: x.cols, weight: w.pointer, bias: bias.map { UnsafePointer($0.pointer) },
                              eps: eps, y: result.pointer)
        case .firstToken:
            let x = try value(0)
            guard x.rows == run.batch * run.seq else {
                throw mismatch("input 0", expected: "\(run.batch * run.seq) rows (one per token)", found: "\(x.rows)")
            }
            result = allocate(run.batch, x.cols)
            for b in 0..<run.batch { (result.pointer + b * x.cols).update(from: x.pointer + b * run.seq * x.cols, count: x.cols) }
        case .softmax:
            result = try writable(0)
            let (p, cols) = (result.pointer, result.cols)
            Kernels.parallelRanges(count: result.rows, minimumChunk: 8) { lo, hi in
                for r in lo..<hi { Kernels.softmax(p + r * cols, count: cols, lo: 0, hi: cols) }
            }
        case .matMul:
            let x = try value(0), name = try weightName(1)
            let t = try weights.tensor(name)
            guard t.shape.rank == 2, t.shape[0] == x.cols else {
                throw mismatch("input 1", expected: "a [\(x.cols), N] weight", found: t.shape.description)
            }
            let w = try weights.floats(name)
            result = allocate(x.rows, t.shape[1])
            Kernels.gemm(m: x.rows, n: t.shape[1], k: x.cols, a: x.pointer, lda: x.cols, b: w.pointer, ldb: t.shape[1],
                         transB: false, c: result.pointer, ldc: t.shape[1])
        case .rmsNorm(let eps):
            let x = try value(0), w = try weights.floats(try weightName(1))
            guard w.count == x.cols else { throw mismatch("input 1", expected: "\(x.cols) values", found: "\(w.count)") }
            result = allocate(x.rows, x.cols)
            Kernels.rmsNorm(x: x.pointer, rows: x.rows, cols: x.cols, weight: w.pointer, eps: eps, y: result.pointer)
        case .linear(let inOut):
            result = try linear(step, run, value: try value(0), weight: try weightName(1), inOut: inOut, context: context)
        case .rope(let parameters, let heads, let headDim):
            result = try writable(0)
            guard result.cols == heads * headDim else {
                throw mismatch("input 0", expected: "\(heads) × \(headDim) columns", found: "\(result.cols)")
            }
            let key = "\(parameters)|\(headDim)"
            let table = ropeTables[key] ?? RopeTable(parameters: parameters, headDim: headDim)
            ropeTables[key] = table
            table.reserve((run.positions.max() ?? 0) + 1)
            run.positions.withUnsafeBufferPointer { pos in
                Kernels.rope(result.pointer, rows: result.rows, heads: heads, headDim: headDim, positions: pos.baseAddress!, table: table)
            }
        case .attention(let spec, let slot):
            var (q, k, v) = try spec.fused ? split(value(0), spec, context: context) : (value(0), value(1), value(2))
            defer { if spec.fused { pool.recycle(&q); pool.recycle(&k); pool.recycle(&v) } }
            let kvCols = spec.kvHeads * spec.headDim
            guard q.cols == spec.heads * spec.headDim, k.cols == kvCols, v.cols == kvCols, q.rows == run.batch * run.seq else {
                throw mismatch("inputs", expected: "q [\(run.batch * run.seq), \(spec.heads * spec.headDim)], k and v [.., \(kvCols)]",
                               found: "q [\(q.rows), \(q.cols)], k [\(k.rows), \(k.cols)], v [\(v.rows), \(v.cols)]")
            }
            let layer: KVCache.Layer
            if let cache {
                layer = cache.layer(slot, kvHeads: spec.kvHeads, headDim: spec.headDim)
            } else if let s = run.scratch, s.kvHeads == spec.kvHeads, s.headDim == spec.headDim {
                layer = s
            } else {
                layer = KVCache.Layer(batch: run.batch, kvHeads: spec.kvHeads, headDim: spec.headDim, capacity: run.seq)
                run.scratch = layer
            }
            layer.store(k: k.pointer, v: v.pointer, seq: run.seq, offset: run.offset)
            if let scales = try kvScales(for: step.node) { layer.fakeQuantizeFP8(offset: run.offset, seq: run.seq, scales: scales) }
            result = allocate(q.rows, q.cols)
            let keyLimits = spec.masked ? run.lengths.map { run.offset + $0 } : nil
            Kernels.attention(q: q.pointer, batch: run.batch, seq: run.seq, spec: spec, layer: layer, offset: run.offset,
                              keyLimits: keyLimits, out: result.pointer)
        }
        run.values[step.output] = result
    }

    /// A `rows × cols` activation from the pool.
    func allocate(_ rows: Int, _ cols: Int) -> Activation {
        Activation(buffer: pool.take(rows * cols), rows: rows, cols: cols)
    }

    /// `a ⊕ b` into `a`'s buffer (`keep` holds `b` alive).
    private func combine(_ kind: Step.Kind, _ a: Activation, _ b: UnsafePointer<Float>, _ bCount: Int, keep: AnyObject) throws -> FloatBuffer {
        withExtendedLifetime(keep) {
            if case .add = kind {
                Kernels.add(a.pointer, b, bCount: bCount, count: a.count, a.pointer)
            } else {
                Kernels.mul(a.pointer, b, bCount: bCount, count: a.count, a.pointer)
            }
        }
        return a.buffer
    }

    /// The columns `[q | k | v]` of a fused projection as three activations from the pool.
    private func split(_ qkv: Activation, _ spec: AttentionSpec, context: [String]) throws -> (Activation, Activation, Activation) {
        let qCols = spec.heads * spec.headDim, kvCols = spec.kvHeads * spec.headDim
        guard qkv.cols == qCols + 2 * kvCols else {
            throw KilnError.mismatch(file: nil, path: context + ["input 0"], expected: "\(qCols + 2 * kvCols) columns (fused q, k, v)", found: "\(qkv.cols)")
        }
        let parts = [allocate(qkv.rows, qCols), allocate(qkv.rows, kvCols), allocate(qkv.rows, kvCols)]
        for r in 0..<qkv.rows {
            var from = qkv.pointer + r * qkv.cols
            for part in parts {
                (part.pointer + r * part.cols).update(from: from, count: part.cols)
                from += part.cols
            }
        }
        return (parts[0], parts[1], parts[2])
    }

    /// `y = x · wᵀ + bias`, with the weight's activation-side quantization and the observer.
    private func linear(_ step: Step, _ run: Run, value x: Activation, weight name: String, inOut: Bool,
                        context: [String]) throws -> Activation {
        let w = try weights.linear(name, inOut: inOut)
        guard x.cols == w.inFeatures else {
            throw KilnError.mismatch(file: nil, path: context + ["input 0"], expected: "\(w.inFeatures) columns (weight \"\(name)\" is [\(w.outFeatures), \(w.inFeatures)])",
                                     found: "\(x.cols)")
        }
        var bias: FloatBuffer?
        if step.operands.count == 3, case .weight(let b) = step.operands[2] {
            bias = try weights.floats(b)
            guard bias!.count == w.outFeatures else {
                throw KilnError.mismatch(file: nil, path: context + ["input 2"], expected: "\(w.outFeatures) values", found: "\(bias!.count)")
            }
        }
        var input = x
        if w.transformsInput {
            input = allocate(x.rows, x.cols)
            w.transformInput(x.pointer, rows: x.rows, into: input.pointer)
        }
        let y = allocate(x.rows, w.outFeatures)
        Kernels.linear(x: input.pointer, rows: x.rows, k: x.cols, w: w.weight.pointer, n: w.outFeatures,
                       bias: bias.map { UnsafePointer($0.pointer) }, y: y.pointer)
        if let observer = linearObserver {
            var inputName = ""
            if case .value(let v) = step.operands[0] { inputName = v }
            observer(LinearEvent(node: step.node.name, weight: name, inputName: inputName, rows: x.rows,
                                 input: UnsafeBufferPointer(start: x.pointer, count: x.count), inFeatures: x.cols,
                                 output: UnsafeBufferPointer(start: y.pointer, count: y.count), outFeatures: y.cols,
                                 padding: run.padding.count == x.rows && run.padding.contains(true) ? run.padding : []))
        }
        return y
    }
}
