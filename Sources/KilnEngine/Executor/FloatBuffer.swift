#if canImport(Glibc)
import Glibc
#endif

/// An owned, 64-byte aligned array of `Float` (not zero-filled unless asked): the storage of
/// activations, KV caches and cached f32 weights.
///
/// Buffers of 8 MiB and more are mapped directly and marked for transparent huge pages
/// (fewer page faults and TLB misses for weights, logits and large activations).
public final class FloatBuffer: @unchecked Sendable {
    /// Number of elements.
    public let count: Int
    /// The elements; valid for the lifetime of the buffer.
    public let pointer: UnsafeMutablePointer<Float>
    /// Bytes mapped with mmap (0 when allocated on the heap).
    private let mappedBytes: Int

    /// Sizes from which buffers are mapped rather than heap-allocated.
    static let mapThreshold = 8 << 20

    /// Allocate `count` elements.
    /// - Parameters:
    ///   - count: ≥ 0.
    ///   - zeroed: fill with 0 (otherwise the contents are undefined).
    public init(count: Int, zeroed: Bool = false) {
        precondition(count >= 0)
        self.count = count
        let bytes = max(count, 1) * 4
        if bytes >= FloatBuffer.mapThreshold,
           let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED {
            _ = madvise(raw, bytes, 14)  // MADV_HUGEPAGE; fresh pages are zero
            mappedBytes = bytes
            pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
            return
        }
        mappedBytes = 0
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: count) }
    }

    /// A buffer holding a copy of `values`.
    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { if let b = $0.baseAddress { pointer.update(from: b, count: values.count) } }
    }

    deinit {
        if mappedBytes > 0 {
            munmap(UnsafeMutableRawPointer(pointer), mappedBytes)
        } else {
            UnsafeMutableRawPointer(pointer).deallocate()
        }
    }

    /// The elements as a buffer pointer.
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    /// A copy of the elements.
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
}

/// A runtime value of the executor: `rows × cols` floats, row-major. Token activations have one
/// row per (sequence, position); weights used as activations have their natural 2-D shape.
struct Activation {
    var buffer: FloatBuffer
    var rows: Int
    var cols: Int

    init(rows: Int, cols: Int, zeroed: Bool = false) {
        buffer = FloatBuffer(count: rows * cols, zeroed: zeroed)
        self.rows = rows
        self.cols = cols
    }

    init(buffer: FloatBuffer, rows: Int, cols: Int) {
        precondition(buffer.count >= rows * cols)
        self.buffer = buffer
        self.rows = rows
        self.cols = cols
    }

    var pointer: UnsafeMutablePointer<Float> { buffer.pointer }
    var count: Int { rows * cols }

    /// The rows at `indices`, in that order, in a new activation.
    func selecting(rows indices: [Int]) -> Activation {
        let out = Activation(rows: indices.count, cols: cols)
        for (j, i) in indices.enumerated() {
            (out.pointer + j * cols).update(from: pointer + i * cols, count: cols)
        }
        return out
    }
}

/// Released activation buffers kept for reuse by later nodes and forwards, by exact size:
/// a forward then touches no fresh pages after the first one of its shape.
final class BufferPool {
    private var free: [Int: [FloatBuffer]] = [:]
    private var rows = -1

    /// Forget pooled buffers when the row count changes (their sizes would not recur).
    func prepare(rows: Int) {
        if rows != self.rows { free.removeAll() }
        self.rows = rows
    }

    /// A buffer of exactly `count` elements, reused when one is free.
    func take(_ count: Int) -> FloatBuffer {
        if let b = free[count]?.popLast() { return b }
        return FloatBuffer(count: count)
    }

    /// Give back the buffer of a released activation if nothing else holds it.
    func recycle(_ value: inout Activation) {
        guard isKnownUniquelyReferenced(&value.buffer) else { return }
        free[value.buffer.count, default: []].append(value.buffer)
    }

    /// Drop every pooled buffer.
    func removeAll() { free.removeAll() }
}
