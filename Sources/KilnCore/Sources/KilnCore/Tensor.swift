/// Where a tensor's bytes come from. Reading one tensor never loads its neighbours.
public indirect enum TensorStorage: @unchecked Sendable {
    /// A region of a memory-mapped file (lazy, zero-copy).
    case mapped(MappedFile, offset: Int)
    /// Bytes held in memory.
    case owned(TensorBuffer)
    /// A lazy element-type conversion of another tensor, computed chunk by chunk when streamed.
    case converted(Tensor)
    /// Any other computation, run when the bytes are first needed (not cached).
    case deferred(@Sendable () throws -> TensorBuffer)
}

/// A named n-dimensional array: element type, shape, storage and an optional quantization spec.
///
/// Bytes are row-major little-endian; packed 4-bit types hold two elements per
/// byte, the first element in the low nibble (ONNX's convention). Format
/// writers repack to their own convention.
public struct Tensor: @unchecked Sendable {
    public var name: String
    public var dtype: DType
    public var shape: Shape
    public var storage: TensorStorage
    /// Set when the payload is quantized (`dtype` is then the payload type).
    public var quant: QuantSpec? {
        get { quantBox.first }
        set { quantBox = newValue.map { [$0] } ?? [] }
    }
    /// Holds `quant` (an array breaks the Tensor → QuantSpec → Tensor value recursion).
    private var quantBox: [QuantSpec] = []

    public init(name: String, dtype: DType, shape: Shape, storage: TensorStorage, quant: QuantSpec? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
        self.quantBox = quant.map { [$0] } ?? []
    }

    /// A tensor holding `values` (an f32 tensor from `[Float]`, and so on).
    public init<T>(name: String, dtype: DType, shape: Shape, values: [T]) {
        precondition(values.count * MemoryLayout<T>.stride == dtype.byteCount(elements: shape.elementCount ?? -1))
        self.init(name: name, dtype: dtype, shape: shape, storage: .owned(TensorBuffer(values: values)))
    }

    /// Number of elements.
    public var elementCount: Int { shape.elementCount ?? 0 }
    /// Bytes of the payload.
    public var byteCount: Int { dtype.byteCount(elements: elementCount) ?? 0 }

    /// The same tensor, lazily converted to `dtype` (a no-op when it already is).
    public func converted(to target: DType) -> Tensor {
        if target == dtype { return self }
        return Tensor(name: name, dtype: target, shape: shape, storage: .converted(self))
    }

    /// Call `body` with all payload bytes, contiguous and aligned to the element size.
    /// - Throws: whatever producing the bytes throws (a deferred computation, a failed conversion).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        switch storage {
        case .mapped(let file, let offset):
            let region = file.bytes(offset: offset, count: byteCount)
            let align = max(1, dtype.bits / 8)
            if let base = region.baseAddress, Int(bitPattern: base) % align != 0 {
                return try withExtendedLifetime(TensorBuffer(copying: region)) { try body($0.bytes) }
            }
            return try body(region)
        case .owned(let buffer):
            return try body(UnsafeRawBufferPointer(start: buffer.pointer, count: byteCount))
        case .converted, .deferred:
            return try withExtendedLifetime(try materialized()) { try body($0.bytes) }
        }
    }

    /// The payload in a new owned buffer (runs conversions and deferred computations).
    public func materialized() throws -> TensorBuffer {
        switch storage {
        case .owned(let buffer):
            return buffer
        case .deferred(let produce):
            let buffer = try produce()
            guard buffer.count == byteCount else {
                throw KilnError(.internal, path: ["tensor \"\(name)\""], "deferred computation produced \(buffer.count) bytes, expected \(byteCount)")
            }
            return buffer
        case .mapped:
            return try withBytes { TensorBuffer(copying: $0) }
        case .converted:
            let out = TensorBuffer(count: byteCount, zeroed: false)
            var at = 0
            try streamBytes { chunk in
                out.pointer.advanced(by: at).copyMemory(from: chunk.baseAddress!, byteCount: chunk.count)
                at += chunk.count
            }
            return out
        }
    }

    /// Hand the payload to `body` in consecutive chunks of at most about `chunkBytes`
    /// (element-aligned), releasing mapped pages behind it. Peak memory is one chunk
    /// for mapped and converted tensors.
    /// - Complexity: O(bytes).
    public func streamBytes(chunkBytes: Int = 8 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        switch storage {
        case .mapped(let file, let offset):
            var at = 0
            let total = byteCount
            while at < total {
                let n = min(chunkBytes, total - at)
                try body(file.bytes(offset: offset + at, count: n))
                file.releasePages(offset: offset + at, count: n)
                at += n
            }
        case .converted(let source):
            guard !dtype.isPacked, !source.dtype.isPacked else {
                throw KilnError(.unsupported, path: ["tensor \"\(name)\""], "conversion \(source.dtype) → \(dtype) is not supported")
            }
            let srcSize = source.dtype.bits / 8, dstSize = dtype.bits / 8
            let chunkElements = max(1, min(elementCount, chunkBytes / max(srcSize, dstSize)))
            let out = TensorBuffer(count: chunkElements * dstSize, zeroed: false)
            var pending = [UInt8]()
            // Source chunks are element-aligned by construction (chunk sizes are multiples of srcSize).
            try source.streamBytes(chunkBytes: chunkElements * srcSize) { chunk in
                let n = chunk.count / srcSize
                if let base = chunk.baseAddress, Int(bitPattern: base) % srcSize != 0 {
                    pending = Array(chunk)
                    try pending.withUnsafeBytes { aligned in
                        try DType.convert(n, from: source.dtype, aligned.baseAddress!, to: dtype, out.pointer)
                    }
                } else if n > 0 {
                    try DType.convert(n, from: source.dtype, chunk.baseAddress!, to: dtype, out.pointer)
                }
                try body(UnsafeRawBufferPointer(start: out.pointer, count: n * dstSize))
            }
        case .owned, .deferred:
            let buffer = try materialized()
            try withExtendedLifetime(buffer) {
                var at = 0
                while at < byteCount {
                    let n = min(chunkBytes, byteCount - at)
                    try body(UnsafeRawBufferPointer(start: buffer.pointer + at, count: n))
                    at += n
                }
            }
        }
    }

    /// The elements as `Float` (any float or integer dtype; quantized payloads are NOT dequantized —
    /// use ``QuantSpec/dequantize(_:)`` for that).
    /// - Throws: `KilnError(.unsupported)` for packed types.
    public func floats() throws -> [Float] {
        let n = elementCount
        var result = [Float](repeating: 0, count: n)
        try withBytes { bytes in
            try result.withUnsafeMutableBytes { out in
                guard n > 0 else { return }
                try DType.convert(n, from: dtype, bytes.baseAddress!, to: .f32, out.baseAddress!)
            }
        }
        return result
    }
}
