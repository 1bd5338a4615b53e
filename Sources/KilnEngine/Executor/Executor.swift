import COpenBLAS
import Foundation
import KilnCore

/// Runs a model's graph on the CPU in f32: OpenBLAS sgemm for linears and attention, the work
/// split over ``threads`` (linear tiles, attention heads, large element-wise ops). Results are
/// deterministic and do not depend on the thread count.
///
/// Weights are taken from the ``Model`` by name and upcast to f32 on first use (a quantized
/// weight is dequantized by its ``QuantSpec``, so the executor computes what the quantized model
/// computes; a static `inputScale` fake-quantizes the linear's input). The f32 copies are kept.
///
/// Supported ops: `Gather`, `Add`, `Mul`, `Sigmoid`, `Tanh`, `Softmax` (last axis), `MatMul`
/// (activation × 2-D weight), `LayerNormalization` (last axis) and the Kiln ops of ``KilnOp``.
/// Graph inputs `input_ids`, `position_ids`, `token_type_ids` (all 0: one segment) and
/// `attention_mask` (the real tokens of right-padded sequences) are supplied by the executor.
/// Activation buffers are recycled within and between forwards (``releaseScratchMemory()`` frees
/// them). Not thread-safe: one forward at a time per executor.
///
/// ```swift
/// let exec = try Executor(model: model)                    // graph from config.json's template
/// let logits = try exec.logits([[1, 403, 407]])            // [1, 3, vocab]
/// let tokens = try exec.generate(prompt: [1], maxNewTokens: 20, eos: 2)
/// ```
public final class Executor: @unchecked Sendable {
    /// The graph being run.
    public let graph: Graph
    /// The model holding the weights.
    public let model: Model
    /// Called after every `kiln.Linear` with its input and output (calibration observers).
    public var linearObserver: LinearObserver?
    /// When set, every forward adds its time per op (and linear FLOPs) here; nil = no timing.
    public var profile: ExecutorProfile?
    /// The KV cache of the generation session started by ``prefill(_:)``.
    public internal(set) var session: KVCache?

    let steps: [Step]
    let weights: WeightStore
    /// Index of the last step that mixes rows (attention, first-token selection); later steps are row-wise.
    let lastMixingStep: Int
    let outputName: String
    /// Every graph output (kept to the end of a forward).
    let outputNames: [String]
    var ropeTables: [String: RopeTable] = [:]
    let pool = BufferPool()

    nonisolated(unsafe) private static var threadCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Threads every executor splits its work over (linear output columns, attention heads,
    /// large element-wise ops). Default: the active processor count.
    ///
    /// OpenBLAS itself is set to one thread when the first executor is created: the executor
    /// calls sgemm from its own workers, and OpenBLAS's result bits depend on its thread count,
    /// so a fixed setting keeps every forward deterministic.
    public static var threads: Int {
        get { threadCount }
        set { threadCount = max(1, newValue) }
    }

    /// Runs once: OpenBLAS single-threaded (see ``threads``).
    static let blasSetUp: Void = { openblas_set_num_threads(1) }()

    /// An executor for `model`, with the graph built by the architecture template its config
    /// names, or the model's own graph when it has no config.
    /// - Throws: whatever ``Architectures/graph(for:)`` throws; the errors of ``init(model:graph:)``.
    public convenience init(model: Model) throws {
        let graph: Graph
        if model.config != nil || model.graph == nil {
            graph = try Architectures.graph(for: model)
        } else {
            graph = model.graph!
        }
        try self.init(model: model, graph: graph)
    }

    /// An executor running `graph` with weights from `model`.
    /// - Throws: `KilnError(.unsupported)` for an op the executor does not run;
    ///   `KilnError(.invalidInput, path: ["graph", "node \"N\"", …])` for an input that is neither a
    ///   graph input, an earlier output nor a weight, or bad attributes.
    /// - Complexity: O(nodes); weights are read on first use.
    public init(model: Model, graph: Graph) throws {
        Executor.blasSetUp
        self.graph = graph
        self.model = model
        weights = WeightStore(model: model)
        guard let output = graph.outputs.first?.name else {
            throw KilnError(.invalidInput, path: ["graph"], "expected an output, found none")
        }
        outputName = output
        outputNames = graph.outputs.map(\.name)
        var produced = Set<String>()
        var lastUse: [String: Int] = [:]
        var planned: [Step] = []
        var attentionSlots = 0
        for (index, node) in graph.nodes.enumerated() {
            let context = ["graph", "node \"\(node.name)\""]
            var operands: [Operand] = []
            for (i, name) in node.inputs.enumerated() {
                if name.isEmpty {
                    operands.append(.absent)
                } else if produced.contains(name) {
                    operands.append(.value(name))
                    lastUse[name] = index
                } else if name == "input_ids" {
                    operands.append(.inputIDs)
                } else if name == "position_ids" {
                    operands.append(.positionIDs)
                } else if name == "token_type_ids" {
                    operands.append(.tokenTypeIDs)
                } else if name == "attention_mask" {
                    operands.append(.attentionMask)
                } else if model[name] != nil {
                    operands.append(.weight(name))
                } else {
                    throw KilnError(.invalidInput, path: context + ["input \(i)"],
                                    "expected a graph input, an earlier node's output or a weight, found unknown value \"\(name)\"")
                }
            }
            guard node.outputs.count == 1, let out = node.outputs.first, !out.isEmpty else {
                throw KilnError(.unsupported, path: context, "expected 1 output, found \(node.outputs.count)")
            }
            let kind = try Step.kind(of: node, operands: operands, attentionSlot: &attentionSlots)
            planned.append(Step(index: index, node: node, kind: kind, operands: operands, output: out, release: []))
            produced.insert(out)
        }
        for name in outputNames where !produced.contains(name) {
            throw KilnError(.invalidInput, path: ["graph", "output \"\(name)\""], "no node produces it")
        }
        for (name, index) in lastUse where !outputNames.contains(name) { planned[index].release.append(name) }
        steps = planned
        lastMixingStep = planned.lastIndex(where: {
            switch $0.kind {
            case .attention, .firstToken: return true
            default: return false
            }
        }) ?? -1
    }

    /// An executor for a language model: its graph's first output must be `logits` (perplexity,
    /// comparison and generation need scores over the vocabulary).
    /// - Throws: `KilnError(.unsupported, path: ["graph", "outputs"])` for an encoder (BertModel: use
    ///   `kiln embed`); whatever ``init(model:)`` throws.
    public static func languageModel(_ model: Model) throws -> Executor {
        let executor = try Executor(model: model)
        guard executor.outputName == "logits" else {
            throw KilnError(.unsupported, file: model.sourcePath, path: ["graph", "outputs"],
                            "expected a language model with a logits output, found \(executor.outputNames.joined(separator: ", ")) "
                            + "(\(executor.graph.name) is an encoder: use kiln embed)")
        }
        return executor
    }

    /// The longest sequence `config` allows and the field saying so: `max_position_embeddings`
    /// (Llama, BERT) or `n_positions` (GPT-2); nil when it names neither.
    public static func maxPositions(_ config: JSONValue?) -> (field: String, value: Int)? {
        for field in ["max_position_embeddings", "n_positions"] {
            if let v = config?[field]?.intValue { return (field, Int(v)) }
        }
        return nil
    }

    /// Scores for every position of every sequence.
    /// - Parameter ids: token ids per sequence (≥ 1 sequence of ≥ 1 token; shorter sequences are right-padded).
    /// - Throws: `KilnError(.invalidInput)` for empty input or ids outside the vocabulary.
    /// - Complexity: O(batch · seq · parameters) plus attention O(batch · seq²).
    public func logits(_ ids: [[Int]]) throws -> Logits {
        try forward(ids, cache: nil, lastOnly: false)
    }

    /// One forward pass, optionally continuing the sequences held in `cache`.
    /// - Parameters:
    ///   - ids: token ids per sequence; with a cache all sequences must have the same length and the
    ///     batch must equal `cache.batch`.
    ///   - cache: keys/values of earlier positions (extended by this call), or nil for a fresh start.
    ///   - lastOnly: compute scores for each sequence's last real token only (`seq` of the result is 1).
    /// - Throws: `KilnError(.invalidInput)` for bad ids or a batch that does not fit the cache.
    public func forward(_ ids: [[Int]], cache: KVCache?, lastOnly: Bool) throws -> Logits {
        let run = try run(ids, cache: cache, lastOnly: lastOnly)
        return try output(outputName, of: run, lastOnly: lastOnly)
    }

    /// Every graph output for `ids` (no KV cache): `[batch, seq, F]` for an output with a row per
    /// token, `seq` 1 for one with a row per sequence (BERT's `pooler_output`).
    /// - Parameter ids: token ids per sequence (≥ 1 sequence of ≥ 1 token; shorter sequences are
    ///   right-padded and, where the graph has an `attention_mask`, masked).
    /// - Throws: as ``logits(_:)``.
    public func outputs(_ ids: [[Int]]) throws -> [String: Logits] {
        let run = try run(ids, cache: nil, lastOnly: false)
        var result: [String: Logits] = [:]
        for name in outputNames { result[name] = try output(name, of: run, lastOnly: false) }
        return result
    }

    /// Run every step; the finished run holds the graph outputs.
    private func run(_ ids: [[Int]], cache: KVCache?, lastOnly: Bool) throws -> Run {
        guard !ids.isEmpty, ids.allSatisfy({ !$0.isEmpty }) else {
            throw KilnError(.invalidInput, path: ["input_ids"], "expected at least one sequence of at least one token, found an empty one")
        }
        let lengths = ids.map(\.count)
        if let cache {
            guard cache.batch == ids.count, Set(lengths).count == 1 else {
                throw KilnError(.invalidInput, path: ["input_ids"],
                                "expected \(cache.batch) sequences of equal length for the KV cache, found lengths \(lengths)")
            }
        }
        var run = Run(ids: ids, offset: cache?.length ?? 0)
        pool.prepare(rows: run.rows)
        if lastOnly && lastMixingStep < 0 { run.selectLastRows() }
        for step in steps {
            let started = profile == nil ? (0, 0) : (DispatchTime.now().uptimeNanoseconds, ExecutorProfile.cpuNanoseconds())
            try execute(step, &run, cache: cache)
            if profile != nil { record(step, run, since: started) }
            for name in step.release {
                if var v = run.values.removeValue(forKey: name) { pool.recycle(&v) }
            }
            if lastOnly && step.index == lastMixingStep { run.selectLastRows() }
        }
        cache?.advance(by: run.seq)
        return run
    }

    /// Output `name` of a finished run, shaped by its rows (one per token, or one per sequence).
    private func output(_ name: String, of run: Run, lastOnly: Bool) throws -> Logits {
        guard let out = run.values[name] else {
            throw KilnError(.internal, path: ["graph", "output \"\(name)\""], "was not computed")
        }
        let perSequence = lastOnly || out.rows != run.batch * run.seq
        return Logits(batch: run.batch, seq: perSequence ? 1 : run.seq, vocab: out.cols, lengths: run.lengths, storage: out.buffer)
    }

    func record(_ step: Step, _ run: Run, since start: (UInt64, UInt64)) {
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.0) / 1e9
        let op = KilnOp.qualifiedName(of: step.node)
        profile!.seconds[op, default: 0] += seconds
        profile!.cpuSeconds[op, default: 0] += Double(ExecutorProfile.cpuNanoseconds() - start.1) / 1e9
        if case .linear = step.kind, let y = run.values[step.output], case .weight(let name) = step.operands[1],
           let inFeatures = model[name]?.shape.dims.last {
            profile!.linearFlops += 2 * Double(y.rows) * Double(inFeatures) * Double(y.cols)
        }
    }

    /// Free the activation buffers kept for reuse between forwards (they are reallocated on demand).
    public func releaseScratchMemory() { pool.removeAll() }

    /// Bytes of f32 weights cached so far.
    public var cachedWeightBytes: Int { weights.byteCount }
}

/// Time spent per op type over the forwards run while profiling.
public struct ExecutorProfile: Sendable {
    /// Wall seconds by op (`kiln.Linear`, `kiln.Attention`, `Mul`, ...).
    public var seconds: [String: Double] = [:]
    /// Process CPU seconds by op (all threads; on a busy machine a better measure of efficiency).
    public var cpuSeconds: [String: Double] = [:]
    /// Floating-point operations of all `kiln.Linear` nodes (2·rows·in·out each).
    public var linearFlops: Double = 0

    /// An empty profile.
    public init() {}

    /// Achieved GFLOP/s of the linear layers (sgemm plus bias and input transforms), wall time.
    public var linearGFLOPS: Double {
        let t = seconds["kiln.Linear"] ?? 0
        return t > 0 ? linearFlops / t / 1e9 : 0
    }

    /// GFLOP of the linear layers per CPU-second (per-core efficiency, insensitive to other load).
    public var linearGFLOPPerCPUSecond: Double {
        let t = cpuSeconds["kiln.Linear"] ?? 0
        return t > 0 ? linearFlops / t / 1e9 : 0
    }

    /// CPU time of this process so far, in nanoseconds.
    static func cpuNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// Where a node input comes from.
enum Operand {
    case value(String)
    case weight(String)
    case inputIDs
    case positionIDs
    /// Segment ids: 0 for every token (single-segment input).
    case tokenTypeIDs
    /// Which keys are real tokens: the executor takes it from the sequence lengths.
    case attentionMask
    case absent
}

/// One planned node.
struct Step {
    enum Kind {
        case gather, add, mul, sigmoid, tanh, softmax, matMul, firstToken
        case rmsNorm(epsilon: Float)
        case layerNorm(epsilon: Float)
        case gelu(tanh: Bool)
        /// `inOut`: the weight is stored `[in, out]` (GPT-2 Conv1D).
        case linear(inOut: Bool)
        case rope(RopeParameters, heads: Int, headDim: Int)
        case attention(AttentionSpec, slot: Int)
    }

    let index: Int
    let node: Node
    let kind: Kind
    let operands: [Operand]
    let output: String
    /// Values whose last use is this step.
    var release: [String]

    static func kind(of node: Node, operands: [Operand], attentionSlot: inout Int) throws -> Kind {
        let op = KilnOp.qualifiedName(of: node)
        let context = ["graph", "node \"\(node.name)\""]
        func need(_ n: ClosedRange<Int>) throws {
            guard n.contains(operands.count) else {
                throw KilnError.mismatch(file: nil, path: context, expected: "\(n.lowerBound)–\(n.upperBound) inputs for \(op)", found: "\(operands.count)")
            }
        }
        func int(_ key: String) -> Int? {
            if case .int(let v)? = node.attribute(key) { return Int(v) }
            return nil
        }
        /// The executor normalizes over / softmaxes the last axis only.
        func lastAxisOnly() throws {
            if let axis = int("axis"), axis != -1 {
                throw KilnError(.unsupported, path: context + ["axis"], "expected -1 (last axis), found \(axis)")
            }
        }
        /// A string attribute that must be one of `allowed` (the first is the default).
        func choice(_ key: String, _ allowed: [String]) throws -> String {
            guard case .string(let s)? = node.attribute(key) else { return allowed[0] }
            let value = String(decoding: s, as: UTF8.self)
            guard allowed.contains(value) else {
                throw KilnError.mismatch(file: nil, path: context + [key], expected: allowed.joined(separator: " or "), found: "\"\(value)\"")
            }
            return value
        }
        switch op {
        case "Gather": try need(2...2); return .gather
        case "Add": try need(2...2); return .add
        case "Mul": try need(2...2); return .mul
        case "Sigmoid": try need(1...1); return .sigmoid
        case "Tanh": try need(1...1); return .tanh
        case "LayerNormalization":
            try need(2...3)
            try lastAxisOnly()
            var eps: Float = 1e-5
            if case .float(let e)? = node.attribute("epsilon") { eps = e }
            return .layerNorm(epsilon: eps)
        case "kiln.Gelu":
            try need(1...1)
            return .gelu(tanh: try choice("approximate", ["none", "tanh"]) == "tanh")
        case "kiln.FirstToken": try need(1...1); return .firstToken
        case "MatMul": try need(2...2); return .matMul
        case "Softmax":
            try need(1...1)
            try lastAxisOnly()
            return .softmax
        case "kiln.RMSNorm":
            try need(2...2)
            var eps: Float = 1e-6
            if case .float(let e)? = node.attribute("epsilon") { eps = e }
            return .rmsNorm(epsilon: eps)
        case "kiln.Linear":
            try need(2...3)
            return .linear(inOut: try choice("weight_layout", ["out_in", "in_out"]) == "in_out")
        case "kiln.RoPE":
            try need(2...2)
            guard let heads = int("num_heads"), heads > 0, let headDim = int("head_dim"), headDim > 0, headDim % 2 == 0 else {
                throw KilnError(.invalidInput, path: context, "kiln.RoPE needs num_heads > 0 and an even head_dim > 0")
            }
            if let inter = int("interleaved"), inter != 0 {
                throw KilnError(.unsupported, path: context + ["interleaved"], "expected 0 (half-split rotate_half layout), found \(inter)")
            }
            return .rope(try RopeParameters(node: node), heads: heads, headDim: headDim)
        case "kiln.Attention":
            try need(1...4)
            defer { attentionSlot += 1 }
            return .attention(try AttentionSpec(node: node, inputs: operands.count), slot: attentionSlot)
        default:
            throw KilnError(.unsupported, path: context, "op \(op) is not supported by the CPU executor")
        }
    }
}

extension Executor {
    /// `output[rows × n] = x[rows × k] · weightᵀ` (weight `[n × k]`, as a Hugging Face linear) by the
    /// path every `kiln.Linear` takes: tiles of single-threaded sgemm spread over ``threads``.
    /// Public for the GEMM benchmark (Tools/bench/kiln-bench); sets OpenBLAS to one thread on first use,
    /// as creating an executor does.
    /// - Parameters: `rows`, `k`, `n` ≥ 1; the buffers hold at least `rows·k`, `n·k`, `rows·n` floats.
    /// - Complexity: O(rows · k · n).
    public static func linear(x: UnsafePointer<Float>, rows: Int, k: Int, weight: UnsafePointer<Float>, n: Int,
                              output: UnsafeMutablePointer<Float>) {
        blasSetUp
        Kernels.linear(x: x, rows: rows, k: k, w: weight, n: n, bias: nil, y: output)
    }
}
