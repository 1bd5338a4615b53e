/// Keys and values of every attention layer for the positions seen so far, so that a decoding
/// step only computes the new token.
///
/// Layout per layer: `[batch][kv_heads][capacity][head_dim]` f32, so one head's keys are a
/// contiguous `[positions × head_dim]` matrix for sgemm. Capacity grows by doubling.
/// Not thread-safe: one forward at a time.
public final class KVCache: @unchecked Sendable {
    /// Sequences in the batch (every forward through this cache must have this batch size).
    public let batch: Int
    /// Positions stored (the position of the next token).
    public private(set) var length = 0
    var layers: [Layer] = []

    /// One attention layer's keys and values.
    final class Layer {
        let batch: Int
        let kvHeads: Int
        let headDim: Int
        private(set) var capacity: Int
        private(set) var keys: FloatBuffer
        private(set) var values: FloatBuffer

        init(batch: Int, kvHeads: Int, headDim: Int, capacity: Int) {
            self.batch = batch
            self.kvHeads = kvHeads
            self.headDim = headDim
            self.capacity = max(capacity, 1)
            keys = FloatBuffer(count: batch * kvHeads * self.capacity * headDim)
            values = FloatBuffer(count: batch * kvHeads * self.capacity * headDim)
        }

        /// Start of the `[capacity × head_dim]` key matrix of sequence `b`, KV head `h`.
        @inline(__always) func keys(_ b: Int, _ h: Int) -> UnsafeMutablePointer<Float> {
            keys.pointer + ((b * kvHeads + h) * capacity) * headDim
        }

        @inline(__always) func values(_ b: Int, _ h: Int) -> UnsafeMutablePointer<Float> {
            values.pointer + ((b * kvHeads + h) * capacity) * headDim
        }

        /// Make room for positions `0 ..< needed`, keeping the first `kept`.
        func reserve(_ needed: Int, keeping kept: Int) {
            guard needed > capacity else { return }
            let newCapacity = max(needed, capacity * 2)
            let k = FloatBuffer(count: batch * kvHeads * newCapacity * headDim)
            let v = FloatBuffer(count: batch * kvHeads * newCapacity * headDim)
            for b in 0..<batch {
                for h in 0..<kvHeads {
                    let from = ((b * kvHeads + h) * capacity) * headDim, to = ((b * kvHeads + h) * newCapacity) * headDim
                    (k.pointer + to).update(from: keys.pointer + from, count: kept * headDim)
                    (v.pointer + to).update(from: values.pointer + from, count: kept * headDim)
                }
            }
            keys = k
            values = v
            capacity = newCapacity
        }

        /// Store rows `[batch·seq, kv_heads·head_dim]` of `k` and `v` at positions `offset ..< offset+seq`.
        func store(k: UnsafePointer<Float>, v: UnsafePointer<Float>, seq: Int, offset: Int) {
            reserve(offset + seq, keeping: offset)
            let cols = kvHeads * headDim
            for b in 0..<batch {
                for h in 0..<kvHeads {
                    let kd = keys(b, h) + offset * headDim, vd = values(b, h) + offset * headDim
                    var i = 0
                    while i < seq {
                        let src = (b * seq + i) * cols + h * headDim
                        (kd + i * headDim).update(from: k + src, count: headDim)
                        (vd + i * headDim).update(from: v + src, count: headDim)
                        i += 1
                    }
                }
            }
        }
    }

    /// An empty cache for `batch` sequences.
    /// - Parameters:
    ///   - batch: ≥ 1.
    ///   - capacity: positions to allocate up front (grows on demand).
    public init(batch: Int = 1, capacity: Int = 256) {
        precondition(batch >= 1)
        self.batch = batch
        self.initialCapacity = capacity
    }

    private let initialCapacity: Int

    /// The layer for attention node number `slot`, created on first use.
    func layer(_ slot: Int, kvHeads: Int, headDim: Int) -> Layer {
        while layers.count <= slot {
            layers.append(Layer(batch: batch, kvHeads: kvHeads, headDim: headDim, capacity: initialCapacity))
        }
        return layers[slot]
    }

    /// Record that a forward of `seq` positions has been stored in every layer.
    func advance(by seq: Int) { length += seq }

    /// Forget every position (keeps the allocation).
    public func reset() { length = 0 }

    /// Bytes held by keys and values.
    public var byteCount: Int { layers.reduce(0) { $0 + 2 * $1.batch * $1.kvHeads * $1.capacity * $1.headDim * 4 } }
}
