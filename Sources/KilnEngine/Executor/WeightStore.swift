import KilnCore

/// f32 copies of a model's weights, made on first use and kept: any stored dtype is upcast, a
/// quantized payload is dequantized by its ``QuantSpec`` (fake quantization).
final class WeightStore {
    let model: Model
    private var dense: [String: FloatBuffer] = [:]
    private var linears: [String: LinearWeight] = [:]
    /// Tensors used instead of the model's (``replace(_:)``).
    private var replacements: [String: Tensor] = [:]

    init(model: Model) { self.model = model }

    /// The tensor called `name` (a replacement first), or an error naming it.
    func tensor(_ name: String) throws -> Tensor {
        if let t = replacements[name] { return t }
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
            if let q = t.quant, !(activationOnly(t) && replacements[name] != nil) {
                values = try q.dequantize(t).floats()
            } else {
                values = try t.floats()
            }
        } catch let e as KilnError {
            throw e.path.first?.hasPrefix("tensor") == true ? e : e.adding(context: "tensor \"\(name)\"")
        }
        let b = FloatBuffer(values)
        dense[name] = b
        return b
    }

    /// The weight of a `kiln.Linear` with its activation-side quantization, cached, as f32 `[out, in]`.
    /// - Parameters:
    ///   - name: the weight tensor.
    ///   - inOut: the tensor is stored `[in, out]` (GPT-2 Conv1D); the cached copy is transposed.
    /// - Throws: `KilnError(.invalidInput)` when the weight is not 2-D or its pre-quant / input
    ///   scale has the wrong size.
    func linear(_ name: String, inOut: Bool = false) throws -> LinearWeight {
        if let l = linears[name] { return l }
        let t = try tensor(name)
        guard t.shape.rank == 2 else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(name)\"", "shape"], expected: "2 dimensions [out, in]", found: t.shape.description)
        }
        let (out, inFeatures) = inOut ? (t.shape[1], t.shape[0]) : (t.shape[0], t.shape[1])
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
            } else if let algorithm = model.quantization?.algorithm, ActivationQuant.perTokenAlgorithms.contains(algorithm) {
                input = ActivationQuant(format: q.format, scale: nil)
            }
        }
        var weight: FloatBuffer
        if inOut {
            let cachedBefore = dense[name] != nil
            let stored = try floats(name)
            weight = FloatBuffer(count: stored.count)
            for i in 0..<inFeatures {
                let row = stored.pointer + i * out
                for o in 0..<out { weight.pointer[o * inFeatures + i] = row[o] }
            }
            if !cachedBefore { dense[name] = nil }
        } else {
            weight = try floats(name)
        }
        let l = LinearWeight(weight: weight, outFeatures: out, inFeatures: inFeatures, preQuantScale: pre, inputQuant: input)
        linears[name] = l
        return l
    }

    /// A float weight whose ``QuantSpec`` only describes its input (`inputScale`): honoured for
    /// replacements (``Executor/replaceWeights(_:)``, sensitivity probes measuring the activation-side
    /// cost alone); a model's own tensors must hold their format's payload.
    private func activationOnly(_ t: Tensor) -> Bool {
        guard let q = t.quant else { return false }
        return t.dtype.isFloat && t.dtype != q.format.payload && q.inputScale != nil
    }

    /// Use `tensor` for its name from now on, dropping the f32 copies made from the old one.
    func replace(_ tensor: Tensor) {
        replacements[tensor.name] = tensor
        dense[tensor.name] = nil
        linears[tensor.name] = nil
    }

    /// Drop the f32 copies of `names` (all when nil); they are made again on next use.
    func evict(_ names: [String]?) {
        guard let names else {
            dense.removeAll()
            linears.removeAll()
            return
        }
        for name in names {
            dense[name] = nil
            linears[name] = nil
        }
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
    /// Activation quantization (static, or dynamic per token), applied after the pre-quant scale.
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
        inputQuant?.apply(y, rows: rows, cols: inFeatures)
    }
}

/// Fake quantization of an activation: static per-tensor (the weight's `input_scale`), or dynamic
/// per token when the weight has none and the model's algorithm says per-token.
///
/// ```
/// int8 / uint8 weights (W8A8):           x_q = clamp(round_half_even(x / s), −128, 127) · s
/// every other format (FP8, W4A8 AWQ):    x_q = f32(fp8e4m3_saturating(x / s)) · s
/// per token (scale nil):                 s = amax(|x[r, :]|) / 127 (int8) or / 448 (fp8), per row r;
///                                        an all-zero row stays zero
/// ```
struct ActivationQuant {
    /// Algorithms whose weights without an input scale take per-token dynamic activations.
    static let perTokenAlgorithms: Set<String> = ["FP8_PER_CHANNEL_PER_TOKEN", "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN"]

    var format: QuantSpec.Format
    /// The static per-tensor scale; nil: dynamic per token.
    var scale: Float?

    private var isInteger: Bool {
        switch format {
        case .int8, .uint8: return true
        default: return false
        }
    }

    func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        guard let s = scale else {
            let qmax: Float = isInteger ? 127 : 448
            for r in 0..<rows {
                let row = x + r * cols
                var amax: Float = 0
                for c in 0..<cols { amax = max(amax, abs(row[c])) }
                guard amax > 0, amax.isFinite else { continue }
                quantize(row, count: cols, scale: amax / qmax)
            }
            return
        }
        quantize(x, count: rows * cols, scale: s)
    }

    private func quantize(_ x: UnsafeMutablePointer<Float>, count: Int, scale s: Float) {
        if isInteger {
            Kernels.fakeQuantizeINT8(x, count: count, scale: s)
        } else {
            Kernels.fakeQuantizeFP8(x, count: count, scale: s)
        }
    }
}
