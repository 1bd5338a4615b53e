import Foundation
import KilnCore

/// The attributes of a `kiln.Attention` node.
struct AttentionSpec {
    var heads: Int
    var kvHeads: Int
    var headDim: Int
    var scale: Float
    var causal: Bool
    /// Keys at most this far back are visible (`q − k < window`); nil = unlimited.
    var window: Int?
    /// One input holding `[q | k | v]` columns (GPT-2's c_attn) instead of three.
    var fused = false
    /// An `attention_mask` input: keys past each sequence's length are hidden.
    var masked = false

    /// - Parameters:
    ///   - node: the `kiln.Attention` node.
    ///   - inputs: its input count: 1 (qkv), 2 (qkv, mask), 3 (q, k, v) or 4 (q, k, v, mask).
    /// - Throws: `KilnError(.invalidInput)` naming the node for missing or inconsistent attributes.
    init(node: Node, inputs: Int = 3) throws {
        func int(_ key: String) -> Int? {
            if case .int(let v)? = node.attribute(key) { return Int(v) }
            return nil
        }
        func bad(_ what: String) -> KilnError {
            KilnError(.invalidInput, path: ["graph", "node \"\(node.name)\""], what)
        }
        guard let heads = int("num_heads"), heads > 0, let headDim = int("head_dim"), headDim > 0 else {
            throw bad("kiln.Attention needs positive num_heads and head_dim attributes")
        }
        let kvHeads = int("num_kv_heads") ?? heads
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw bad("num_kv_heads: expected a divisor of num_heads (\(heads)), found \(kvHeads)")
        }
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        if case .float(let s)? = node.attribute("scale") { scale = s } else { scale = 1 / Float(headDim).squareRoot() }
        causal = (int("causal") ?? 1) != 0
        window = int("sliding_window").flatMap { $0 > 0 ? $0 : nil }
        fused = inputs <= 2
        masked = inputs == 2 || inputs == 4
    }
}

extension Kernels {
    /// Query rows processed per sgemm block (bounds the work wasted above the causal diagonal).
    static let attentionBlock = 64

    /// Multi-head attention with grouped KV heads, reading keys and values from `layer`
    /// (positions `0 ..< offset + seq`, this forward's already stored at `offset`).
    ///
    /// ```
    /// out[b, i, h] = Σ_j softmax_j(scale · q[b, i, h] · k[b, j, h / (heads / kv_heads)]) · v[b, j, …]
    /// j ≤ offset + i when causal; offset + i − j < window with a sliding window;
    /// j < keyLimits[b] with a mask (the real tokens of a right-padded sequence)
    /// ```
    /// Parallel over (sequence, head) on `Executor.threads` cores.
    /// - Parameters:
    ///   - q: `[batch·seq, heads·head_dim]`.
    ///   - out: `[batch·seq, heads·head_dim]`.
    static func attention(q: UnsafePointer<Float>, batch: Int, seq: Int, spec: AttentionSpec, layer: KVCache.Layer,
                          offset: Int, keyLimits: [Int]? = nil, out: UnsafeMutablePointer<Float>) {
        let hd = spec.headDim, qCols = spec.heads * hd, group = spec.heads / spec.kvHeads
        let total = offset + seq
        let tasks = batch * spec.heads
        let threads = Executor.threads
        let block = min(attentionBlock, seq)
        func task(_ t: Int, scores: UnsafeMutablePointer<Float>) {
            let norms = scores + block * total
            let b = t / spec.heads, h = t % spec.heads
            let keys = layer.keys(b, h / group), values = layer.values(b, h / group)
            let limit = keyLimits?[b] ?? total
            var i0 = 0
            while i0 < seq {
                let rows = min(block, seq - i0)
                let firstPos = offset + i0, lastPos = firstPos + rows - 1
                let kHi = min(spec.causal ? lastPos + 1 : total, limit)
                let kLo = spec.window.map { max(0, firstPos - $0 + 1) } ?? 0
                let width = kHi - kLo
                let qBlock = q + (b * seq + i0) * qCols + h * hd
                gemm(m: rows, n: width, k: hd, alpha: spec.scale, a: qBlock, lda: qCols, b: keys + kLo * hd, ldb: hd,
                     transB: true, c: scores, ldc: width)
                var r = 0
                while r < rows {
                    let pos = firstPos + r
                    let hi = min(spec.causal ? pos + 1 : total, limit)
                    let lo = min(spec.window.map { max(0, pos - $0 + 1) } ?? 0, hi - 1)
                    norms[r] = unnormalizedSoftmax(scores + r * width, count: width, lo: lo - kLo, hi: hi - kLo)
                    r += 1
                }
                let o = out + (b * seq + i0) * qCols + h * hd
                gemm(m: rows, n: hd, k: width, a: scores, lda: width, b: values + kLo * hd, ldb: hd, transB: false, c: o, ldc: qCols)
                r = 0
                while r < rows {
                    let row = o + r * qCols, inv = norms[r]
                    var d = 0
                    while d < hd { row[d] *= inv; d += 1 }
                    r += 1
                }
                i0 += rows
            }
        }
        let scoreCount = block * total + block  // scores, then one 1/Σ per row
        if tasks == 1 || threads == 1 {
            let scores = FloatBuffer(count: scoreCount)
            for t in 0..<tasks { task(t, scores: scores.pointer) }
            return
        }
        // Each worker takes every `workers`-th task (BLAS is single-threaded, see Executor.threads).
        let workers = min(threads, tasks)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let scores = FloatBuffer(count: scoreCount)
            var t = w
            while t < tasks { task(t, scores: scores.pointer); t += workers }
        }
    }
}
