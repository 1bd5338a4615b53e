import COpenBLAS
import Foundation
import KilnCore

/// Spatial geometry of a 2-D window op (Conv, ConvTranspose, pooling), from the node's attributes.
/// 1-D inputs run as 2-D with a height of 1.
struct Window {
    var kernel: (Int, Int)
    var stride: (Int, Int)
    var dilation: (Int, Int)
    /// Padding at the start and end of each axis: (top, left, bottom, right).
    var pads: (Int, Int, Int, Int)

    /// Read `kernel_shape` (or `kernelFallback`), `strides`, `dilations`, `pads`, `auto_pad` for input size (h, w).
    init(_ c: OpContext, spatial: Int, input: (Int, Int), kernelFallback: [Int]?) throws {
        guard spatial == 1 || spatial == 2 else { throw c.unsupported("only 1-D and 2-D windows are supported (found \(spatial)-D)") }
        func pair(_ v: [Int]?, _ fallback: Int) throws -> (Int, Int) {
            guard let v else { return (fallback, fallback) }
            guard v.count == spatial else { throw c.fail("attribute lists must have \(spatial) entries (found \(v))") }
            return spatial == 1 ? (1, v[0]) : (v[0], v[1])
        }
        guard let k = try c.ints("kernel_shape") ?? kernelFallback else { throw c.fail("kernel_shape is required") }
        kernel = try pair(k, 1)
        stride = try pair(try c.ints("strides"), 1)
        dilation = try pair(try c.ints("dilations"), 1)
        let sizes = 1...GraphLimits.maxWindow
        guard [kernel.0, kernel.1, stride.0, stride.1, dilation.0, dilation.1].allSatisfy(sizes.contains) else {
            throw c.fail("kernel \(kernel), strides \(stride) and dilations \(dilation) must be in \(sizes)")
        }
        pads = (0, 0, 0, 0)
        if let p = try c.ints("pads") {
            guard p.count == 2 * spatial, p.allSatisfy({ (0...GraphLimits.maxWindow).contains($0) }) else {
                throw c.fail("pads must hold \(2 * spatial) values in 0...\(GraphLimits.maxWindow) (found \(p))")
            }
            pads = spatial == 1 ? (0, p[0], 0, p[1]) : (p[0], p[1], p[2], p[3])
        }
        let auto = try c.string("auto_pad", "NOTSET")
        if auto == "SAME_UPPER" || auto == "SAME_LOWER" {
            func same(_ n: Int, _ k: Int, _ s: Int, _ d: Int) -> (Int, Int) {
                let out = (n + s - 1) / s
                let total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
                return auto == "SAME_UPPER" ? (total / 2, total - total / 2) : (total - total / 2, total / 2)
            }
            let (t, b) = same(input.0, kernel.0, stride.0, dilation.0), (l, r) = same(input.1, kernel.1, stride.1, dilation.1)
            pads = (t, l, b, r)
        } else if auto == "VALID" {
            pads = (0, 0, 0, 0)
        }
    }

    /// Output size of a sliding window over (h, w); `ceil` rounds partial windows up (pooling's ceil_mode).
    func output(_ input: (Int, Int), ceil: Bool = false) -> (Int, Int) {
        func size(_ n: Int, _ k: Int, _ s: Int, _ d: Int, _ p0: Int, _ p1: Int) -> Int {
            let span = n + p0 + p1 - ((k - 1) * d + 1)
            // In ceil mode a window that starts inside the input counts even when the (padded)
            // input is shorter than the window: ⌈span / s⌉ + 1 with span < 0 can still be 1.
            guard span >= 0 || (ceil && span > -s) else { return 0 }
            var out = (ceil ? (span + s - 1) / s : span / s) + 1
            if ceil && (out - 1) * s >= n + p0 { out -= 1 }
            return out
        }
        return (size(input.0, kernel.0, stride.0, dilation.0, pads.0, pads.2),
                size(input.1, kernel.1, stride.1, dilation.1, pads.1, pads.3))
    }

    /// ``output(_:ceil:)``, refusing a window that does not fit in a non-empty padded input (an
    /// empty output where onnxruntime and ONNX shape inference fail).
    func checkedOutput(_ input: (Int, Int), ceil: Bool = false, _ c: OpContext) throws -> (Int, Int) {
        let out = output(input, ceil: ceil)
        guard input.0 == 0 || input.1 == 0 || (out.0 > 0 && out.1 > 0) else {
            throw c.fail("the window (kernel \(kernel), dilations \(dilation)) is longer than the padded input \(input) (pads \(pads))")
        }
        return out
    }
}

/// Convolution, transposed convolution, pooling and batch normalization on NCHW (or NCW) tensors.
enum ConvOps {
    static let table: [String: (OpContext) throws -> [GraphValue]] = [
        "Conv": conv, "ConvTranspose": convTranspose, "MaxPool": { try [pool($0, max: true)] },
        "AveragePool": { try [pool($0, max: false)] }, "GlobalAveragePool": { try [globalPool($0, max: false)] },
        "GlobalMaxPool": { try [globalPool($0, max: true)] }, "BatchNormalization": batchNorm,
    ]

    /// (N, C, H, W) of a 3-D or 4-D input.
    static func nchw(_ x: GraphValue, _ c: OpContext) throws -> (Int, Int, Int, Int) {
        switch x.rank {
        case 3: return (x.shape[0], x.shape[1], 1, x.shape[2])
        case 4: return (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        default: throw c.unsupported("input of shape \(x.shape): only NCW and NCHW inputs are supported")
        }
    }

    /// The output shape for spatial size (h, w), in the input's rank.
    static func shape(_ n: Int, _ ch: Int, _ hw: (Int, Int), rank: Int) -> [Int] {
        rank == 3 ? [n, ch, hw.1] : [n, ch, hw.0, hw.1]
    }

    /// The kernel the weight's spatial dims give must be the window's (`kernel_shape`): sgemm reads
    /// the weight by the window's kernel size.
    static func checkKernel(_ win: Window, weight w: GraphValue, _ c: OpContext) throws {
        guard (w.rank == 3 ? (1, w.shape[2]) : (w.shape[2], w.shape[3])) == win.kernel else {
            throw c.fail("kernel_shape \(win.kernel) disagrees with the weight \(w.shape): expected the weight's spatial dims")
        }
    }

    /// y = conv(x, w) + b, group-wise; im2col + sgemm, or a direct loop for depthwise convolutions.
    static func conv(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.floatInput(0), w = try c.floatInput(1), bias = c.optional(2)
        let (n, ch, h, wd) = try nchw(x, c)
        let group = try c.int("group", 1)
        guard w.rank == x.rank, group > 0, ch % group == 0, w.shape[0] % group == 0, w.shape[1] == ch / group else {
            throw c.fail("weight \(w.shape) does not fit input \(x.shape) with group \(group)")
        }
        let m = w.shape[0], cg = ch / group, mg = m / group
        let win = try Window(c, spatial: x.rank - 2, input: (h, wd), kernelFallback: Array(w.shape[2...]))
        try checkKernel(win, weight: w, c)
        if let bias { guard bias.count == m else { throw c.fail("bias of \(bias.count) values for \(m) output channels") } }
        let (oh, ow) = try win.checkedOutput((h, wd), c)
        let out = GraphValue.uninitialized(try c.shape(shape(n, m, (oh, ow), rank: x.rank)))
        let (kh, kw) = win.kernel, k = cg * kh * kw, plane = oh * ow
        let xp = x.pointer, wp = w.pointer, yp = out.pointer
        if cg == 1 && mg == 1 {
            depthwise(x: xp, w: wp, y: yp, planes: n * ch, channels: ch, input: (h, wd), output: (oh, ow), win: win)
        } else {
            let direct = kh == 1 && kw == 1 && win.stride == (1, 1) && win.pads == (0, 0, 0, 0)
            /// The product of one (image, group): im2col (unless 1×1) then sgemm over output columns c0..<c1.
            func product(_ b: Int, _ g: Int, col: FloatBuffer?, unfold: Bool, _ c0: Int, _ c1: Int) {
                let src = xp + (b * ch + g * cg) * h * wd
                var data = UnsafePointer(src)
                if let col {
                    if unfold { im2col(src, channels: cg, input: (h, wd), output: (oh, ow), win: win, into: col.pointer) }
                    data = UnsafePointer(col.pointer)
                }
                Kernels.gemm(m: mg, n: c1 - c0, k: k, a: wp + g * mg * k, lda: k, b: data + c0, ldb: plane, transB: false,
                             c: yp + (b * m + g * mg) * plane + c0, ldc: plane)
            }
            let jobs = n * group
            if jobs == 1 {
                // One image, one group: unfold once, split the output columns (by shape only: deterministic).
                let col = direct ? nil : FloatBuffer(count: k * plane)
                if let col { im2col(xp, channels: cg, input: (h, wd), output: (oh, ow), win: win, into: col.pointer) }
                let tiles = plane >= 4096 ? 2 : 1
                Kernels.parallelRanges(count: tiles, minimumChunk: 1) { lo, hi in
                    for t in lo..<hi { product(0, 0, col: col, unfold: false, t * plane / tiles, (t + 1) * plane / tiles) }
                }
            } else {
                Kernels.parallelRanges(count: jobs, minimumChunk: 1) { lo, hi in
                    let col = direct ? nil : FloatBuffer(count: k * plane)
                    for j in lo..<hi { product(j / group, j % group, col: col, unfold: true, 0, plane) }
                }
            }
        }
        if let bias { addChannelBias(yp, bias.floats, batches: n, channels: m, plane: plane) }
        return [out]
    }

    static func addChannelBias(_ y: UnsafeMutablePointer<Float>, _ bias: [Float], batches: Int, channels: Int, plane: Int) {
        for b in 0..<batches {
            for ch in 0..<channels {
                let p = y + (b * channels + ch) * plane, v = bias[ch]
                var i = 0
                while i < plane { p[i] += v; i += 1 }
            }
        }
    }

    /// Unfold the windows of one image: `col[(c·kh + i)·kw + j][oy·ow + ox]`.
    static func im2col(_ x: UnsafePointer<Float>, channels: Int, input: (Int, Int), output: (Int, Int), win: Window,
                       into col: UnsafeMutablePointer<Float>) {
        let (h, w) = input, (oh, ow) = output, (kh, kw) = win.kernel
        let (sh, sw) = win.stride, (dh, dw) = win.dilation, (pt, pl) = (win.pads.0, win.pads.1)
        var row = 0
        for ch in 0..<channels {
            let plane = x + ch * h * w
            for i in 0..<kh {
                for j in 0..<kw {
                    let dst = col + row * oh * ow
                    for oy in 0..<oh {
                        let iy = oy * sh - pt + i * dh
                        let line = dst + oy * ow
                        if iy < 0 || iy >= h {
                            line.update(repeating: 0, count: ow)
                            continue
                        }
                        let src = plane + iy * w
                        var ox = 0, ix = j * dw - pl
                        while ox < ow {
                            line[ox] = ix >= 0 && ix < w ? src[ix] : 0
                            ox += 1; ix += sw
                        }
                    }
                    row += 1
                }
            }
        }
    }

    /// One filter per channel (group = channels, one input and one output channel per group).
    static func depthwise(x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, planes: Int,
                          channels: Int, input: (Int, Int), output: (Int, Int), win: Window) {
        let (h, wd) = input, (oh, ow) = output, (kh, kw) = win.kernel
        let (sh, sw) = win.stride, (dh, dw) = win.dilation, (pt, pl) = (win.pads.0, win.pads.1)
        Kernels.parallelRanges(count: planes, minimumChunk: 1) { lo, hi in
            for p in lo..<hi {
                let src = x + p * h * wd, dst = y + p * oh * ow, filter = w + (p % channels) * kh * kw
                dst.update(repeating: 0, count: oh * ow)
                for i in 0..<kh {
                    for j in 0..<kw {
                        let f = filter[i * kw + j]
                        for oy in 0..<oh {
                            let iy = oy * sh - pt + i * dh
                            guard iy >= 0, iy < h else { continue }
                            let line = src + iy * wd, out = dst + oy * ow
                            // Output columns whose input column is inside the image.
                            let off = j * dw - pl
                            let first = off >= 0 ? 0 : (-off + sw - 1) / sw
                            let lastExclusive = min(ow, wd - off <= 0 ? 0 : (wd - off + sw - 1) / sw)
                            var ox = first
                            while ox < lastExclusive { out[ox] += f * line[ox * sw + off]; ox += 1 }
                        }
                    }
                }
            }
        }
    }

    /// Transposed convolution: cols = W_gᵀ · X_g by sgemm, then scattered (col2im) into the output.
    static func convTranspose(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.floatInput(0), w = try c.floatInput(1), bias = c.optional(2)
        let (n, ch, h, wd) = try nchw(x, c)
        let group = try c.int("group", 1)
        guard w.rank == x.rank, group > 0, w.shape[0] == ch, ch % group == 0 else {
            throw c.fail("weight \(w.shape) does not fit input \(x.shape) with group \(group)")
        }
        let cg = ch / group, mg = w.shape[1], m = mg * group
        var win = try Window(c, spatial: x.rank - 2, input: (h, wd), kernelFallback: Array(w.shape[2...]))
        try checkKernel(win, weight: w, c)
        let spatial = x.rank - 2
        var extra = (0, 0)
        if let op = try c.ints("output_padding") {
            guard op.count == spatial else { throw c.fail("output_padding must have \(spatial) entries") }
            extra = spatial == 1 ? (0, op[0]) : (op[0], op[1])
        }
        func full(_ n: Int, _ k: Int, _ s: Int, _ d: Int, _ e: Int) -> Int { s * (n - 1) + e + (k - 1) * d + 1 }
        let fullH = full(h, win.kernel.0, win.stride.0, win.dilation.0, extra.0)
        let fullW = full(wd, win.kernel.1, win.stride.1, win.dilation.1, extra.1)
        var (oh, ow) = (fullH - win.pads.0 - win.pads.2, fullW - win.pads.1 - win.pads.3)
        let auto = try c.string("auto_pad", "NOTSET")
        if let os = try c.ints("output_shape") {
            guard os.count == spatial, os.allSatisfy({ (1...GraphLimits.maxElements).contains($0) }) else {
                throw c.fail("output_shape \(os) must have \(spatial) entries in 1...\(GraphLimits.maxElements)")
            }
            (oh, ow) = spatial == 1 ? (1, os[0]) : (os[0], os[1])
        } else if auto == "SAME_UPPER" || auto == "SAME_LOWER" {
            // input × strides, unless that exceeds the full output (a kernel smaller than the stride): the
            // padding is then 0 and the output the full one, as in onnxruntime (not zero-extended).
            (oh, ow) = (min(h * win.stride.0, fullH), min(wd * win.stride.1, fullW))
        }
        if try c.ints("output_shape") != nil || auto == "SAME_UPPER" || auto == "SAME_LOWER" {
            let th = max(0, fullH - oh), tw = max(0, fullW - ow)
            win.pads = auto == "SAME_UPPER" ? (th / 2, tw / 2, th - th / 2, tw - tw / 2) : (th - th / 2, tw - tw / 2, th / 2, tw / 2)
        }
        guard oh > 0, ow > 0 else { throw c.fail("the output would be empty") }
        let out = GraphValue.uninitialized(try c.shape(shape(n, m, (oh, ow), rank: x.rank)))
        let (kh, kw) = win.kernel, rows = mg * kh * kw, plane = h * wd
        let xp = x.pointer, wp = w.pointer, yp = out.pointer
        yp.update(repeating: 0, count: out.count)
        Kernels.parallelRanges(count: n * group, minimumChunk: 1) { lo, hi in
            let cols = FloatBuffer(count: rows * plane)
            for job in lo..<hi {
                let (b, g) = (job / group, job % group)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, blasint(rows), blasint(plane), blasint(cg), 1,
                            wp + g * cg * rows, blasint(rows), xp + (b * ch + g * cg) * plane, blasint(plane), 0,
                            cols.pointer, blasint(plane))
                for r in 0..<rows {
                    let mo = r / (kh * kw), i = (r / kw) % kh, j = r % kw
                    let dst = yp + (b * m + g * mg + mo) * oh * ow, src = cols.pointer + r * plane
                    for iy in 0..<h {
                        let oy = iy * win.stride.0 - win.pads.0 + i * win.dilation.0
                        guard oy >= 0, oy < oh else { continue }
                        for ix in 0..<wd {
                            let ox = ix * win.stride.1 - win.pads.1 + j * win.dilation.1
                            if ox >= 0 && ox < ow { dst[oy * ow + ox] += src[iy * wd + ix] }
                        }
                    }
                }
            }
        }
        if let bias {
            guard bias.count == m else { throw c.fail("bias of \(bias.count) values for \(m) output channels") }
            addChannelBias(yp, bias.floats, batches: n, channels: m, plane: oh * ow)
        }
        return [out]
    }

    static func pool(_ c: OpContext, max isMax: Bool) throws -> GraphValue {
        let x = try c.floatInput(0)
        let (n, ch, h, wd) = try nchw(x, c)
        let win = try Window(c, spatial: x.rank - 2, input: (h, wd), kernelFallback: nil)
        guard c.node.outputs.count < 2 || c.node.outputs[1].isEmpty else {
            throw c.unsupported("MaxPool's second output (Indices) is not supported")
        }
        let (oh, ow) = try win.checkedOutput((h, wd), ceil: try c.int("ceil_mode", 0) != 0, c)
        let includePad = try c.int("count_include_pad", 0) != 0
        let out = GraphValue.uninitialized(try c.shape(shape(n, ch, (oh, ow), rank: x.rank)))
        let xp = x.pointer, yp = out.pointer
        let (kh, kw) = win.kernel, (sh, sw) = win.stride, (dh, dw) = win.dilation, (pt, pl, pb, pr) = win.pads
        Kernels.parallelRanges(count: n * ch, minimumChunk: 1) { lo, hi in
            for p in lo..<hi {
                let src = xp + p * h * wd, dst = yp + p * oh * ow
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var acc: Float = isMax ? -.infinity : 0
                        var valid = 0, padded = 0
                        for i in 0..<kh {
                            let iy = oy * sh - pt + i * dh
                            for j in 0..<kw {
                                let ix = ox * sw - pl + j * dw
                                if iy >= -pt && iy < h + pb && ix >= -pl && ix < wd + pr { padded += 1 }
                                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                                let v = src[iy * wd + ix]
                                if isMax { acc = maxKeepingNaN(acc, v) } else { acc += v }
                                valid += 1
                            }
                        }
                        // A max window over padding only is the lowest finite value, as in onnxruntime (whose
                        // running max starts there); the ONNX spec leaves it open.
                        dst[oy * ow + ox] = isMax ? (valid == 0 ? -.greatestFiniteMagnitude : acc)
                                                  : acc / Float(Swift.max(1, includePad ? padded : valid))
                    }
                }
            }
        }
        return out
    }

    /// The larger of `acc` and `v`, NaN once either is NaN (as onnxruntime's and numpy's max pools;
    /// `Swift.max` drops a NaN that comes second).
    @inline(__always) static func maxKeepingNaN(_ acc: Float, _ v: Float) -> Float { v > acc || v.isNaN ? v : acc }

    static func globalPool(_ c: OpContext, max isMax: Bool) throws -> GraphValue {
        let x = try c.floatInput(0)
        guard x.rank >= 3 else { throw c.fail("input of shape \(x.shape) has no spatial dimensions") }
        let planes = x.shape[0] * x.shape[1], size = x.shape[2...].reduce(1, *)
        let out = GraphValue.uninitialized([x.shape[0], x.shape[1]] + Array(repeating: 1, count: x.rank - 2))
        let xp = x.pointer, yp = out.pointer
        for p in 0..<planes {
            let src = xp + p * size
            var acc: Float = isMax ? -.infinity : 0
            var i = 0
            if isMax { while i < size { acc = maxKeepingNaN(acc, src[i]); i += 1 } } else { while i < size { acc += src[i]; i += 1 } }
            yp[p] = isMax ? acc : acc / Float(size)
        }
        return out
    }

    /// Inference batch normalization over axis 1: y = (x − mean) / √(var + ε) · scale + bias.
    static func batchNorm(_ c: OpContext) throws -> [GraphValue] {
        let x = try c.floatInput(0)
        let scale = try c.input(1).floats, bias = try c.input(2).floats, mean = try c.input(3).floats, variance = try c.input(4).floats
        guard x.rank >= 2 else { throw c.fail("input of shape \(x.shape) has no channel axis") }
        let ch = x.shape[1], plane = x.shape[2...].reduce(1, *)
        guard [scale, bias, mean, variance].allSatisfy({ $0.count == ch }) else { throw c.fail("parameters must have \(ch) values") }
        let eps = try c.float("epsilon", 1e-5)
        let out = GraphValue.uninitialized(x.shape)
        let xp = x.pointer, yp = out.pointer
        for b in 0..<x.shape[0] {
            for k in 0..<ch {
                let a = scale[k] / (variance[k] + eps).squareRoot(), shift = bias[k] - mean[k] * a
                let src = xp + (b * ch + k) * plane, dst = yp + (b * ch + k) * plane
                var i = 0
                while i < plane { dst[i] = src[i] * a + shift; i += 1 }
            }
        }
        return [out]
    }
}
