import KilnCore

/// Differences between two models, tensor by tensor: the round-trip verifier a format plugin's
/// tests use (`read(write(x)) == x`), in the spirit of swift-nio's ByteToMessageDecoderVerifier.
public enum ModelDiff {
    /// Human-readable differences (empty when equal): tensor names (as sets unless `order`),
    /// dtypes, shapes, payload bytes, and for quantized tensors the QuantSpec (format, granularity,
    /// sparsity, and the values of scale / zero point / pre-quant / input scale).
    public static func differences(_ a: Model, _ b: Model, order: Bool = false, limit: Int = 10) throws -> [String] {
        var out: [String] = []
        if order ? a.tensorNames != b.tensorNames : Set(a.tensorNames) != Set(b.tensorNames) {
            out.append("names: only in first \(Set(a.tensorNames).subtracting(b.tensorNames).sorted().prefix(5)), only in second \(Set(b.tensorNames).subtracting(a.tensorNames).sorted().prefix(5))")
            if !order { return out }
        }
        for t in a.tensors {
            guard out.count < limit, let u = b[t.name] else { continue }
            out += try tensor(t, u)
        }
        return out
    }

    /// Differences between two tensors of the same name.
    public static func tensor(_ t: Tensor, _ u: Tensor) throws -> [String] {
        var out: [String] = []
        let n = t.name
        if t.dtype != u.dtype { out.append("\(n): dtype \(t.dtype) vs \(u.dtype)") }
        if t.shape != u.shape { out.append("\(n): shape \(t.shape) vs \(u.shape)") }
        if out.isEmpty, try bytes(t) != bytes(u) { out.append("\(n): payload bytes differ") }
        switch (t.quant, u.quant) {
        case (nil, nil): break
        case (let p?, let q?):
            if p.format != q.format { out.append("\(n): format \(p.format) vs \(q.format)") }
            if p.granularity != q.granularity { out.append("\(n): granularity \(p.granularity) vs \(q.granularity)") }
            if p.sparsity != q.sparsity { out.append("\(n): sparsity \(String(describing: p.sparsity)) vs \(String(describing: q.sparsity))") }
            for (what, x, y) in [("scale", p.scale, q.scale) as (String, Tensor?, Tensor?), ("zero point", p.zeroPoint, q.zeroPoint),
                                 ("pre-quant scale", p.preQuantScale, q.preQuantScale), ("input scale", p.inputScale, q.inputScale)] {
                switch (x, y) {
                case (nil, nil): break
                case (let x?, let y?):
                    if try x.floats() != y.floats() { out.append("\(n): \(what) values differ") }
                    if x.shape != y.shape { out.append("\(n): \(what) shape \(x.shape) vs \(y.shape)") }
                default: out.append("\(n): \(what) present in only one")
                }
            }
        default: out.append("\(n): quantized in only one")
        }
        return out
    }

    public static func bytes(_ t: Tensor) throws -> [UInt8] { try t.withBytes { Array($0) } }
}
