import KilnCore

/// Greedy decoding with a KV cache: `prefill` once, then `step` per new token.
extension Executor {
    /// Start a generation session: run `ids` (one sequence) and keep its keys and values.
    /// - Parameter ids: the prompt, ≥ 1 token.
    /// - Returns: the scores for the token after the prompt (`vocab` values).
    /// - Throws: `KilnError(.invalidInput)` for an empty prompt or ids outside the vocabulary.
    /// - Complexity: one forward over the prompt; scores are computed for the last position only.
    @discardableResult
    public func prefill(_ ids: [Int]) throws -> [Float] {
        let cache = KVCache(batch: 1, capacity: max(ids.count + 64, 256))
        session = cache
        return try forward([ids], cache: cache, lastOnly: true).row(0, 0)
    }

    /// Append one token to the session started by ``prefill(_:)``.
    /// - Parameter id: the next token.
    /// - Returns: the scores for the token after it.
    /// - Throws: `KilnError(.invalidInput)` before any prefill or for an id outside the vocabulary.
    /// - Complexity: O(parameters + layers · positions so far).
    public func step(_ id: Int) throws -> [Float] {
        guard let cache = session else {
            throw KilnError(.invalidInput, path: ["generation"], "step before prefill: start a session with prefill(_:)")
        }
        return try forward([[id]], cache: cache, lastOnly: true).row(0, 0)
    }

    /// Greedy generation: the argmax token at every step.
    /// - Parameters:
    ///   - prompt: ≥ 1 token (usually starting with BOS).
    ///   - maxNewTokens: ≥ 0.
    ///   - eos: stop after emitting this id (it is included in the result).
    /// - Returns: the new tokens (without the prompt).
    /// - Throws: as ``prefill(_:)``.
    public func generate(prompt: [Int], maxNewTokens: Int, eos: Int? = nil) throws -> [Int] {
        guard maxNewTokens > 0 else { return [] }
        var scores = try prefill(prompt)
        var out: [Int] = []
        while true {
            let next = Executor.argmax(scores)
            out.append(next)
            if next == eos || out.count == maxNewTokens { break }
            scores = try step(next)
        }
        return out
    }

    /// Index of the largest value (the first on ties, as `torch.argmax`).
    public static func argmax(_ scores: [Float]) -> Int {
        var best = 0
        for i in scores.indices where scores[i] > scores[best] { best = i }
        return best
    }
}
