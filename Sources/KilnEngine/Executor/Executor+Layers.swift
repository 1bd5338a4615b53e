import Dispatch
import KilnCore

/// A decoder layer of the planned graph: a contiguous range of steps that reads one hidden state
/// from before it and hands one hidden state to the steps after it.
///
/// Found from node names: the nodes of layer N are named `<stack>.N.…` (`model.layers.3.mlp.up_proj`,
/// the Hugging Face module names every template uses), and the data flow is checked so that running
/// the layers one after the other on a kept hidden state computes exactly what a forward computes.
public struct DecoderLayer: Sendable {
    /// Position in the stack: 0 ..< layer count.
    public let index: Int
    /// The name prefix of the layer's nodes, `model.layers.3.`.
    public let prefix: String
    /// The graph value entering the layer (the embedding or the previous layer's output).
    public let input: String
    /// The graph value the layer hands on (its residual output).
    public let output: String
    /// The weights the layer's nodes read, in graph order, each once.
    public let weights: [String]
    /// The executor's planned steps of the layer.
    let steps: Range<Int>
    /// The executor the step range belongs to.
    let owner: ObjectIdentifier
}

/// The hidden states of a batch of sequences between decoder layers: `[batch·seq, width]` f32,
/// one row per (sequence, position), shorter sequences right-padded as in a forward.
///
/// A value type: copies share storage until one of them is run through a layer
/// (``Executor/runLayer(_:hidden:)`` copies shared storage first).
public struct HiddenStates: @unchecked Sendable {
    /// The token ids of the sequences (positions and padding follow from their lengths).
    public let sequences: [[Int]]
    /// Rows: sequences × the longest sequence.
    public let rows: Int
    /// Columns (the hidden size).
    public internal(set) var width: Int
    var buffer: FloatBuffer

    /// All values, `[rows × width]` flattened (a copy).
    /// - Complexity: O(rows · width).
    public var values: [Float] { Array(UnsafeBufferPointer(start: buffer.pointer, count: rows * width)) }

    /// Call `body` with the values without copying.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: buffer.pointer, count: rows * width))
    }
}

/// Running a model layer by layer on kept hidden states (sequential calibration).
///
/// ```swift
/// let layers = try exec.decoderLayers()
/// var h = try exec.embed(batch)                 // everything before layer 0
/// for layer in layers { try exec.runLayer(layer, hidden: &h) }
/// ```
/// Each layer runs as in ``forward(_:cache:lastOnly:)`` without a KV cache (RoPE positions from 0,
/// causal attention over the batch's own positions), so the values and the ``linearObserver`` events
/// are bit-identical to a forward of the same batch.
extension Executor {
    /// The decoder layers of the graph, in order.
    /// - Throws: `KilnError(.unsupported, path: ["graph", …])` when the graph has no nodes named
    ///   `<stack>.<N>.…`, a layer's nodes are not contiguous or not numbered 0, 1, 2, …, a node
    ///   without a layer number sits between layers, or a layer reads anything from before it but the
    ///   previous layer's output (or hands on more than one value).
    /// - Complexity: O(nodes + inputs).
    public func decoderLayers() throws -> [DecoderLayer] {
        func unsupported(_ path: [String], _ what: String) -> KilnError {
            KilnError(.unsupported, path: ["graph"] + path, "layer-by-layer execution: " + what)
        }
        // Runs of consecutive steps with the same layer prefix.
        var runs: [(stack: String, index: Int, prefix: String, steps: Range<Int>)] = []
        var outside: [Int] = []
        for (i, step) in steps.enumerated() {
            guard let key = Executor.layerKey(step.node.name) else {
                outside.append(i)
                continue
            }
            if let last = runs.last, last.prefix == key.prefix, last.steps.upperBound == i {
                runs[runs.count - 1].steps = last.steps.lowerBound..<(i + 1)
            } else {
                runs.append((key.stack, key.index, key.prefix, i..<(i + 1)))
            }
        }
        guard let first = runs.first, let last = runs.last else {
            throw unsupported([], "no decoder layers (expected nodes named <stack>.<N>.…, as model.layers.0.self_attn.q_proj)")
        }
        if let stray = outside.first(where: { $0 > first.steps.lowerBound && $0 < last.steps.upperBound }) {
            throw unsupported(["node \"\(steps[stray].node.name)\""], "expected a node of a decoder layer between the layers, found one without a layer number")
        }
        for (n, run) in runs.enumerated() {
            guard run.stack == first.stack else {
                throw unsupported(["node \"\(steps[run.steps.lowerBound].node.name)\""], "expected one stack of layers (\(first.stack)), found also \(run.stack)")
            }
            guard run.index == n else {
                let what = runs[..<n].contains(where: { $0.prefix == run.prefix }) ? "nodes of \(run.prefix)… are not contiguous" : "expected layer \(n) next, found \(run.index)"
                throw unsupported(["node \"\(steps[run.steps.lowerBound].node.name)\""], what)
            }
        }
        // Last step reading each value (the graph output counts as read at the end).
        var lastRead: [String: Int] = [outputName: steps.count]
        for (i, step) in steps.enumerated() {
            for case .value(let name) in step.operands { lastRead[name] = i }
        }
        var layers: [DecoderLayer] = []
        var previous: String?
        for run in runs {
            var produced = Set<String>(), entering: [String] = [], weights: [String] = [], leaving: [String] = []
            for i in run.steps {
                for operand in steps[i].operands {
                    switch operand {
                    case .value(let name) where !produced.contains(name) && !entering.contains(name): entering.append(name)
                    case .weight(let name) where !weights.contains(name): weights.append(name)
                    default: break
                    }
                }
                produced.insert(steps[i].output)
                if lastRead[steps[i].output, default: -1] >= run.steps.upperBound { leaving.append(steps[i].output) }
            }
            let at = ["node \"\(steps[run.steps.lowerBound].node.name)\""]
            guard entering.count == 1, previous == nil || entering[0] == previous else {
                let expected = previous.map { "only \"\($0)\" (the previous layer's output)" } ?? "one value"
                throw unsupported(at, "layer \(run.index) reads \(entering.map { "\"\($0)\"" }.joined(separator: ", ")) from before it; expected \(expected)")
            }
            guard leaving.count == 1 else {
                throw unsupported(at, "layer \(run.index) hands on \(leaving.count) values (\(leaving.joined(separator: ", "))); expected 1")
            }
            layers.append(DecoderLayer(index: run.index, prefix: run.prefix, input: entering[0], output: leaving[0], weights: weights,
                                       steps: run.steps, owner: ObjectIdentifier(self)))
            previous = leaving[0]
        }
        return layers
    }

    /// The stack (`model.layers`), layer number and prefix (`model.layers.3.`) of a node name:
    /// the first dotted component made of digits, after at least one other; nil when there is none.
    static func layerKey(_ name: String) -> (stack: String, index: Int, prefix: String)? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count > 2 else { return nil }
        for i in 1..<(parts.count - 1) where !parts[i].isEmpty && parts[i].allSatisfy({ $0 >= "0" && $0 <= "9" }) {
            guard let index = Int(parts[i]) else { continue }
            let stack = parts[..<i].joined(separator: ".")
            return (stack, index, stack + "." + parts[i] + ".")
        }
        return nil
    }

    /// The input of the first decoder layer (the embedding) for `ids`: every step before layer 0.
    /// - Parameters:
    ///   - ids: ≥ 1 sequence of ≥ 1 token; shorter sequences are right-padded.
    ///   - first: `decoderLayers()[0]` of this executor.
    /// - Throws: `KilnError(.invalidInput)` for empty input or ids outside the vocabulary.
    /// - Complexity: O(batch · seq · hidden) for a Llama embedding.
    public func embed(_ ids: [[Int]], before first: DecoderLayer) throws -> HiddenStates {
        precondition(first.owner == ObjectIdentifier(self), "the layer belongs to another executor")
        guard !ids.isEmpty, ids.allSatisfy({ !$0.isEmpty }) else {
            throw KilnError(.invalidInput, path: ["input_ids"], "expected at least one sequence of at least one token, found an empty one")
        }
        var run = Run(ids: ids, offset: 0)
        pool.prepare(rows: run.rows)
        try runSteps(0..<first.steps.lowerBound, &run)
        guard let h = run.values[first.input], h.rows == run.rows else {
            throw KilnError(.internal, path: ["graph", "value \"\(first.input)\""], "was not computed with one row per token before layer 0")
        }
        return HiddenStates(sequences: ids, rows: run.rows, width: h.cols, buffer: h.buffer)
    }

    /// Run one decoder layer on `hidden`, replacing it by the layer's output. The
    /// ``linearObserver`` sees the layer's linears as in a forward.
    /// - Parameters:
    ///   - layer: one of this executor's ``decoderLayers()``.
    ///   - hidden: the layer's input (from ``embed(_:before:)`` or the previous layer); storage shared
    ///     with a copy is copied first, so other copies keep the input.
    /// - Throws: `KilnError` naming the node for a width that does not fit the layer's weights, or for a
    ///   weight that cannot be read.
    /// - Complexity: one layer of a forward: O(batch · seq · layer parameters + batch · seq²).
    public func runLayer(_ layer: DecoderLayer, hidden: inout HiddenStates) throws {
        precondition(layer.owner == ObjectIdentifier(self), "the layer belongs to another executor")
        if !isKnownUniquelyReferenced(&hidden.buffer) {
            let copy = pool.take(hidden.rows * hidden.width)
            copy.pointer.update(from: hidden.buffer.pointer, count: hidden.rows * hidden.width)
            hidden.buffer = copy
        }
        var run = Run(ids: hidden.sequences, offset: 0)
        pool.prepare(rows: run.rows)
        run.values[layer.input] = Activation(buffer: hidden.buffer, rows: hidden.rows, cols: hidden.width)
        try runSteps(layer.steps, &run)
        guard let out = run.values[layer.output], out.rows == hidden.rows else {
            throw KilnError(.internal, path: ["graph", "value \"\(layer.output)\""], "was not computed with one row per token by layer \(layer.index)")
        }
        hidden.buffer = out.buffer
        hidden.width = out.cols
    }

    /// The scores for `hidden`, the output of the last decoder layer: every step after `last`
    /// (final norm, lm_head), as the end of a forward.
    /// - Parameters:
    ///   - hidden: the output of `last` (after ``runLayer(_:hidden:)``); not changed.
    ///   - last: `decoderLayers().last` of this executor.
    /// - Throws: `KilnError` naming the node for a weight that cannot be read.
    /// - Complexity: O(rows · hidden · vocab) for a Llama head.
    public func logits(after last: DecoderLayer, hidden: HiddenStates) throws -> Logits {
        precondition(last.owner == ObjectIdentifier(self), "the layer belongs to another executor")
        var run = Run(ids: hidden.sequences, offset: 0)
        pool.prepare(rows: run.rows)
        let input = pool.take(hidden.rows * hidden.width)
        input.pointer.update(from: hidden.buffer.pointer, count: hidden.rows * hidden.width)
        run.values[last.output] = Activation(buffer: input, rows: hidden.rows, cols: hidden.width)
        try runSteps(last.steps.upperBound..<steps.count, &run)
        guard let out = run.values[outputName], out.rows == hidden.rows else {
            throw KilnError(.internal, path: ["graph", "output \"\(outputName)\""], "was not computed with one row per token after the last layer")
        }
        return Logits(batch: hidden.sequences.count, seq: hidden.rows / hidden.sequences.count, vocab: out.cols,
                      lengths: hidden.sequences.map(\.count), storage: out.buffer)
    }

    /// Use `tensors` instead of the model's tensors of the same names from now on (the ``model`` is
    /// not changed); the f32 copies made from the old tensors are dropped.
    /// - Parameter tensors: each named as a weight of the graph, with that weight's shape.
    /// - Throws: `KilnError(.invalidInput, path: ["tensor \"NAME\""])` for a name that is not a weight
    ///   of the model or a shape that differs from the model's (nothing is replaced then).
    public func replaceWeights(_ tensors: [Tensor]) throws {
        for t in tensors {
            guard let current = model[t.name] else {
                throw KilnError(.invalidInput, path: ["tensor \"\(t.name)\""], "is not a weight of the model; cannot replace it")
            }
            guard current.shape == t.shape else {
                throw KilnError.mismatch(file: nil, path: ["tensor \"\(t.name)\"", "shape"], expected: current.shape.description, found: t.shape.description)
            }
        }
        for t in tensors { weights.replace(t) }
    }

    /// Drop the cached f32 copies of `names` (of every weight when nil), e.g. of the layers a
    /// layer-by-layer run has finished; a later use makes them again.
    /// - Parameter names: weight names; names without a cached copy are ignored.
    public func releaseCachedWeights(_ names: [String]? = nil) {
        weights.evict(names)
    }

    /// Execute `range` of the planned steps, releasing values after their last use (as a forward).
    private func runSteps(_ range: Range<Int>, _ run: inout Run) throws {
        for step in steps[range] {
            let started = profile == nil ? (0, 0) : (DispatchTime.now().uptimeNanoseconds, ExecutorProfile.cpuNanoseconds())
            try execute(step, &run, cache: nil)
            if profile != nil { record(step, run, since: started) }
            for name in step.release {
                if var v = run.values.removeValue(forKey: name) { pool.recycle(&v) }
            }
        }
    }
}
