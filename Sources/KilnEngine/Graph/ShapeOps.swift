import KilnCore

/// Operators that move or select elements: Reshape, Flatten, Transpose, Squeeze, Unsqueeze,
/// Concat, Slice, Split, Shape, Gather, ConstantOfShape, Expand.
enum ShapeOps {
    static let table: [String: (OpContext) throws -> [GraphValue]] = [
        "Reshape": reshape, "Flatten": flatten, "Transpose": transpose, "Squeeze": squeeze, "Unsqueeze": unsqueeze,
        "Concat": concat, "Slice": slice, "Split": split, "Shape": shapeOp, "Gather": gather,
        "ConstantOfShape": constantOfShape, "Expand": expand,
    ]

    static func reshape(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        guard let target = try c.intList(1) ?? c.ints("shape") else { throw c.fail("a target shape is required") }
        let allowZero = try c.int("allowzero", 0) != 0
        var dims = target
        for (i, d) in dims.enumerated() where d == 0 && !allowZero {
            guard i < x.rank else { throw c.fail("shape \(target): 0 at position \(i) copies a dimension the input (\(x.shape)) lacks") }
            dims[i] = x.shape[i]
        }
        guard let known = GraphLimits.elementCount(dims.filter { $0 != -1 }) else {
            throw c.fail("cannot reshape \(x.shape) to \(target): expected dims ≥ -1 and at most \(GraphLimits.maxElements) elements")
        }
        if let at = dims.firstIndex(of: -1) {
            guard known > 0, x.count % known == 0 else { throw c.fail("cannot reshape \(x.shape) to \(target)") }
            dims[at] = x.count / known
        }
        guard dims.allSatisfy({ $0 >= 0 }), dims.reduce(1, *) == x.count else {
            throw c.fail("cannot reshape \(x.shape) (\(x.count) elements) to \(target)")
        }
        return [x.reshaped(dims)]
    }

    static func flatten(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        var axis = try c.int("axis", 1)
        if axis < 0 { axis += x.rank }
        guard axis >= 0, axis <= x.rank else { throw c.fail("axis out of range") }
        return [x.reshaped([x.shape[..<axis].reduce(1, *), x.shape[axis...].reduce(1, *)])]
    }

    /// Element i of the output takes element `map[i]` of the input; floats or ints alike.
    static func gathered(_ x: GraphValue, shape: [Int], _ map: [Int]) -> GraphValue {
        if x.isFloat {
            let out = GraphValue.uninitialized(shape, dtype: x.dtype)
            let src = x.pointer, dst = out.pointer
            for (i, j) in map.enumerated() { dst[i] = src[j] }
            return out
        }
        let v = x.ints
        return GraphValue(shape: shape, ints: map.map { v[$0] }, dtype: x.dtype)
    }

    static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) { s[d] = acc; acc *= shape[d] }
        return s
    }

    /// Input element offsets of a strided view: `start[d] + i_d · step[d]` over `dims`.
    static func viewOffsets(dims: [Int], start: [Int], step: [Int], inputStrides: [Int]) -> [Int] {
        let count = dims.reduce(1, *)
        guard count > 0 else { return [] }
        var result = [Int](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: dims.count)
        var offset = zip(start, inputStrides).reduce(0) { $0 + $1.0 * $1.1 }
        let inner = dims.last ?? 1, innerStep = (step.last ?? 1) * (inputStrides.last ?? 1)
        var at = 0
        while at < count {
            var o = offset, i = 0
            if dims.isEmpty { result[0] = o; break }
            while i < inner { result[at + i] = o; o += innerStep; i += 1 }
            at += inner
            var d = dims.count - 2
            while d >= 0 {
                index[d] += 1
                offset += step[d] * inputStrides[d]
                if index[d] < dims[d] { break }
                offset -= step[d] * inputStrides[d] * index[d]
                index[d] = 0
                d -= 1
            }
            if d < 0 { break }
        }
        return result
    }

    static func transpose(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        let perm = try c.ints("perm") ?? Array((0..<x.rank).reversed())
        guard perm.count == x.rank, Set(perm) == Set(0..<x.rank) else { throw c.fail("perm \(perm) is not a permutation of 0..<\(x.rank)") }
        let inStrides = strides(x.shape)
        let dims = perm.map { x.shape[$0] }
        let map = viewOffsets(dims: dims, start: Array(repeating: 0, count: x.rank), step: Array(repeating: 1, count: x.rank),
                              inputStrides: perm.map { inStrides[$0] })
        return [gathered(x, shape: dims, map)]
    }

    /// Axes from the attribute (before `inputOpset`) or from input 1.
    static func axes(_ c: OpContext, inputOpset: Int) throws -> [Int]? {
        c.opset < inputOpset ? try c.ints("axes") : try c.intList(1)
    }

    static func squeeze(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        let axes = try Self.axes(c, inputOpset: 13).map { try $0.map { try c.axis($0, rank: x.rank) } }
        var dims: [Int] = []
        for (d, n) in x.shape.enumerated() {
            if let axes, axes.contains(d) {
                guard n == 1 else { throw c.fail("cannot squeeze axis \(d) of size \(n)") }
                continue
            }
            if axes == nil && n == 1 { continue }
            dims.append(n)
        }
        return [x.reshaped(dims)]
    }

    static func unsqueeze(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        guard let raw = try axes(c, inputOpset: 13) else { throw c.fail("axes are required") }
        let rank = x.rank + raw.count
        let axes = Set(try raw.map { try c.axis($0, rank: rank) })
        guard axes.count == raw.count else { throw c.fail("axes \(raw) must be unique (expected \(raw.count) distinct axes of rank \(rank))") }
        var dims: [Int] = [], source = x.shape.makeIterator()
        for d in 0..<rank { dims.append(axes.contains(d) ? 1 : source.next()!) }
        return [x.reshaped(dims)]
    }

    static func concat(_ c: OpContext) throws -> [GraphValue] {
        let parts = c.inputs.compactMap { $0 }
        guard let first = parts.first else { throw c.fail("at least one input is required") }
        let axis = try c.axis(try c.int("axis", 0), rank: first.rank)
        var dims = first.shape
        dims[axis] = 0
        for p in parts {
            guard p.rank == first.rank, (0..<p.rank).allSatisfy({ $0 == axis || p.shape[$0] == first.shape[$0] }) else {
                throw c.fail("inputs of shapes \(parts.map(\.shape)) cannot be concatenated on axis \(axis)")
            }
            dims[axis] += p.shape[axis]
        }
        let outer = dims[..<axis].reduce(1, *), inner = dims[(axis + 1)...].reduce(1, *)
        if first.isFloat {
            let out = GraphValue.uninitialized(dims, dtype: first.dtype)
            var at = 0
            for o in 0..<outer {
                for p in parts {
                    let n = p.shape[axis] * inner
                    (out.pointer + at).update(from: p.pointer + o * n, count: n)
                    at += n
                }
            }
            return [out]
        }
        var values: [Int64] = []
        values.reserveCapacity(dims.reduce(1, *))
        for o in 0..<outer {
            for p in parts {
                let n = p.shape[axis] * inner
                values += p.ints[(o * n)..<((o + 1) * n)]
            }
        }
        return [GraphValue(shape: dims, ints: values, dtype: first.dtype)]
    }

    /// Slice (inputs from opset 10, attributes before); negative steps, clamping as the spec says.
    static func slice(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        let starts: [Int], ends: [Int], axesList: [Int]?, stepsList: [Int]?
        if c.opset < 10 {
            starts = try c.ints("starts") ?? []
            ends = try c.ints("ends") ?? []
            axesList = try c.ints("axes")
            stepsList = nil
        } else {
            guard let s = try c.intList(1), let e = try c.intList(2) else { throw c.fail("starts and ends are required") }
            starts = s; ends = e
            axesList = try c.intList(3)
            stepsList = try c.intList(4)
        }
        let axes = try (axesList ?? Array(0..<starts.count)).map { try c.axis($0, rank: x.rank) }
        let steps = stepsList ?? Array(repeating: 1, count: starts.count)
        guard ends.count == starts.count, axes.count == starts.count, steps.count == starts.count else {
            throw c.fail("starts, ends, axes and steps must have the same length")
        }
        var start = [Int](repeating: 0, count: x.rank), step = [Int](repeating: 1, count: x.rank), dims = x.shape
        for (k, a) in axes.enumerated() {
            let n = x.shape[a]
            guard steps[k] != 0 else { throw c.fail("a step of 0") }
            // A step longer than the axis selects at most one element, as a step of the axis length does;
            // clamping keeps the arithmetic below (and the view's offsets) from overflowing on steps like Int64.max.
            let st = steps[k] > 0 ? min(steps[k], max(n, 1)) : max(steps[k], -max(n, 1))
            var b = starts[k] < 0 ? starts[k] + n : starts[k]
            var e = ends[k] < 0 ? ends[k] + n : ends[k]
            if st > 0 {
                b = max(0, min(n, b)); e = max(0, min(n, e))
                dims[a] = max(0, (e - b + st - 1) / st)
            } else {
                b = max(-1, min(n - 1, b)); e = max(-1, min(n - 1, e))
                dims[a] = max(0, (b - e + (-st) - 1) / (-st))
            }
            start[a] = b
            step[a] = st
        }
        let map = viewOffsets(dims: dims, start: dims.contains(0) ? Array(repeating: 0, count: x.rank) : start, step: step,
                              inputStrides: strides(x.shape))
        return [gathered(x, shape: dims, map)]
    }

    static func split(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        let axis = try c.axis(try c.int("axis", 0), rank: x.rank)
        let n = x.shape[axis], parts = c.node.outputs.count
        guard parts > 0 else { throw c.fail("expected at least one output to split into") }
        var sizes = c.opset < 13 ? try c.ints("split") : try c.intList(1)
        if sizes == nil {
            let chunk = (n + parts - 1) / parts
            sizes = (0..<parts).map { min(chunk, max(0, n - $0 * chunk)) }
        }
        guard let sizes, sizes.count == parts, sizes.allSatisfy({ (0...n).contains($0) }), sizes.reduce(0, +) == n else {
            throw c.fail("split sizes \(sizes.map { "\($0)" } ?? "none") do not add up to \(n) in \(parts) parts of ≥ 0")
        }
        var begin = 0, result: [GraphValue] = []
        for size in sizes {
            var dims = x.shape
            dims[axis] = size
            var start = [Int](repeating: 0, count: x.rank)
            start[axis] = begin
            let map = viewOffsets(dims: dims, start: start, step: Array(repeating: 1, count: x.rank), inputStrides: strides(x.shape))
            result.append(gathered(x, shape: dims, map))
            begin += size
        }
        return result
    }

    static func shapeOp(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        let r = x.rank
        func clampIndex(_ i: Int) -> Int { max(0, min(r, i < 0 ? i + r : i)) }
        let lo = clampIndex(try c.int("start", 0)), hi = clampIndex(try c.int("end", r))
        let dims = lo < hi ? Array(x.shape[lo..<hi]) : []
        return [GraphValue(shape: [dims.count], ints: dims.map { Int64($0) })]
    }

    static func gather(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0), indices = try c.input(1)
        let axis = try c.axis(try c.int("axis", 0), rank: x.rank)
        let n = x.shape[axis]
        let idx = try (indices.isFloat ? try indices.floats.map { Int(try c.integer($0, "input 1 (indices)")) } : indices.ints.map { Int($0) }).map { i -> Int in
            let j = i < 0 ? i + n : i
            guard j >= 0, j < n else { throw c.fail("index \(i) is out of range for a dimension of \(n)") }
            return j
        }
        let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        let dims = try c.shape(Array(x.shape[..<axis]) + indices.shape + Array(x.shape[(axis + 1)...]))
        var map: [Int] = []
        map.reserveCapacity(outer * idx.count * inner)
        for o in 0..<outer {
            for j in idx {
                let base = (o * n + j) * inner
                for i in 0..<inner { map.append(base + i) }
            }
        }
        return [gathered(x, shape: dims, map)]
    }

    static func constantOfShape(_ c: OpContext) throws -> [GraphValue] {
        let dims = try c.shape(try c.intList(0) ?? [], "input 0 (shape)")
        var fill = GraphValue(shape: [1], floats: [0])
        if case .tensor(let t)? = c.node.attribute("value") { fill = try GraphValue(t) }
        let n = dims.reduce(1, *)
        if fill.isFloat { return [GraphValue(shape: dims, floats: Array(repeating: fill.floats.first ?? 0, count: n), dtype: fill.dtype)] }
        return [GraphValue(shape: dims, ints: Array(repeating: fill.ints.first ?? 0, count: n), dtype: fill.dtype)]
    }

    static func expand(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        let target = try c.shape(try c.intList(1) ?? [], "input 1 (shape)")
        let plan: Broadcast
        do { plan = try Broadcast([x.shape, target]) } catch { throw c.fail("cannot expand \(x.shape) to \(target)") }
        return [gathered(x, shape: try c.shape(plan.shape), plan.indices()[0])]
    }
}
