extension QuantSpec {
    /// The dequantized values `(q − z) · s` of `payload`, in f32, same shape as `payload`.
    ///
    /// - Parameter payload: the quantized tensor; its dtype must be `format.payload`.
    /// - Throws: `KilnError(.invalidInput)` naming the tensor when the scale shape does not
    ///   match the granularity or the payload dtype does not match the format.
    /// - Complexity: O(elements).
    public func dequantize(_ payload: Tensor) throws -> Tensor {
        let name = payload.name
        guard payload.dtype == format.payload else {
            throw KilnError.mismatch(file: nil, path: ["tensor \"\(name)\"", "dtype"], expected: format.payload.name, found: payload.dtype.name)
        }
        let q = try QuantSpec.payloadValues(payload)
        let s = try scale.floats()
        let z = try zeroPoint.map { try QuantSpec.payloadValues($0) }
        let dims = payload.shape.dims
        var out = [Float](repeating: 0, count: q.count)
        let groupIndex = try QuantSpec.scaleIndexer(granularity: granularity, dims: dims, scaleCount: s.count, tensor: name)
        for i in 0..<q.count {
            let g = groupIndex(i)
            let zero = z?[g] ?? 0
            out[i] = (q[i] - zero) * s[g]
        }
        return Tensor(name: name, dtype: .f32, shape: payload.shape, values: out)
    }

    /// Payload elements as Float, unpacking 4-bit types (low nibble first).
    static func payloadValues(_ t: Tensor) throws -> [Float] {
        switch t.dtype {
        case .i4, .u4:
            let n = t.elementCount
            let signed = t.dtype == .i4
            return try t.withBytes { bytes in
                (0..<n).map { i in
                    let byte = bytes[i / 2]
                    let nibble = (i % 2 == 0) ? byte & 0x0F : byte >> 4
                    if signed { return Float(Int8(bitPattern: nibble << 4) >> 4) }
                    return Float(nibble)
                }
            }
        default:
            return try t.floats()
        }
    }

    /// Maps a flat element index of a tensor of shape `dims` to the index of its scale.
    static func scaleIndexer(granularity: Granularity, dims: [Int], scaleCount: Int, tensor: String) throws -> (Int) -> Int {
        let total = dims.reduce(1, *)
        func bad(_ expected: Int) -> KilnError {
            KilnError.mismatch(file: nil, path: ["tensor \"\(tensor)\"", "scale"], expected: "\(expected) scale values", found: "\(scaleCount)")
        }
        switch granularity {
        case .perTensor:
            guard scaleCount == 1 else { throw bad(1) }
            return { _ in 0 }
        case .perChannel(let axis):
            guard axis >= 0, axis < dims.count else {
                throw KilnError(.invalidInput, path: ["tensor \"\(tensor)\""], "channel axis \(axis) out of range for rank \(dims.count)")
            }
            guard scaleCount == dims[axis] else { throw bad(dims[axis]) }
            let inner = dims[(axis + 1)...].reduce(1, *)
            let size = dims[axis]
            return { ($0 / inner) % size }
        case .perBlock(let axis, let block):
            guard axis >= 0, axis < dims.count, block > 0 else {
                throw KilnError(.invalidInput, path: ["tensor \"\(tensor)\""], "block axis \(axis) / size \(block) invalid for rank \(dims.count)")
            }
            let blocks = (dims[axis] + block - 1) / block
            let expected = total / max(dims[axis], 1) * blocks
            guard scaleCount == expected else { throw bad(expected) }
            let inner = dims[(axis + 1)...].reduce(1, *)
            let size = dims[axis]
            return { i in
                let outer = i / (inner * size)
                let a = (i / inner) % size
                let rest = i % inner
                return (outer * blocks + a / block) * inner + rest
            }
        }
    }
}
