import Foundation
import KilnCore

/// Executes an IR ``Graph`` (an imported ONNX model) node by node on the CPU, following the
/// ONNX operator semantics of the model's default-domain opset.
///
/// * Values are f32 (every float type upcast) or Int64 (integers, bools); see ``GraphValue``.
/// * Initializers and `Constant` nodes are decoded once, at construction; quantized tensors are
///   dequantized by their ``QuantSpec`` (fake quantization), and QuantizeLinear /
///   DequantizeLinear execute, so a Q/DQ model computes what an engine would emulate.
/// * Each intermediate is released after its last consumer has run.
/// * Conv / ConvTranspose / MatMul / Gemm go to OpenBLAS sgemm (single-threaded inside
///   OpenBLAS, tiles split over ``Executor/threads`` by the interpreter), so results do not
///   depend on the thread count.
///
/// The operators are listed in ``GraphInterpreter/operators``; any other op fails at execution
/// time with a `KilnError(.unsupported)` naming the op type and the node.
public final class GraphInterpreter: @unchecked Sendable {
    public let graph: Graph
    /// The default-domain opset the graph is written against.
    public let opset: Int
    private var constants: [String: GraphValue] = [:]
    /// Node indices to execute (Constant nodes are folded into `constants`).
    private var steps: [Int] = []
    /// Per step, the value names whose last reader it is.
    private var releases: [[String]] = []
    /// Per step of a MatMul / Gemm / Conv / ConvTranspose whose weight carries a QuantSpec with an
    /// input scale: the activation input and how it is fake-quantized (what the Q→DQ pair does).
    private var activationQuant: [Int: (input: Int, scale: Float, type: DType, preScale: GraphValue?)] = [:]
    /// Node outputs fake-quantized as they are produced (scale, payload type), as if a Q→DQ pair
    /// followed them: how ``GraphQuantizer`` measures a node with its output pair before inserting it.
    public var outputQuant: [String: (scale: Float, type: DType)] = [:]

    /// Prepare `model`'s graph: check the order, decode the constant tensors.
    /// - Throws: `KilnError(.invalidInput)` when the model has no graph, a node reads a value that no
    ///   earlier node, input or initializer defines, or a Constant node is malformed.
    public init(model: Model) throws {
        guard let graph = model.graph else {
            throw KilnError(.invalidInput, path: ["graph"], "the model has no graph to execute (weights only)")
        }
        self.graph = graph
        opset = model.opsetImports[""] ?? model.opsetImports["ai.onnx"] ?? 17
        _ = Executor.blasSetUp
        for name in graph.initializerNames {
            guard let t = model[name] else {
                throw KilnError(.invalidInput, path: ["graph", "initializer \"\(name)\""], "no tensor of that name in the model")
            }
            do { constants[name] = try GraphValue(t) } catch let e as KilnError { throw e.adding(context: "initializer \"\(name)\"") }
        }
        var defined = Set(graph.inputs.map(\.name)).union(constants.keys)
        var lastReader: [String: Int] = [:]
        for (i, node) in graph.nodes.enumerated() {
            let here = ["graph", "node \"\(node.name)\" (\(node.opType))"]
            if node.opType == "Constant" && isDefaultDomain(node.domain) {
                guard node.outputs.count == 1 else {
                    throw KilnError.mismatch(file: nil, path: here, expected: "1 output", found: "\(node.outputs.count)")
                }
                constants[node.outputs[0]] = try GraphInterpreter.constantValue(node, path: here)
                defined.insert(node.outputs[0])
                continue
            }
            for (k, x) in node.inputs.enumerated() where !x.isEmpty {
                guard defined.contains(x) else {
                    throw KilnError(.invalidInput, path: here + ["input \(k)"],
                                    "value \"\(x)\" is not defined by an earlier node, a graph input or an initializer")
                }
                if constants[x] == nil { lastReader[x] = steps.count }
            }
            defined.formUnion(node.outputs.filter { !$0.isEmpty })
            if let q = try GraphInterpreter.activationQuantization(node, model: model, initializers: Set(graph.initializerNames)) {
                activationQuant[steps.count] = q
            }
            steps.append(i)
        }
        for o in graph.outputs where !defined.contains(o.name) {
            throw KilnError(.invalidInput, path: ["graph", "output \"\(o.name)\""], "no node produces it")
        }
        let kept = Set(graph.outputs.map(\.name))
        releases = Array(repeating: [], count: steps.count)
        for (name, step) in lastReader where !kept.contains(name) { releases[step].append(name) }
    }

    /// The activation fake quantization a quantized weight asks for (`QuantSpec.inputScale`,
    /// `preQuantScale`), as ``QDQImport`` folds an activation Q→DQ pair into the weight's spec.
    static func activationQuantization(_ node: Node, model: Model, initializers: Set<String>) throws
        -> (input: Int, scale: Float, type: DType, preScale: GraphValue?)? {
        guard ["MatMul", "Gemm", "Conv", "ConvTranspose"].contains(node.opType), node.inputs.count >= 2 else { return nil }
        for k in (node.opType.hasPrefix("Conv") ? [1] : [1, 0]) where initializers.contains(node.inputs[k]) {
            guard let spec = model[node.inputs[k]]?.quant else { continue }
            let pre = try spec.preQuantScale.map { try GraphValue($0) }
            guard let s = spec.inputScale else { return pre.map { (1 - k, 0, .f32, $0) } }
            let type: DType = spec.format == .int8 ? .i8 : spec.format == .uint8 ? .u8 : .f8e4m3fn
            return (1 - k, try s.floats().first ?? 1, type, pre)
        }
        return nil
    }

    /// The value of a Constant node (`value`, `value_float(s)`, `value_int(s)`).
    static func constantValue(_ node: Node, path: [String]) throws -> GraphValue {
        guard let (name, value) = node.attributes.first else {
            throw KilnError(.invalidInput, path: path, "a Constant node needs a value attribute")
        }
        switch (name, value) {
        case ("value", .tensor(let t)):
            do { return try GraphValue(t) } catch let e as KilnError { throw e.adding(context: path.joined(separator: " › ")) }
        case ("value_float", .float(let f)): return GraphValue(shape: [], floats: [f])
        case ("value_floats", .floats(let f)): return GraphValue(shape: [f.count], floats: f)
        case ("value_int", .int(let i)): return GraphValue(shape: [], ints: [i])
        case ("value_ints", .ints(let i)): return GraphValue(shape: [i.count], ints: i)
        default:
            throw KilnError(.unsupported, path: path + ["attribute \"\(name)\""], "this kind of Constant value is not supported")
        }
    }

    /// Run the graph.
    /// - Parameters:
    ///   - inputs: a value for every graph input that is not also an initializer, by name.
    ///   - observe: called with the name and value of every graph input and every node output, as
    ///     they are produced (calibration observers).
    /// - Returns: the graph outputs by name.
    /// - Throws: `KilnError` for a missing or mistyped input, an unsupported op (naming op type and
    ///   node), inputs an op cannot accept (naming the node), or a graph output no node produced.
    /// - Complexity: one pass over the nodes.
    public func run(_ inputs: [String: GraphValue], observe: ((String, GraphValue) -> Void)? = nil) throws -> [String: GraphValue] {
        var env = constants
        for info in graph.inputs where constants[info.name] == nil {
            guard let v = inputs[info.name] else {
                throw KilnError(.invalidInput, path: ["graph", "input \"\(info.name)\""], "no value given for this graph input")
            }
            if let dims = info.dims {
                guard dims.count == v.rank else {
                    throw KilnError.mismatch(file: nil, path: ["graph", "input \"\(info.name)\""], expected: "rank \(dims.count)",
                                             found: "shape \(v.shape)")
                }
                for (d, dim) in dims.enumerated() {
                    if case .fixed(let n) = dim, n != v.shape[d], n > 0 {
                        throw KilnError.mismatch(file: nil, path: ["graph", "input \"\(info.name)\"", "dim \(d)"],
                                                 expected: "\(n)", found: "\(v.shape[d])")
                    }
                }
            }
            env[info.name] = v
            observe?(info.name, v)
        }
        for (s, i) in steps.enumerated() {
            let node = graph.nodes[i]
            var args = node.inputs.map { $0.isEmpty ? nil : env[$0] }
            if let q = activationQuant[s], let x = args[q.input] {
                let scaled = try q.preScale.map { try ElementwiseOps.binary(OpContext(node: node, opset: opset, inputs: [x, $0]), .mul) } ?? x
                args[q.input] = q.scale > 0 ? try TensorOps.fakeQuantize(scaled, scale: q.scale, type: q.type) : scaled
            }
            let context = OpContext(node: node, opset: opset, inputs: args)
            guard isDefaultDomain(node.domain), let op = GraphInterpreter.operators[node.opType] else {
                throw KilnError(.unsupported, path: ["graph", "node \"\(node.name)\""],
                                "operator \(node.domain.isEmpty ? "" : node.domain + ".")\(node.opType) is not supported by Kiln's graph interpreter")
            }
            let results = try op(context)
            for (k, name) in node.outputs.enumerated() where !name.isEmpty && k < results.count {
                let v = try outputQuant[name].map { try TensorOps.fakeQuantize(results[k], scale: $0.scale, type: $0.type) } ?? results[k]
                env[name] = v
                observe?(name, v)
            }
            for name in releases[s] { env.removeValue(forKey: name) }
        }
        var out: [String: GraphValue] = [:]
        for o in graph.outputs {
            guard let v = env[o.name] else {
                let producer = graph.nodes.first { $0.outputs.contains(o.name) }.map { " (node \"\($0.name)\" (\($0.opType)) produces fewer values than its named outputs)" } ?? ""
                throw KilnError(.invalidInput, path: ["graph", "output \"\(o.name)\""], "the graph output was not produced\(producer)")
            }
            out[o.name] = v
        }
        return out
    }

    func isDefaultDomain(_ d: String) -> Bool { d.isEmpty || d == "ai.onnx" }

    /// Operator implementations by ONNX op type.
    static let operators: [String: (OpContext) throws -> [GraphValue]] = {
        var table: [String: (OpContext) throws -> [GraphValue]] = [:]
        for (name, op) in ElementwiseOps.table { table[name] = op }
        for (name, op) in ShapeOps.table { table[name] = op }
        for (name, op) in ConvOps.table { table[name] = op }
        for (name, op) in TensorOps.table { table[name] = op }
        return table
    }()

    /// The op types the interpreter executes, sorted.
    public static var supportedOperators: [String] { operators.keys.sorted() }
}

/// One node's inputs and attributes as an op implementation reads them, with errors that name the node.
struct OpContext {
    let node: Node
    let opset: Int
    let inputs: [GraphValue?]

    /// The path of this node, for errors.
    var path: [String] { ["graph", "node \"\(node.name)\" (\(node.opType))"] }

    func fail(_ message: String) -> KilnError { KilnError(.invalidInput, path: path, message) }
    func unsupported(_ message: String) -> KilnError { KilnError(.unsupported, path: path, message) }

    /// Input `k`, required.
    func input(_ k: Int) throws -> GraphValue {
        guard k < inputs.count, let v = inputs[k] else { throw fail("input \(k) is required") }
        return v
    }

    /// Input `k` if given.
    func optional(_ k: Int) -> GraphValue? { k < inputs.count ? inputs[k] : nil }

    /// Input `k`, which must hold floats.
    func floatInput(_ k: Int) throws -> GraphValue {
        let v = try input(k)
        guard v.isFloat else { throw KilnError.mismatch(file: nil, path: path + ["input \(k)"], expected: "a floating-point tensor", found: v.dtype.name) }
        return v
    }

    /// Input `k` read as a list of integers (shape arithmetic inputs).
    func intList(_ k: Int) throws -> [Int]? {
        guard let v = optional(k) else { return nil }
        return v.isFloat ? try v.floats.map { Int(try integer($0, "input \(k)")) } : v.ints.map { Int($0) }
    }

    /// `dims` checked as the shape of a value this node creates (`what` names where they came from).
    /// - Throws: `KilnError(.invalidInput)` naming the node for a negative dim, or more elements than
    ///   ``GraphLimits/maxElements``.
    func shape(_ dims: [Int], _ what: String = "output") throws -> [Int] {
        guard GraphLimits.elementCount(dims) != nil else {
            throw KilnError.mismatch(file: nil, path: path + [what], expected: "dims ≥ 0 and at most \(GraphLimits.maxElements) elements",
                                     found: "shape \(dims)")
        }
        return dims
    }

    /// `f` truncated toward zero to an integer; `what` names it in the error.
    /// - Throws: `KilnError(.invalidInput)` naming the node for NaN, ±Inf or a value outside Int64.
    func integer(_ f: Float, _ what: String) throws -> Int64 {
        guard let i = Int64(exactly: f.rounded(.towardZero)) else {
            throw KilnError.mismatch(file: nil, path: path + [what], expected: "a finite value within the Int64 range", found: "\(f)")
        }
        return i
    }

    func int(_ name: String, _ fallback: Int) throws -> Int {
        switch node.attribute(name) {
        case nil: return fallback
        case .int(let v)?: return Int(v)
        default: throw KilnError.mismatch(file: nil, path: path + ["attribute \"\(name)\""], expected: "an int", found: "another type")
        }
    }

    func ints(_ name: String) throws -> [Int]? {
        switch node.attribute(name) {
        case nil: return nil
        case .ints(let v)?: return v.map { Int($0) }
        default: throw KilnError.mismatch(file: nil, path: path + ["attribute \"\(name)\""], expected: "a list of ints", found: "another type")
        }
    }

    func float(_ name: String, _ fallback: Float) throws -> Float {
        switch node.attribute(name) {
        case nil: return fallback
        case .float(let v)?: return v
        case .int(let v)?: return Float(v)
        default: throw KilnError.mismatch(file: nil, path: path + ["attribute \"\(name)\""], expected: "a float", found: "another type")
        }
    }

    func string(_ name: String, _ fallback: String) throws -> String {
        switch node.attribute(name) {
        case nil: return fallback
        case .string(let v)?: return String(decoding: v, as: UTF8.self)
        default: throw KilnError.mismatch(file: nil, path: path + ["attribute \"\(name)\""], expected: "a string", found: "another type")
        }
    }

    /// `axis` normalized against `rank` (negative counts from the end); a scalar (rank 0) has no axis.
    func axis(_ value: Int, rank: Int) throws -> Int {
        guard rank >= 1 else { throw fail("axis \(value) needs an input of rank ≥ 1, found a scalar") }
        let a = value < 0 ? value + rank : value
        guard a >= 0, a < rank else { throw fail("axis \(value) is out of range for rank \(rank)") }
        return a
    }
}
