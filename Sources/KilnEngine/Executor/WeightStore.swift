import KilnCore

/// f32 copies of a model's weights, made on first use and kept: any stored dtype is upcast, a
/// quantized payload is dequantized by its ``QuantSpec`` (fake quantization).
final class WeightStore {
    let model: Model
    private var dense: [String: FloatBuffer] = [:]
    private var linears: [String: LinearWeight] = [:]

    init(model: Model) { self.model = model }

    /// The tensor called `name`, or an error naming it.
    func tensor(_ name: String) throws -> Tensor {
        guard let t = model[name] else {
            throw KilnError(.invalidInput, path: ["tensor \"\(name)\""], "missing (the graph refers to it)")
        }
        return t
    }

    /// The weight as f32 (dequantized when it carries a QuantSpec), cached.
    /// - Throws: `KilnError` from conversion or dequantization, naming the tensor.
    func floats(_ name: String) throws -> FloatBuffer {
        if let b = dense[name] { return b }
        let t = try tensor(name)
        let values: [Float]
        do {
            values = try t.quant.map { try $0.dequantize(t).floats() } ?? t.floats()
        } catch let e as KilnError {
            throw e.path.first?.hasPrefix("tensor") == true ? e : e.adding(context: "tensor \"\(name)\"")
        }
        let b = FloatBuffer(values)
        dense[name] = b
        return b
    }

    /// The weight of a `kiln.Linear` with its activation-side quantization, cached.
    /// - Throws: `KilnError(.invalidInput)` when the weight is not 2-D or its pre-quant / input
    ///   scale has the wrong size.
    func linear(_ name: String) throws -> LinearWeight {
        if let l = linears[name] { return l }
        let t = try tensor(name)
        guard t.shape.rank == 2 else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(name)\"", "shape"], expected: "2 dimensions [out, in]", found: t.shape.description)
        }
        let out = t.shape[0], inFeatures = t.shape[1]
        var pre: FloatBuffer?
        var input: ActivationQuant?
        if let q = t.quant {
            if let p = q.preQuantScale {
                let values = try p.floats()
                guard values.count == inFeatures else {
                    throw KilnError.mismatch(file: nil, path: ["tensor \"\(name)\"", "pre_quant_scale"], expected: "\(inFeatures) values", found: "\(values.count)")
                }
                pre = FloatBuffer(values)
            }
            if let s = q.inputScale {
                let values = try s.floats()
                guard values.count == 1 else {
                    throw KilnError.mismatch(file: nil, path: ["tensor \"\(name)\"", "input_scale"], expected: "1 value (per-tensor)", found: "\(values.count)")
                }
                input = ActivationQuant(format: q.format, scale: values[0])
            }
        }
        let l = LinearWeight(weight: try floats(name), outFeatures: out, inFeatures: inFeatures, preQuantScale: pre, inputQuant: input)
        linears[name] = l
        return l
    }

    /// Bytes held by cached f32 weights.
    var byteCount: Int { dense.values.reduce(0) { $0 + $1.count * 4 } }
}

/// A linear layer's f32 weight `[out, in]` and what happens to its input first.
struct LinearWeight {
    var weight: FloatBuffer
    var outFeatures: Int
    var inFeatures: Int
    /// AWQ / SmoothQuant per-input-channel scale: the layer computes `(x ⊙ p) · wᵀ`.
    var preQuantScale: FloatBuffer?
    /// Static activation quantization, applied after the pre-quant scale.
    var inputQuant: ActivationQuant?

    var transformsInput: Bool { preQuantScale != nil || inputQuant != nil }

    /// `x ⊙ p`, then fake-quantized, for `rows` rows.
    func transformInput(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let n = rows * inFeatures
        if let p = preQuantScale {
            Kernels.mul(x, p.pointer, bCount: inFeatures, count: n, y)
        } else {
            y.update(from: x, count: n)
        }
        inputQuant?.apply(y, count: n)
    }
}

/// Static per-tensor fake quantization of an activation.
///
/// ```
/// int8 / uint8 weights (W8A8):           x_q = clamp(round_half_even(x / s), −128, 127) · s
/// every other format (FP8, W4A8 AWQ):    x_q = f32(fp8e4m3_saturating(x / s)) · s
/// ```
struct ActivationQuant {
    var format: QuantSpec.Format
    var scale: Float

    func apply(_ x: UnsafeMutablePointer<Float>, count: Int) {
        let s = scale
        var i = 0
        switch format {
        case .int8, .uint8:
            while i < count {
                let q = min(max((x[i] / s).rounded(.toNearestOrEven), -128), 127)
                x[i] = q * s
                i += 1
            }
        default:
            while i < count {
                x[i] = FloatBits.f32(fromF8E4M3FN: FloatBits.f8e4m3fnSaturating(fromF32: x[i] / s)) * s
                i += 1
            }
        }
    }
}
