import Foundation
import KilnCore

/// Numpy-style broadcasting of two shapes, with the dimensions coalesced so the inner loop runs
/// over the longest contiguous stretch.
struct Broadcast {
    let shape: [Int]
    /// Coalesced dims and the element strides of each operand over them (0 where broadcast).
    let dims: [Int]
    let strides: [[Int]]

    /// - Throws: a message when the shapes are not broadcastable.
    init(_ shapes: [[Int]]) throws {
        let rank = shapes.map(\.count).max() ?? 0
        let padded = shapes.map { Array(repeating: 1, count: rank - $0.count) + $0 }
        var out = [Int](repeating: 1, count: rank)
        for d in 0..<rank {
            let sizes = Set(padded.map { $0[d] }).subtracting([1])
            guard sizes.count <= 1 else { throw BroadcastError(shapes: shapes) }
            out[d] = sizes.first ?? (padded.contains { $0[d] == 0 } ? 0 : 1)
        }
        shape = out
        // Strides of each operand over the full rank.
        var full = padded.map { s -> [Int] in
            var st = [Int](repeating: 0, count: rank), acc = 1
            for d in stride(from: rank - 1, through: 0, by: -1) {
                st[d] = s[d] == 1 ? 0 : acc
                acc *= s[d]
            }
            return st
        }
        // Coalesce neighbouring dims where every operand is contiguous across the boundary.
        var cd: [Int] = [], cs: [[Int]] = Array(repeating: [], count: shapes.count)
        for d in 0..<rank where out[d] != 1 {
            if let last = cd.last, (0..<shapes.count).allSatisfy({ full[$0][d] * out[d] == cs[$0].last! }) {
                cd[cd.count - 1] = last * out[d]
                for k in 0..<shapes.count { cs[k][cs[k].count - 1] = full[k][d] }
            } else {
                cd.append(out[d])
                for k in 0..<shapes.count { cs[k].append(full[k][d]) }
            }
        }
        full = []
        dims = cd.isEmpty ? [1] : cd
        strides = cd.isEmpty ? Array(repeating: [0], count: shapes.count) : cs
    }

    var count: Int { shape.reduce(1, *) }

    /// Calls `body(offsets, n)` for each run of the innermost coalesced dim: `offsets[k]` is
    /// operand k's first element, and its step along the run is `strides[k].last`.
    func forEachRun(_ body: ([Int], Int) -> Void) {
        let inner = dims.last!, outer = dims.dropLast()
        let total = outer.reduce(1, *)
        guard inner > 0, total > 0 else { return }
        var index = [Int](repeating: 0, count: outer.count)
        var offsets = [Int](repeating: 0, count: strides.count)
        for _ in 0..<total {
            body(offsets, inner)
            var d = outer.count - 1
            while d >= 0 {
                index[d] += 1
                for k in offsets.indices { offsets[k] += strides[k][d] }
                if index[d] < outer[d] { break }
                for k in offsets.indices { offsets[k] -= strides[k][d] * index[d] }
                index[d] = 0
                d -= 1
            }
        }
    }

    /// The source element index of every output element, per operand (for small or rare ops).
    func indices() -> [[Int]] {
        var result = Array(repeating: [Int](), count: strides.count)
        for k in result.indices { result[k].reserveCapacity(count) }
        forEachRun { offsets, n in
            for k in offsets.indices {
                let step = strides[k].last!
                var i = 0
                while i < n { result[k].append(offsets[k] + i * step); i += 1 }
            }
        }
        return result
    }
}

struct BroadcastError: Error { let shapes: [[Int]] }

extension OpContext {
    /// The broadcast of the given input values' shapes.
    func broadcast(_ values: [GraphValue]) throws -> Broadcast {
        do { return try Broadcast(values.map(\.shape)) } catch {
            throw fail("shapes \(values.map { "\($0.shape)" }.joined(separator: ", ")) do not broadcast")
        }
    }
}

/// Element-wise operators: binary arithmetic with broadcasting, comparisons, Where, unary math, Clip, Cast.
enum ElementwiseOps {
    enum Binary { case add, sub, mul, div, pow, equal, less, greater }

    static let table: [String: (OpContext) throws -> [GraphValue]] = [
        "Add": { try [binary($0, .add)] }, "Sub": { try [binary($0, .sub)] }, "Mul": { try [binary($0, .mul)] },
        "Div": { try [binary($0, .div)] }, "Pow": { try [binary($0, .pow)] }, "Equal": { try [binary($0, .equal)] },
        "Less": { try [binary($0, .less)] }, "Greater": { try [binary($0, .greater)] },
        "Relu": { try [signed($0, { Swift.max($0, 0) }) ?? unary($0) { max($0, 0) }] },
        "Sigmoid": { try [unary($0) { 1 / (1 + Foundation.exp(-$0)) }] },
        "Sqrt": { try [unary($0) { $0.squareRoot() }] },
        "Erf": { try [unary($0) { Foundation.erf($0) }] },
        "Exp": { try [unary($0) { Foundation.exp($0) }] },
        "Tanh": { try [unary($0) { Foundation.tanh($0) }] },
        "Neg": { try [signed($0, { 0 &- $0 }) ?? unary($0) { -$0 }] },
        "Abs": { try [signed($0, { $0 < 0 ? 0 &- $0 : $0 }) ?? unary($0) { Swift.abs($0) }] },
        "Reciprocal": { try [unary($0) { 1 / $0 }] },
        "Cos": { try [unary($0) { Foundation.cos($0) }] }, "Sin": { try [unary($0) { Foundation.sin($0) }] },
        "Log": { try [unary($0) { Foundation.log($0) }] },
        "HardSigmoid": { c in
            let alpha = try c.float("alpha", 0.2), beta = try c.float("beta", 0.5)
            return try [unary(c) { clamp(alpha * $0 + beta, 0, 1) }]
        },
        "HardSwish": { try [unary($0) { $0 * clamp($0 / 6 + 0.5, 0, 1) }] },
        "LeakyRelu": { c in
            let alpha = try c.float("alpha", 0.01)
            return try [unary(c) { $0 < 0 ? alpha * $0 : $0 }]
        },
        "Clip": clip, "Where": whereOp, "Cast": cast,
        "Identity": { [try $0.input(0)] },
    ]

    static func binary(_ c: OpContext, _ op: Binary) throws -> GraphValue {
        let a = try c.input(0)
        var b = try c.input(1)
        // Pow's exponent may be of another type than its base (opset 12+): an integer exponent of a float base.
        if op == .pow && a.isFloat && !b.isFloat { b = GraphValue(shape: b.shape, floats: b.floats) }
        let plan = try c.broadcast([a, b])
        let comparison = [.equal, .less, .greater].contains(op)
        if a.isFloat && b.isFloat {
            if comparison {
                let x = a.floats, y = b.floats
                let idx = plan.indices()
                let out = (0..<plan.count).map { i -> Int64 in
                    let u = x[idx[0][i]], v = y[idx[1][i]]
                    switch op {
                    case .equal: return u == v ? 1 : 0
                    case .less: return u < v ? 1 : 0
                    default: return u > v ? 1 : 0
                    }
                }
                return GraphValue(shape: plan.shape, ints: out, dtype: .bool)
            }
            let out = GraphValue.uninitialized(plan.shape)
            let pa = a.pointer, pb = b.pointer, py = out.pointer
            let sa = plan.strides[0].last!, sb = plan.strides[1].last!
            var at = 0
            plan.forEachRun { o, n in
                var x = pa + o[0], y = pb + o[1]
                let z = py + at
                var i = 0
                switch op {
                case .add: while i < n { z[i] = x.pointee + y.pointee; x += sa; y += sb; i += 1 }
                case .sub: while i < n { z[i] = x.pointee - y.pointee; x += sa; y += sb; i += 1 }
                case .mul: while i < n { z[i] = x.pointee * y.pointee; x += sa; y += sb; i += 1 }
                case .div: while i < n { z[i] = x.pointee / y.pointee; x += sa; y += sb; i += 1 }
                case .pow:
                    while i < n {
                        let e = y.pointee
                        z[i] = e == 2 ? x.pointee * x.pointee : Foundation.pow(x.pointee, e)
                        x += sa; y += sb; i += 1
                    }
                default: break
                }
                at += n
            }
            return out
        }
        guard !a.isFloat && !b.isFloat else {
            throw c.fail("operands of different kinds: \(a.dtype) and \(b.dtype)")
        }
        let idx = plan.indices()
        let x = a.ints, y = b.ints
        var out = [Int64](repeating: 0, count: plan.count)
        for i in 0..<plan.count {
            let u = x[idx[0][i]], v = y[idx[1][i]]
            switch op {
            case .add: out[i] = u &+ v
            case .sub: out[i] = u &- v
            case .mul: out[i] = u &* v
            case .div:
                guard v != 0 else { throw c.fail("integer division by zero") }
                guard u != .min || v != -1 else { throw c.fail("integer division \(u) / -1 overflows Int64") }
                out[i] = u / v
            case .pow:
                guard let p = Int64(exactly: Foundation.pow(Double(u), Double(v)).rounded(.towardZero)) else {
                    throw c.fail("integer Pow \(u) ^ \(v) is outside the Int64 range")
                }
                out[i] = p
            case .equal: out[i] = u == v ? 1 : 0
            case .less: out[i] = u < v ? 1 : 0
            case .greater: out[i] = u > v ? 1 : 0
            }
        }
        return GraphValue(shape: plan.shape, ints: out, dtype: comparison ? .bool : a.dtype)
    }

    /// `f` on each element of an integer input 0 (Neg, Abs and Relu accept integers), wrapped to the
    /// input's type as onnxruntime's do (Neg of Int8.min is Int8.min); nil for a float input.
    static func signed(_ c: OpContext, _ f: (Int64) -> Int64) throws -> GraphValue? {
        let x = try c.input(0)
        guard !x.isFloat else { return nil }
        let wrap: (Int64) -> Int64
        switch x.dtype {
        case .i8: wrap = { Int64(Int8(truncatingIfNeeded: $0)) }
        case .i16: wrap = { Int64(Int16(truncatingIfNeeded: $0)) }
        case .i32: wrap = { Int64(Int32(truncatingIfNeeded: $0)) }
        case .i64: wrap = { $0 }
        default:
            throw KilnError.mismatch(file: nil, path: c.path + ["input 0"], expected: "a floating-point or signed integer tensor", found: x.dtype.name)
        }
        return GraphValue(shape: x.shape, ints: x.ints.map { wrap(f($0)) }, dtype: x.dtype)
    }

    static func unary(_ c: OpContext, _ f: (Float) -> Float) throws -> GraphValue {
        let x = try c.floatInput(0)
        let out = GraphValue.uninitialized(x.shape)
        let n = x.count, src = x.pointer, dst = out.pointer
        Kernels.parallelRanges(count: n, minimumChunk: 1 << 16) { lo, hi in
            var i = lo
            while i < hi { dst[i] = f(src[i]); i += 1 }
        }
        return out
    }

    /// `v` raised to `lo`, then lowered to `hi` (so `hi` wins when `lo` > `hi`, as Clip's spec says); NaN stays NaN.
    static func clamp(_ v: Float, _ lo: Float, _ hi: Float) -> Float {
        let raised = v < lo ? lo : v
        return raised > hi ? hi : raised
    }

    /// Clip: bounds as attributes before opset 11, as optional inputs from 11 on. A missing bound is
    /// the type's lowest / largest finite value (so ±Inf clip to them, as in onnxruntime); when min >
    /// max every value becomes max.
    static func clip(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        let finite: Float = x.dtype == .f16 ? 65504 : x.dtype == .f32 ? .greatestFiniteMagnitude : .infinity
        var lo = -finite, hi = finite
        if c.opset < 11 {
            lo = try c.float("min", lo)
            hi = try c.float("max", hi)
        } else {
            if let m = c.optional(1) { lo = m.floats.first ?? lo }
            if let m = c.optional(2) { hi = m.floats.first ?? hi }
        }
        if !x.isFloat {
            // Clamp in Int64 (integer bounds as given; float bounds must be finite or the open ±Inf).
            func bound(_ k: Int, _ f: Float, open: Float, _ fallback: Int64) throws -> Int64 {
                if c.opset >= 11, let m = c.optional(k), !m.isFloat, let i = m.ints.first { return i }
                return f == open ? fallback : try c.integer(f, k == 1 ? "min" : "max")
            }
            let low = try bound(1, lo, open: -finite, .min), high = try bound(2, hi, open: finite, .max)
            return [GraphValue(shape: x.shape, ints: x.ints.map { Swift.min(high, Swift.max(low, $0)) }, dtype: x.dtype)]
        }
        return [try unary(c) { clamp($0, lo, hi) }]
    }

    static func whereOp(_ c: OpContext) throws -> [GraphValue] {
        let cond = try c.input(0), a = try c.input(1), b = try c.input(2)
        guard !cond.isFloat else {
            throw KilnError.mismatch(file: nil, path: c.path + ["input 0"], expected: "a bool condition", found: cond.dtype.name)
        }
        guard a.isFloat == b.isFloat else {
            throw c.fail("inputs 1 and 2 must be of one kind: expected both floating-point or both integer, found \(a.dtype.name) and \(b.dtype.name)")
        }
        let plan = try c.broadcast([cond, a, b])
        let idx = plan.indices()
        let k = cond.ints
        if a.isFloat {
            let x = a.floats, y = b.floats
            return [GraphValue(shape: plan.shape, floats: (0..<plan.count).map { k[idx[0][$0]] != 0 ? x[idx[1][$0]] : y[idx[2][$0]] })]
        }
        let x = a.ints, y = b.ints
        return [GraphValue(shape: plan.shape, ints: (0..<plan.count).map { k[idx[0][$0]] != 0 ? x[idx[1][$0]] : y[idx[2][$0]] }, dtype: a.dtype)]
    }

    static func cast(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        let code = try c.int("to", 1)
        guard let to = DType.allCases.first(where: { $0.traits.onnx == code }) else {
            throw c.unsupported("Cast to ONNX element type \(code) is not supported")
        }
        if to.isFloat {
            let source = x.isFloat ? x : GraphValue(shape: x.shape, floats: x.ints.map { Float($0) })
            guard to != .f32 && to != .f64 else { return [source.retyped(to)] }
            // Narrower float types: round through the type (values still compute in f32).
            let out = GraphValue.uninitialized(x.shape, dtype: to)
            try GraphValue.roundThrough(to, UnsafeBufferPointer(start: source.pointer, count: x.count), into: out.pointer)
            return [out]
        }
        let source: [Int64] = x.isFloat ? x.floats.map { $0.isFinite ? Int64(max(-9.2e18, min(9.2e18, $0.rounded(.towardZero)))) : 0 } : x.ints
        let values: [Int64]
        switch to {
        case .bool: values = x.isFloat ? x.floats.map { $0 != 0 ? 1 : 0 } : source.map { $0 != 0 ? 1 : 0 }
        case .i32: values = source.map { Int64(Int32(truncatingIfNeeded: $0)) }
        case .i8: values = source.map { Int64(Int8(truncatingIfNeeded: $0)) }
        case .u8: values = source.map { Int64(UInt8(truncatingIfNeeded: $0)) }
        default: values = source
        }
        return [GraphValue(shape: x.shape, ints: values, dtype: to)]
    }
}

extension GraphValue {
    /// The same float elements reported as `dtype` (f16 / bf16 values compute in f32).
    func retyped(_ dtype: DType) -> GraphValue { GraphValue(shape: shape, buffer: buffer, dtype: dtype) }
}
