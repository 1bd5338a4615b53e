/// Output scores of a forward pass: `[batch, seq, vocab]` f32, row-major.
///
/// Sequences shorter than `seq` were right-padded; their rows at positions ≥ `lengths[b]`
/// hold scores for padding and carry no meaning.
public struct Logits: @unchecked Sendable {
    /// Sequences.
    public let batch: Int
    /// Positions per sequence in this result (1 when only the last position was kept).
    public let seq: Int
    /// Scores per position.
    public let vocab: Int
    /// Real tokens per sequence.
    public let lengths: [Int]
    let storage: FloatBuffer

    init(batch: Int, seq: Int, vocab: Int, lengths: [Int], storage: FloatBuffer) {
        precondition(storage.count >= batch * seq * vocab)
        self.batch = batch
        self.seq = seq
        self.vocab = vocab
        self.lengths = lengths
        self.storage = storage
    }

    /// All scores, `[batch, seq, vocab]` flattened (a copy).
    /// - Complexity: O(batch · seq · vocab).
    public var values: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: batch * seq * vocab)) }

    /// The scores of sequence `b` at position `s` (a copy).
    /// - Parameters: b: 0 ..< batch; s: 0 ..< seq.
    public func row(_ b: Int, _ s: Int) -> [Float] {
        precondition(b >= 0 && b < batch && s >= 0 && s < seq)
        return Array(UnsafeBufferPointer(start: storage.pointer + (b * seq + s) * vocab, count: vocab))
    }

    /// Call `body` with all scores without copying.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: batch * seq * vocab))
    }

    /// Index of the largest score of a row (the first on ties, as `torch.argmax`).
    public func argmax(_ b: Int, _ s: Int) -> Int {
        let p = storage.pointer + (b * seq + s) * vocab
        var best = 0
        var i = 1
        while i < vocab { if p[i] > p[best] { best = i }; i += 1 }
        return best
    }
}
