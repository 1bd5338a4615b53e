import COpenBLAS
import Foundation
import KilnCore

/// MatMul, Gemm, Softmax, reductions, LayerNormalization, Resize and Quantize/DequantizeLinear.
enum TensorOps {
    static let table: [String: (OpContext) throws -> [GraphValue]] = [
        "MatMul": matMul, "Gemm": gemm, "Softmax": softmax, "ReduceMean": { try [reduce($0, mean: true)] },
        "ReduceSum": { try [reduce($0, mean: false)] }, "LayerNormalization": layerNorm, "Resize": resize,
        "QuantizeLinear": quantizeLinear, "DequantizeLinear": dequantizeLinear, "Trilu": trilu,
    ]

    /// Trilu (opset 14): keep the upper (`upper` = 1: column − row ≥ k) or lower (column − row ≤ k)
    /// triangle of the last two dims, zeros elsewhere; k from the optional second input (default 0).
    static func trilu(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0)
        guard x.rank >= 2 else { throw c.fail("expected a tensor of rank ≥ 2, found rank \(x.rank)") }
        let ks = try c.intList(1) ?? [0]
        guard ks.count == 1 else { throw c.fail("k must hold one value, found \(ks.count)") }
        let k = ks[0], upper = try c.int("upper", 1) != 0
        let rows = x.shape[x.rank - 2], cols = x.shape[x.rank - 1]
        func kept(_ flat: Int) -> Bool {
            let j = flat % cols, i = (flat / cols) % rows
            return upper ? j - i >= k : j - i <= k
        }
        if x.isFloat {
            var v = x.floats
            for n in v.indices where !kept(n) { v[n] = 0 }
            return [GraphValue(shape: x.shape, floats: v, dtype: x.dtype)]
        }
        var v = x.ints
        for n in v.indices where !kept(n) { v[n] = 0 }
        return [GraphValue(shape: x.shape, ints: v, dtype: x.dtype)]
    }

    /// Numpy matmul: 1-D operands promoted, batch dims broadcast; each product one sgemm
    /// (a 2-D right operand makes the whole batch one sgemm, split into row tiles).
    static func matMul(_ c: OpContext) throws -> [GraphValue] {
        var a = try c.floatInput(0), b = try c.floatInput(1)
        guard a.rank >= 1, b.rank >= 1 else { throw c.fail("operands must have rank ≥ 1, found shapes \(a.shape) and \(b.shape)") }
        let aVector = a.rank == 1, bVector = b.rank == 1
        if aVector { a = a.reshaped([1, a.shape[0]]) }
        if bVector { b = b.reshaped([b.shape[0], 1]) }
        let m = a.shape[a.rank - 2], k = a.shape[a.rank - 1], n = b.shape[b.rank - 1]
        guard b.shape[b.rank - 2] == k else { throw c.fail("shapes \(a.shape) and \(b.shape) cannot be multiplied") }
        let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        let plan: Broadcast
        do { plan = try Broadcast([batchA, batchB]) } catch { throw c.fail("batch dims \(batchA) and \(batchB) do not broadcast") }
        var dims = try c.shape(plan.shape + [m, n])
        let out = GraphValue.uninitialized(dims)
        let ap = a.pointer, bp = b.pointer, yp = out.pointer
        if batchB.reduce(1, *) == 1 {
            let rows = batchA.reduce(1, *) * m
            let repeats = plan.count / max(1, batchA.reduce(1, *))
            let tiles = rows >= 64 && n * k >= 4096 ? 2 : 1
            Kernels.parallelRanges(count: tiles, minimumChunk: 1) { lo, hi in
                for t in lo..<hi {
                    let r0 = t * rows / tiles, r1 = (t + 1) * rows / tiles
                    Kernels.gemm(m: r1 - r0, n: n, k: k, a: ap + r0 * k, lda: k, b: bp, ldb: n, transB: false, c: yp + r0 * n, ldc: n)
                }
            }
            for r in 1..<max(1, repeats) { (yp + r * rows * n).update(from: yp, count: rows * n) }
        } else {
            let idx = plan.indices()
            Kernels.parallelRanges(count: plan.count, minimumChunk: 1) { lo, hi in
                for i in lo..<hi {
                    Kernels.gemm(m: m, n: n, k: k, a: ap + idx[0][i] * m * k, lda: k, b: bp + idx[1][i] * k * n, ldb: n,
                                 transB: false, c: yp + i * m * n, ldc: n)
                }
            }
        }
        if aVector { dims.remove(at: dims.count - 2) }
        if bVector { dims.removeLast() }
        return [out.reshaped(dims)]
    }

    /// Y = alpha · A′ · B′ + beta · C (A′, B′ optionally transposed; C broadcast).
    static func gemm(_ c: OpContext) throws -> [GraphValue] {
        let a = try c.floatInput(0), b = try c.floatInput(1)
        guard a.rank == 2, b.rank == 2 else { throw c.fail("Gemm needs 2-D inputs (found \(a.shape), \(b.shape))") }
        let transA = try c.int("transA", 0) != 0, transB = try c.int("transB", 0) != 0
        let alpha = try c.float("alpha", 1), beta = try c.float("beta", 1)
        let m = transA ? a.shape[1] : a.shape[0], k = transA ? a.shape[0] : a.shape[1]
        let n = transB ? b.shape[0] : b.shape[1]
        guard (transB ? b.shape[1] : b.shape[0]) == k else { throw c.fail("shapes \(a.shape) and \(b.shape) cannot be multiplied") }
        let out = GraphValue.uninitialized(try c.shape([m, n]))
        var betaUsed: Float = 0
        if let bias = c.optional(2), beta != 0 {
            let plan: Broadcast
            do { plan = try Broadcast([bias.shape, [m, n]]) } catch { throw c.fail("C of shape \(bias.shape) does not broadcast to [\(m), \(n)]") }
            guard plan.shape == [m, n] else { throw c.fail("C of shape \(bias.shape) does not broadcast to [\(m), \(n)]") }
            let values = bias.floats
            for (i, j) in plan.indices()[0].enumerated() { out.pointer[i] = values[j] }
            betaUsed = beta
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a.pointer, blasint(a.shape[1]), b.pointer, blasint(b.shape[1]),
                    betaUsed, out.pointer, blasint(n))
        return [out]
    }

    /// Softmax: from opset 13 along one axis (default −1); before, over the input flattened to 2-D at `axis` (default 1).
    static func softmax(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.floatInput(0)
        let legacy = c.opset < 13
        let axis = try c.axis(try c.int("axis", legacy ? 1 : -1), rank: x.rank)
        let out = GraphValue.uninitialized(x.shape)
        let outer = x.shape[..<axis].reduce(1, *)
        let (span, inner) = legacy ? (x.shape[axis...].reduce(1, *), 1) : (x.shape[axis], x.shape[(axis + 1)...].reduce(1, *))
        let xp = x.pointer, yp = out.pointer
        Kernels.parallelRanges(count: outer * inner, minimumChunk: 64) { lo, hi in
            for r in lo..<hi {
                let base = (r / inner) * span * inner + r % inner
                var top = -Float.infinity
                for i in 0..<span { top = max(top, xp[base + i * inner]) }
                var sum: Float = 0
                for i in 0..<span {
                    let e = Foundation.exp(xp[base + i * inner] - top)
                    yp[base + i * inner] = e
                    sum += e
                }
                let inv = 1 / sum
                for i in 0..<span { yp[base + i * inner] *= inv }
            }
        }
        return [out]
    }

    /// ReduceMean / ReduceSum over `axes` (attribute, or input 1 from opset 18 / 13 respectively).
    static func reduce(_ c: OpContext, mean: Bool) throws -> GraphValue {
        let x = try c.input(0)
        let raw = try ShapeOps.axes(c, inputOpset: mean ? 18 : 13)
        let keep = try c.int("keepdims", 1) != 0
        var axes: Set<Int>
        if let raw, !raw.isEmpty {
            axes = Set(try raw.map { try c.axis($0, rank: x.rank) })
        } else {
            if try c.int("noop_with_empty_axes", 0) != 0 { return x }
            axes = Set(0..<x.rank)
        }
        var dims = x.shape
        for a in axes { dims[a] = 1 }
        // Map each input element to its output element.
        let outStrides = ShapeOps.strides(dims)
        let inStrides = ShapeOps.strides(x.shape)
        let count = dims.reduce(1, *)
        /// The output element of input element i.
        func target(_ i: Int) -> Int {
            var o = 0
            for d in 0..<x.rank where !axes.contains(d) { o += (i / inStrides[d]) % x.shape[d] * outStrides[d] }
            return o
        }
        // The mean of an empty reduction is undefined in ONNX; onnxruntime gives 0, as the sum is
        // (dividing by n = 0 would make NaN, and trap converting NaN to an integer).
        let n = Swift.max(1, axes.reduce(1) { $0 * x.shape[$1] })
        let finalDims = keep ? dims : x.shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        if !x.isFloat {
            // Integers sum exactly in Int64, wrapping on overflow (a Double sum loses precision past 2^53 and could leave
            // the Int64 range and trap converting back).
            var sums = [Int64](repeating: 0, count: count)
            for (i, v) in x.ints.enumerated() { sums[target(i)] &+= v }
            return GraphValue(shape: finalDims, ints: mean ? sums.map { $0 / Int64(n) } : sums, dtype: x.dtype)
        }
        var sums = [Double](repeating: 0, count: count)
        for (i, v) in x.floats.enumerated() { sums[target(i)] += Double(v) }
        return GraphValue(shape: finalDims, floats: sums.map { Float(mean ? $0 / Double(n) : $0) })
    }

    /// y = (x − mean) / √(var + ε) · scale + bias over the dims from `axis` on.
    static func layerNorm(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.floatInput(0), scale = try c.input(1).floats, bias = c.optional(2)?.floats
        let axis = try c.axis(try c.int("axis", -1), rank: x.rank)
        let eps = try c.float("epsilon", 1e-5)
        let rows = x.shape[..<axis].reduce(1, *), cols = x.shape[axis...].reduce(1, *)
        guard scale.count == cols, bias.map({ $0.count == cols }) ?? true else { throw c.fail("scale and bias must have \(cols) values") }
        let out = GraphValue.uninitialized(x.shape)
        var means = [Float](repeating: 0, count: rows), inverse = [Float](repeating: 0, count: rows)
        let xp = x.pointer, yp = out.pointer
        for r in 0..<rows {
            let src = xp + r * cols, dst = yp + r * cols
            var sum: Double = 0
            for i in 0..<cols { sum += Double(src[i]) }
            let mu = Float(sum / Double(cols))
            var sq: Double = 0
            for i in 0..<cols { let d = Double(src[i] - mu); sq += d * d }
            let inv = 1 / (Float(sq / Double(cols)) + eps).squareRoot()
            means[r] = mu; inverse[r] = inv
            for i in 0..<cols { dst[i] = (src[i] - mu) * inv * scale[i] + (bias?[i] ?? 0) }
        }
        let statShape = Array(x.shape[..<axis]) + Array(repeating: 1, count: x.rank - axis)
        return [out, GraphValue(shape: statShape, floats: means), GraphValue(shape: statShape, floats: inverse)]
    }

    /// Resize (opset 10+): nearest (all rounding modes) on any axes, linear on the last two axes;
    /// the coordinate transformation modes of the spec.
    static func resize(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.floatInput(0)
        let mode = try c.string("mode", "nearest")
        let transform = c.opset < 11 ? "asymmetric" : try c.string("coordinate_transformation_mode", "half_pixel")
        let nearestMode = c.opset < 11 ? "floor" : try c.string("nearest_mode", "round_prefer_floor")
        // Opset 18 attributes that change the result: refused rather than ignored.
        if c.node.attribute("axes") != nil { throw c.unsupported("Resize with the axes attribute is not supported") }
        if mode != "nearest", try c.int("antialias", 0) != 0 { throw c.unsupported("antialiased \(mode) Resize is not supported") }
        let scalesInput = c.opset < 11 ? c.optional(1) : c.optional(2)
        var scales = (scalesInput?.floats).flatMap { $0.isEmpty ? nil : $0.map(Double.init) }
        let sizes = c.opset < 11 ? nil : try c.intList(3).flatMap { $0.isEmpty ? nil : $0 }
        var dims: [Int]
        if let sizes {
            guard sizes.count == x.rank else { throw c.fail("sizes must have \(x.rank) values") }
            let policy = try c.string("keep_aspect_ratio_policy", "stretch")
            guard policy == "stretch" else { throw c.unsupported("keep_aspect_ratio_policy \"\(policy)\" is not supported") }
            dims = try c.shape(sizes, "input 3 (sizes)")
            scales = zip(sizes, x.shape).map { Double($0) / Double($1) }
        } else if let s = scales {
            guard s.count == x.rank else { throw c.fail("scales must have \(x.rank) values") }
            guard s.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw c.fail("scales \(s): expected finite values > 0") }
            dims = try c.shape(try zip(x.shape, s).map { Int(try c.integer(Float((Double($0) * $1).rounded(.down)), "input 2 (scales)")) })
        } else {
            throw c.fail("either scales or sizes is required")
        }
        guard x.count > 0 || dims.contains(0) else {
            throw c.fail("cannot resize an empty input \(x.shape) to \(dims): there is no element to sample")
        }
        let scale = scales!
        /// The source coordinate of output index `o` along axis `d`.
        func coordinate<T: BinaryFloatingPoint>(_ o: Int, _ d: Int, _ s: T) throws -> T {
            let inN = T(x.shape[d]), outN = T(dims[d]), xo = T(o)
            switch transform {
            case "half_pixel": return (xo + 0.5) / s - 0.5
            case "pytorch_half_pixel": return outN > 1 ? (xo + 0.5) / s - 0.5 : 0
            case "align_corners": return outN == 1 ? 0 : xo * (inN - 1) / (outN - 1)
            case "asymmetric": return xo / s
            case "tf_half_pixel_for_nn": return (xo + 0.5) / s
            default: throw c.unsupported("coordinate_transformation_mode \"\(transform)\" is not supported")
            }
        }
        /// The source coordinate of output index `o` along axis `d`: with a scale given as f32, in f32 as
        /// onnxruntime computes it (1.5 / 0.6f is 2.5 there, a tie); with one from sizes (out / in), in Double,
        /// where 0.5 / (1 / 7) is exactly the tie 3.5 (f32 makes it 3.4999998), as onnx.reference computes it.
        func source(_ o: Int, _ d: Int) throws -> Double {
            sizes != nil ? try coordinate(o, d, scale[d]) : Double(try coordinate(o, d, Float(scale[d])))
        }
        let inStrides = ShapeOps.strides(x.shape)
        if mode == "nearest" {
            var index: [[Int]] = []
            for d in 0..<x.rank {
                // An axis of scale 1 maps one to one (no coordinate transformation), as in onnxruntime and
                // onnx.reference: tf_half_pixel_for_nn with ceil rounding would otherwise shift it by one.
                if scale[d] == 1 && dims[d] == x.shape[d] {
                    index.append((0..<dims[d]).map { $0 * inStrides[d] })
                    continue
                }
                index.append(try (0..<dims[d]).map { o in
                    let v = try source(o, d)
                    let r: Double
                    switch nearestMode {
                    case "round_prefer_floor": r = v == v.rounded(.down) + 0.5 ? v.rounded(.down) : v.rounded()
                    case "round_prefer_ceil": r = v.rounded()
                    case "floor": r = v.rounded(.down)
                    case "ceil": r = v.rounded(.up)
                    default: throw c.unsupported("nearest_mode \"\(nearestMode)\" is not supported")
                    }
                    return max(0, min(x.shape[d] - 1, Int(r))) * inStrides[d]
                })
            }
            let out = GraphValue.uninitialized(dims)
            let xp = x.pointer, yp = out.pointer
            let inner = index.last ?? [0], outerDims = Array(dims.dropLast())
            var position = [Int](repeating: 0, count: outerDims.count)
            var at = 0
            for _ in 0..<outerDims.reduce(1, *) {
                var base = 0
                for (d, p) in position.enumerated() { base += index[d][p] }
                for o in inner { yp[at] = xp[base + o]; at += 1 }
                var d = outerDims.count - 1
                while d >= 0 { position[d] += 1; if position[d] < outerDims[d] { break }; position[d] = 0; d -= 1 }
            }
            return [out]
        }
        guard mode == "linear" else { throw c.unsupported("Resize mode \"\(mode)\" is not supported") }
        guard x.rank >= 2, (0..<(x.rank - 2)).allSatisfy({ dims[$0] == x.shape[$0] }) else {
            throw c.unsupported("linear Resize is supported on the last two axes only")
        }
        func taps(_ d: Int) throws -> [(Int, Int, Float)] {
            try (0..<dims[d]).map { o in
                let v = max(0, min(Double(x.shape[d] - 1), try source(o, d)))
                let i0 = Int(v.rounded(.down)), i1 = min(i0 + 1, x.shape[d] - 1)
                return (i0, i1, Float(v - Double(i0)))
            }
        }
        let ty = try taps(x.rank - 2), tx = try taps(x.rank - 1)
        let (h, w) = (x.shape[x.rank - 2], x.shape[x.rank - 1]), (oh, ow) = (dims[x.rank - 2], dims[x.rank - 1])
        let planes = dims.dropLast(2).reduce(1, *)
        let out = GraphValue.uninitialized(dims)
        let xp = x.pointer, yp = out.pointer
        for p in 0..<planes {
            let src = xp + p * h * w, dst = yp + p * oh * ow
            for (oy, (y0, y1, fy)) in ty.enumerated() {
                for (ox, (x0, x1, fx)) in tx.enumerated() {
                    let top = src[y0 * w + x0] * (1 - fx) + src[y0 * w + x1] * fx
                    let bottom = src[y1 * w + x0] * (1 - fx) + src[y1 * w + x1] * fx
                    dst[oy * ow + ox] = top * (1 - fy) + bottom * fy
                }
            }
        }
        return [out]
    }

    /// The scale / zero-point index of every element: per tensor, or per `axis` (1-D scale).
    /// A zero point holds one value or one per scale.
    static func channelIndex(_ c: OpContext, _ x: GraphValue, scaleCount: Int, zeroPoints: Int?) throws -> (Int) -> Int {
        if let zeroPoints, zeroPoints != 1, zeroPoints != scaleCount {
            throw KilnError.mismatch(file: nil, path: c.path + ["input 2 (zero point)"], expected: "1 or \(scaleCount) values (one per scale)",
                                     found: "\(zeroPoints)")
        }
        // A per-axis scale over an axis of size 0 holds no value (and there is no element to scale).
        guard scaleCount > 0 || x.count == 0 else { throw KilnError.mismatch(file: nil, path: c.path + ["input 1 (scale)"], expected: "at least one scale", found: "none") }
        if scaleCount == 1 { return { _ in 0 } }
        guard try c.int("block_size", 0) == 0 else { throw c.unsupported("blocked quantization is not supported") }
        let axis = try c.axis(try c.int("axis", 1), rank: x.rank)
        guard x.shape[axis] == scaleCount else { throw c.fail("\(scaleCount) scales for axis \(axis) of size \(x.shape[axis])") }
        let inner = x.shape[(axis + 1)...].reduce(1, *)
        return { ($0 / inner) % scaleCount }
    }

    /// y = saturate(round_half_even(x / s) + z) in the zero point's type (uint8 without one); fp8: cast of x / s.
    static func quantizeLinear(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.floatInput(0), s = try c.input(1).floats, zp = c.optional(2)
        let type = zp?.dtype ?? .u8
        let at = try channelIndex(c, x, scaleCount: s.count, zeroPoints: zp?.count)
        let values = x.floats
        if type.isFloat {
            guard type == .f8e4m3fn || type == .f8e5m2 else { throw c.unsupported("QuantizeLinear to \(type) is not supported") }
            let limit = GraphValue.fp8Limit(type)
            let saturate = try c.int("saturate", 1) != 0
            let scaled = values.enumerated().map { i, v -> Float in
                let q = v / s[at(i)]
                return saturate ? max(-limit, min(limit, q)) : q
            }
            // Round through the fp8 type (round to nearest even, as the cast does).
            let out = GraphValue.uninitialized(x.shape, dtype: type)
            try scaled.withUnsafeBufferPointer { try GraphValue.roundThrough(type, $0, into: out.pointer) }
            return [out]
        }
        let range: (Float, Float)
        switch type {
        case .i8: range = (-128, 127)
        case .u8: range = (0, 255)
        case .i16: range = (-32768, 32767)
        case .u16: range = (0, 65535)
        default: throw c.unsupported("QuantizeLinear to \(type) is not supported")
        }
        let z = zp?.ints ?? [0]
        let q = values.enumerated().map { i, v -> Int64 in
            let k = at(i)
            let r = (v / s[k]).rounded(.toNearestOrEven) + Float(z[z.count == 1 ? 0 : k])
            return Int64(max(range.0, min(range.1, r)))
        }
        return [GraphValue(shape: x.shape, ints: q, dtype: type)]
    }

    /// Q→DQ with zero point 0: `clamp(round_half_even(x / s)) · s` in `type` (i8, u8, or an fp8 cast).
    static func fakeQuantize(_ x: GraphValue, scale: Float, type: DType) throws -> GraphValue {
        let out = GraphValue.uninitialized(x.shape)
        let src = x.pointer, dst = out.pointer, n = x.count
        if type.isFloat {
            var i = 0
            let limit = GraphValue.fp8Limit(type)
            while i < n { dst[i] = max(-limit, min(limit, src[i] / scale)); i += 1 }
            try GraphValue.roundThrough(type, UnsafeBufferPointer(start: dst, count: n), into: dst)
            i = 0
            while i < n { dst[i] *= scale; i += 1 }
            return out
        }
        let (lo, hi): (Float, Float) = type == .u8 ? (0, 255) : (-128, 127)
        Kernels.parallelRanges(count: n, minimumChunk: 1 << 16) { a, b in
            var i = a
            while i < b { dst[i] = max(lo, min(hi, (src[i] / scale).rounded(.toNearestOrEven))) * scale; i += 1 }
        }
        return out
    }

    /// y = (x − z) · s.
    static func dequantizeLinear(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.input(0), s = try c.input(1).floats, zp = c.optional(2)?.floats
        let at = try channelIndex(c, x, scaleCount: s.count, zeroPoints: zp?.count)
        let values = x.floats
        let y = values.enumerated().map { i, v -> Float in
            let k = at(i)
            return (v - (zp.map { $0[$0.count == 1 ? 0 : k] } ?? 0)) * s[k]
        }
        return [GraphValue(shape: x.shape, floats: y)]
    }
}
