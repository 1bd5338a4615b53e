import KilnCore

/// How the weights of one TensorRT-LLM linear are stored.
enum WeightFormat: Equatable {
    case float
    /// F8_E4M3, one per-tensor scale.
    case fp8
    /// F8_E4M3, one scale per output row (`per_channel_scale`), per-token dynamic activations.
    case fp8PerChannel
    /// I8, per-output-channel scales (SmoothQuant).
    case int8
    /// int4 in blocks of `group` along the input dim (AWQ), packed two per byte.
    case int4(group: Int)

    /// The TensorRT-LLM quant_algo this format belongs to (W4A8 is decided by activation scales).
    var algorithm: String? {
        switch self {
        case .float: return nil
        case .fp8: return "FP8"
        case .fp8PerChannel: return "FP8_PER_CHANNEL_PER_TOKEN"
        case .int8: return "W8A8_SQ_PER_CHANNEL"
        case .int4: return "W4A16_AWQ"
        }
    }
}

/// The quantization of one linear as the writer found it in the IR (all parts agree).
struct LinearQuant {
    var format: WeightFormat
    /// Per part: the QuantSpec (nil for float).
    var specs: [QuantSpec?]

    /// Classify the parts of `linear` from their IR tensors.
    /// - Throws: `KilnError(.unsupported)` for a mix of quantized and float parts, differing formats,
    ///   zero points, or granularities TensorRT-LLM has no layout for.
    static func classify(_ linear: LinearSpec, weights: [Tensor]) throws -> LinearQuant {
        let specs = weights.map(\.quant)
        let here = ["tensor \"\(weights[0].name)\""]
        if specs.allSatisfy({ $0 == nil }) { return LinearQuant(format: .float, specs: specs) }
        guard specs.allSatisfy({ $0 != nil }) else {
            let names = zip(weights, specs).map { "\($0.0.name) is \($0.1 == nil ? "float" : "quantized")" }
            throw KilnError(.unsupported, path: here,
                            "\(linear.trt) fuses \(weights.map(\.name).joined(separator: ", ")) and they must all be quantized or all float: \(names.joined(separator: ", "))")
        }
        if linear.parts.contains(where: \.transposed) {
            throw KilnError(.unsupported, path: here, "quantized GPT-2 (Conv1D) weights are not supported in TensorRT-LLM checkpoints yet")
        }
        var formats: [WeightFormat] = []
        for (t, q) in zip(weights, specs) {
            let q = q!
            let at = ["tensor \"\(t.name)\""]
            guard q.zeroPoint == nil else {
                throw KilnError(.unsupported, path: at, "zero points (asymmetric quantization) have no place in a TensorRT-LLM checkpoint")
            }
            switch (q.format, q.granularity) {
            case (.fp8e4m3, .perTensor): formats.append(.fp8)
            case (.fp8e4m3, .perChannel(axis: 0)):
                guard q.inputScale == nil else {
                    throw KilnError(.unsupported, path: at, "FP8 per-channel weights take per-token dynamic activations (FP8_PER_CHANNEL_PER_TOKEN); a static input scale has no place beside them")
                }
                formats.append(.fp8PerChannel)
            case (.int8, .perChannel(axis: 0)): formats.append(.int8)
            case (.int4, .perBlock(axis: 1, let size)): formats.append(.int4(group: size))
            default:
                throw KilnError(.unsupported, path: at,
                                "\(q.format.rawValue) with granularity \(q.granularity) has no TensorRT-LLM layout (FP8 per-tensor or per-channel axis 0, INT8 per-channel axis 0, INT4 blocks along axis 1)")
            }
        }
        guard formats.allSatisfy({ $0 == formats[0] }) else {
            throw KilnError(.unsupported, path: here, "\(linear.trt) fuses tensors quantized differently: \(formats)")
        }
        return LinearQuant(format: formats[0], specs: specs)
    }
}

enum ScaleValues {
    /// The single value of a per-tensor scale ([] or [1]).
    static func scalar(_ t: Tensor, _ what: String) throws -> Float {
        let v = try t.floats()
        guard v.count == 1 else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(t.name)\"", what], expected: "one value", found: "\(v.count) values")
        }
        return v[0]
    }

    /// Are these tensors' values all equal (same count, same floats)?
    static func equal(_ tensors: [Tensor]) throws -> Bool {
        guard let first = tensors.first else { return true }
        let a = try first.floats()
        for t in tensors.dropFirst() where try t.floats() != a { return false }
        return true
    }

    /// FP8 requantization to a shared scale, exactly as the writer does it:
    ///
    /// ```
    /// q' = fp8e4m3_saturating( f32(q) · s_part / s_shared )      (f32 multiply, then f32 divide)
    /// ```
    static func requantizeFP8(_ payload: Tensor, from s: Float, to shared: Float) -> Tensor {
        Assemble.deferred(payload.name, .f8e4m3fn, payload.shape) {
            let out = TensorBuffer(count: payload.elementCount, zeroed: false)
            try payload.withBytes { bytes in
                let dst = out.pointer.assumingMemoryBound(to: UInt8.self)
                for i in 0..<payload.elementCount {
                    let w = FloatBits.f32(fromF8E4M3FN: bytes[i]) * s
                    dst[i] = FloatBits.f8e4m3fnSaturating(fromF32: w / shared)
                }
            }
            return out
        }
    }
}
