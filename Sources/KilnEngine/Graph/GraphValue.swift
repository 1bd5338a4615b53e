import KilnCore

/// Bounds on the sizes the interpreter takes from a model or its inputs (shape inputs, window
/// attributes), so a malformed file gets a `KilnError` instead of an overflow or a huge allocation.
public enum GraphLimits {
    /// The most elements one value may hold: 2³¹ (8 GiB of f32). Settable so that a caller with
    /// less memory (the FuzzGraphRun harness) refuses smaller tensors; set it before running graphs.
    nonisolated(unsafe) public static var maxElements = 1 << 31
    /// The largest kernel size, stride, dilation or pad of a window op (Conv, ConvTranspose, pooling).
    public static let maxWindow = 1 << 20

    /// The element count of `dims` when every dim is ≥ 0 and the count is at most ``maxElements``; nil otherwise.
    static func elementCount(_ dims: [Int]) -> Int? {
        var n = 1
        for d in dims {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow, p <= maxElements else { return nil }
            n = p
        }
        return n
    }
}

/// A runtime value of the ``GraphInterpreter``: a shape and its elements, row-major.
///
/// Floating-point values of every width compute in f32 (``floats``); integer and bool values
/// (shape arithmetic, indices, masks, quantized payloads) are held as Int64 (``ints``). `dtype`
/// keeps the ONNX element type, so a Cast or a QuantizeLinear output reports what ONNX would.
/// Values are immutable once produced: reshaping ops share the element storage.
public struct GraphValue: @unchecked Sendable {
    /// The element type as ONNX sees it.
    public let dtype: DType
    public let shape: [Int]
    /// The elements when `dtype.isFloat`.
    let floatStorage: FloatBuffer?
    /// The elements otherwise.
    public let ints: [Int64]

    /// A floating-point value (`dtype` f32 unless given) over `buffer`.
    init(shape: [Int], buffer: FloatBuffer, dtype: DType = .f32) {
        precondition(buffer.count == shape.reduce(1, *))
        self.dtype = dtype
        self.shape = shape
        floatStorage = buffer
        ints = []
    }

    /// A floating-point value holding `values`.
    public init(shape: [Int], floats values: [Float], dtype: DType = .f32) {
        self.init(shape: shape, buffer: FloatBuffer(values), dtype: dtype)
    }

    /// An integer or bool value holding `values`.
    public init(shape: [Int], ints values: [Int64], dtype: DType = .i64) {
        precondition(values.count == shape.reduce(1, *) && !dtype.isFloat)
        self.dtype = dtype
        self.shape = shape
        floatStorage = nil
        ints = values
    }

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var isFloat: Bool { floatStorage != nil }

    /// The float elements (precondition: ``isFloat``).
    var buffer: FloatBuffer { floatStorage! }
    var pointer: UnsafeMutablePointer<Float> { floatStorage!.pointer }

    /// The elements as Float, whatever the type.
    public var floats: [Float] {
        if let floatStorage { return floatStorage.array }
        return ints.map { Float($0) }
    }

    /// The same elements under another shape (no copy).
    func reshaped(_ dims: [Int]) -> GraphValue {
        if let floatStorage { return GraphValue(shape: dims, buffer: floatStorage, dtype: dtype) }
        return GraphValue(shape: dims, ints: ints, dtype: dtype)
    }

    /// `src` rounded through the narrower float `type` — cast to it and back, the values a Cast or an
    /// fp8 QuantizeLinear payload holds — written as f32 to `dst` (which may be `src`'s memory).
    static func roundThrough(_ type: DType, _ src: UnsafeBufferPointer<Float>, into dst: UnsafeMutablePointer<Float>) throws {
        guard let from = src.baseAddress, !src.isEmpty else { return }
        var bytes = [UInt8](repeating: 0, count: type.byteCount(elements: src.count) ?? 0)
        try bytes.withUnsafeMutableBytes { b in
            try DType.convert(src.count, from: .f32, UnsafeRawPointer(from), to: type, b.baseAddress!)
            try DType.convert(src.count, from: type, UnsafeRawPointer(b.baseAddress!), to: .f32, UnsafeMutableRawPointer(dst))
        }
    }

    /// The largest finite magnitude of an fp8 payload type (E4M3FN 448, E5M2 57344): where Q saturates.
    static func fp8Limit(_ type: DType) -> Float { type == .f8e5m2 ? 57344 : 448 }

    /// A float value of `shape` (elements undefined until written).
    static func uninitialized(_ shape: [Int], dtype: DType = .f32) -> GraphValue {
        GraphValue(shape: shape, buffer: FloatBuffer(count: shape.reduce(1, *)), dtype: dtype)
    }

    /// A value of an IR tensor: float types upcast to f32, integer types widened to Int64,
    /// quantized payloads dequantized by their ``QuantSpec`` (fake quantization).
    /// - Throws: `KilnError(.unsupported)` for packed types without a QuantSpec; storage errors.
    public init(_ tensor: Tensor) throws {
        let dims = tensor.shape.dims
        if let spec = tensor.quant {
            let values = try spec.dequantize(tensor)
            self.init(shape: dims, buffer: FloatBuffer(try values.floats()))
            return
        }
        if tensor.dtype.isFloat {
            let out = FloatBuffer(count: tensor.elementCount)
            try tensor.withBytes { bytes in
                guard out.count > 0 else { return }
                try DType.convert(out.count, from: tensor.dtype, bytes.baseAddress!, to: .f32, UnsafeMutableRawPointer(out.pointer))
            }
            self.init(shape: dims, buffer: out, dtype: tensor.dtype)
            return
        }
        guard !tensor.dtype.isPacked else {
            throw KilnError(.unsupported, path: ["tensor \"\(tensor.name)\""], "\(tensor.dtype) values without a QuantSpec cannot be executed")
        }
        let n = tensor.elementCount
        let values: [Int64] = try tensor.withBytes { b in
            switch tensor.dtype {
            case .i64: return (0..<n).map { b.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) }
            case .u64: return (0..<n).map { Int64(bitPattern: b.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
            case .i32: return (0..<n).map { Int64(b.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
            case .u32: return (0..<n).map { Int64(b.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
            case .i16: return (0..<n).map { Int64(b.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self)) }
            case .u16: return (0..<n).map { Int64(b.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
            case .i8: return (0..<n).map { Int64(Int8(bitPattern: b[$0])) }
            case .u8, .bool: return (0..<n).map { Int64(b[$0]) }
            default:
                throw KilnError(.unsupported, path: ["tensor \"\(tensor.name)\""], "element type \(tensor.dtype) cannot be executed")
            }
        }
        self.init(shape: dims, ints: values, dtype: tensor.dtype)
    }

    /// The value as an IR tensor named `name` (f32 for floating values, the value's own integer type otherwise).
    public func tensor(name: String) -> Tensor {
        if let floatStorage {
            return Tensor(name: name, dtype: .f32, shape: Shape(shape), values: floatStorage.array)
        }
        switch dtype {
        case .i32: return Tensor(name: name, dtype: .i32, shape: Shape(shape), values: ints.map { Int32(truncatingIfNeeded: $0) })
        case .i8: return Tensor(name: name, dtype: .i8, shape: Shape(shape), values: ints.map { Int8(truncatingIfNeeded: $0) })
        case .u8: return Tensor(name: name, dtype: .u8, shape: Shape(shape), values: ints.map { UInt8(truncatingIfNeeded: $0) })
        case .bool: return Tensor(name: name, dtype: .bool, shape: Shape(shape), values: ints.map { UInt8($0 != 0 ? 1 : 0) })
        default: return Tensor(name: name, dtype: .i64, shape: Shape(shape), values: ints)
        }
    }
}
