/// An owned, 64-byte aligned block of bytes: the storage of a materialized tensor.
public final class TensorBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutableRawPointer

    /// Allocate `count` bytes, zero-filled unless `zeroed` is false (the caller then writes every byte).
    public init(count: Int, zeroed: Bool = true) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
        if zeroed { pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1)) }
    }

    /// Copy `bytes` into a new buffer.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(count: bytes.count, zeroed: false)
        if let src = bytes.baseAddress, bytes.count > 0 { pointer.copyMemory(from: src, byteCount: bytes.count) }
    }

    /// A buffer holding the raw bytes of `values`.
    public convenience init<T>(values: [T]) {
        let n = values.count * MemoryLayout<T>.stride
        self.init(count: n)
        values.withUnsafeBytes { if let b = $0.baseAddress, n > 0 { pointer.copyMemory(from: b, byteCount: n) } }
    }

    deinit { pointer.deallocate() }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }
    public var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: count) }
}
