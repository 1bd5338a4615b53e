import Foundation
import KilnCore

/// Rewrites the Kiln ops of an architecture-template graph (domain `kiln`, see KilnEngine's
/// `KilnOp`) into standard ONNX ops, so LLM graphs run in onnxruntime and TensorRT with dynamic
/// batch and sequence dims.
///
/// Template convention: token inputs are int64 `[batch, seq]`, activations `[batch·seq, features]`.
/// The lowering flattens the token inputs, keeps activations 2-D, and reshapes `[batch, seq, F]`
/// outputs back at the end:
/// ```
/// kiln.Linear(x, W[out,in], b?)   → Gemm(x, W, b, transB=1)              (Q/DQ finds W on Gemm input 1)
///   weight_layout "in_out"        → Gemm(x, W, b)                        (GPT-2 Conv1D, W[in,out])
/// kiln.RMSNorm(x, w; epsilon)     → x / Sqrt(ReduceMean(x·x, -1) + ε) · w
/// kiln.Gelu(x; approximate)       → 0.5·x·(1 + Erf(x/√2)), or 0.5·x·(1 + Tanh(√(2/π)·(x + 0.044715·x³)))
/// kiln.FirstToken(x)              → Gather(Reshape(x, [batch, seq, F]), 0, axis=1)
/// kiln.RoPE(x, pos; heads, dim)   → x·cos + rotate_half(x)·sin on [N, heads, dim], with
///                                   angle = f32(pos) · inv_freq (transformers' f32 inverse frequencies)
/// kiln.Attention(q, k, v; …)      → [b, H, s, d] heads (GQA by Expand), Softmax(q·kᵀ·scale masked) · v;
///                                   causal (and sliding-window) mask from Trilu on [s, s]; a fused
///                                   [q | k | v] input is cut by Slice; an attention_mask input hides
///                                   keys through Where(mask[b, 1, 1, s], scores, −∞)
/// ```
enum KilnLowering {
    static let domain = "kiln"
    /// Default-domain opset the lowered ops need (Trilu: 14; LayerNormalization-era ops: 17).
    static let minimumOpset = 17

    static func isNeeded(_ graph: Graph) -> Bool { graph.nodes.contains { $0.domain == domain } }

    /// Lower every Kiln op of `graph` for default-domain opset `opset` (≥ 17).
    /// - Throws: `KilnError(.unsupported)` naming the node for Kiln ops or attributes without a lowering.
    static func lower(graph: inout Graph, tensors: inout [Tensor], opset: Int) throws {
        var b = Builder(names: NameTable(graph: graph, tensors: tensors), opset: opset)
        let tokenInputs = graph.inputs.filter { ($0.dtype == .i64 || $0.dtype == .i32) && $0.dims?.count == 2 }
        guard let reference = tokenInputs.first else {
            throw KilnError(.unsupported, path: ["graph", "inputs"], "Kiln ops need a token input of shape [batch, seq]")
        }
        b.tokensShape = b.add("Shape", [reference.name], hint: "tokens_shape")
        var renamed: [String: String] = [:]
        for input in tokenInputs {
            let flat = b.add("Reshape", [input.name, b.ints([-1], hint: "flat")], hint: input.name + "_flat")
            renamed[input.name] = flat
            b.unflattened[flat] = input.name
        }
        let outputs3D = Dictionary(graph.outputs.filter { $0.dims?.count == 3 }.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for var node in graph.nodes {
            node.inputs = node.inputs.map { renamed[$0] ?? $0 }
            let reshaped = node.outputs.map { outputs3D[$0] }
            for (i, o) in reshaped.enumerated() where o != nil { node.outputs[i] = b.names.unique(node.outputs[i] + "_2d") }
            if node.domain == domain {
                try b.lower(node)
            } else {
                b.nodes.append(node)
            }
            for (i, o) in reshaped.enumerated() {
                guard let o else { continue }
                let f: Int64 = if case .fixed(let n)? = o.dims?[2] { Int64(n) } else { -1 }
                let shape = b.add("Concat", [b.tokensShape, b.ints([f], hint: "features")], [("axis", .int(0))], hint: o.name + "_shape")
                b.nodes.append(Node(name: b.names.unique(o.name + "_reshape"), opType: "Reshape", inputs: [node.outputs[i], shape],
                                    outputs: [o.name]))
            }
        }
        graph.nodes = b.nodes
        tensors += b.tensors
        graph.initializerNames += b.tensors.map(\.name)
    }

    /// Emits ONNX nodes and constant initializers with unique names.
    struct Builder {
        var names: NameTable
        let opset: Int
        var nodes: [Node] = []
        var tensors: [Tensor] = []
        var tokensShape = ""
        /// Graph token input of each flattened value (`attention_mask` keeps its [batch, seq] form).
        var unflattened: [String: String] = [:]
        private var cache: [String: String] = [:]

        init(names: NameTable, opset: Int) {
            self.names = names
            self.opset = opset
        }

        /// Append a node with one output named from `hint`; returns the output.
        @discardableResult
        mutating func add(_ op: String, _ inputs: [String], _ attributes: [(name: String, value: AttributeValue)] = [],
                          hint: String, output: String? = nil) -> String {
            let out = output ?? names.unique(hint)
            nodes.append(Node(name: names.unique(hint + "_" + op), opType: op, inputs: inputs, outputs: [out], attributes: attributes))
            return out
        }

        /// An int64 1-D constant (shared by value).
        mutating func ints(_ values: [Int64], hint: String) -> String {
            constant("i64:\(values)", hint: hint) { Tensor(name: $0, dtype: .i64, shape: Shape([values.count]), values: values) }
        }

        /// An f32 constant of shape `shape` (shared by value).
        mutating func floats(_ values: [Float], shape: [Int], hint: String) -> String {
            constant("f32:\(shape):\(values.map(\.bitPattern))", hint: hint) {
                Tensor(name: $0, dtype: .f32, shape: Shape(shape), values: values)
            }
        }

        mutating func constant(_ key: String, hint: String, make: (String) -> Tensor) -> String {
            if let name = cache[key] { return name }
            let t = make(names.unique(hint))
            tensors.append(t)
            cache[key] = t.name
            return t.name
        }

        /// A value computed once (cos/sin tables, masks), keyed by `key`.
        mutating func once(_ key: String, _ build: (inout Builder) throws -> String) rethrows -> String {
            if let name = cache[key] { return name }
            let name = try build(&self)
            cache[key] = name
            return name
        }

        mutating func lower(_ n: Node) throws {
            let here = ["node \"\(n.name)\" (\(domain).\(n.opType))"]
            func int(_ key: String) throws -> Int {
                guard case .int(let v)? = n.attribute(key) else {
                    throw KilnError(.invalidInput, path: here + ["attribute \"\(key)\""], "missing: expected an int")
                }
                return Int(v)
            }
            func float(_ key: String) -> Float? {
                if case .float(let v)? = n.attribute(key) { return v }
                if case .int(let v)? = n.attribute(key) { return Float(v) }
                return nil
            }
            let out = n.outputs[0]
            switch n.opType {
            case "Linear":
                var transB: Int64 = 1
                if case .string(let layout)? = n.attribute("weight_layout") {
                    switch String(decoding: layout, as: UTF8.self) {
                    case "out_in": transB = 1
                    case "in_out": transB = 0
                    case let other: throw KilnError(.unsupported, path: here + ["weight_layout"], "expected out_in or in_out, found \"\(other)\"")
                    }
                }
                add("Gemm", Array(n.inputs.prefix(3)), [("transB", .int(transB))], hint: n.name, output: out)
            case "Gelu":
                var approximate = "none"
                if case .string(let a)? = n.attribute("approximate") { approximate = String(decoding: a, as: UTF8.self) }
                try gelu(n, tanh: approximate == "tanh", valid: ["none", "tanh"].contains(approximate), out: out)
            case "FirstToken":
                let shape = add("Concat", [tokensShape, ints([-1], hint: "features")], [("axis", .int(0))], hint: n.name + ".shape")
                let x3 = add("Reshape", [n.inputs[0], shape], hint: n.name + ".tokens")
                let zero = constant("i64:scalar:0", hint: "first") { Tensor(name: $0, dtype: .i64, shape: [], values: [Int64(0)]) }
                add("Gather", [x3, zero], [("axis", .int(1))], hint: n.name, output: out)
            case "RMSNorm":
                let eps = floats([float("epsilon") ?? 1e-6], shape: [], hint: "rms_epsilon")
                let x = n.inputs[0]
                let square = add("Mul", [x, x], hint: n.name + ".square")
                let mean = opset >= 18
                    ? add("ReduceMean", [square, ints([-1], hint: "last_axis")], [("keepdims", .int(1))], hint: n.name + ".mean")
                    : add("ReduceMean", [square], [("axes", .ints([-1])), ("keepdims", .int(1))], hint: n.name + ".mean")
                let root = add("Sqrt", [add("Add", [mean, eps], hint: n.name + ".variance")], hint: n.name + ".rms")
                add("Mul", [add("Div", [x, root], hint: n.name + ".normed"), n.inputs[1]], hint: n.name, output: out)
            case "RoPE":
                if case .int(let i)? = n.attribute("interleaved"), i != 0 {
                    throw KilnError(.unsupported, path: here, "interleaved RoPE has no lowering yet")
                }
                let heads = try int("num_heads"), dim = try int("head_dim")
                let inv = try RotaryFrequencies(node: n).inverse(headDim: dim)
                let (cos, sin) = rotaryTables(inv, positions: n.inputs[1])
                let x3 = add("Reshape", [n.inputs[0], ints([0, Int64(heads), Int64(dim)], hint: "heads_shape")], hint: n.name + ".heads")
                let half = Int64(dim / 2)
                let lo = add("Slice", [x3, ints([0], hint: "zero"), ints([half], hint: "half"), ints([2], hint: "axis2")],
                             hint: n.name + ".x1")
                let hi = add("Slice", [x3, ints([half], hint: "half"), ints([Int64(dim)], hint: "dim"), ints([2], hint: "axis2")],
                             hint: n.name + ".x2")
                let rotated = add("Concat", [add("Neg", [hi], hint: n.name + ".neg_x2"), lo], [("axis", .int(2))], hint: n.name + ".rotated")
                let sum = add("Add", [add("Mul", [x3, cos], hint: n.name + ".x_cos"), add("Mul", [rotated, sin], hint: n.name + ".rot_sin")],
                              hint: n.name + ".rope3d")
                add("Reshape", [sum, ints([0, Int64(heads * dim)], hint: "flat_heads")], hint: n.name, output: out)
            case "Attention":
                try attention(n, heads: try int("num_heads"), kvHeads: try int("num_kv_heads"), dim: try int("head_dim"),
                              scale: float("scale") ?? 1 / Float(try int("head_dim")).squareRoot(), out: out)
            default:
                throw KilnError(.unsupported, path: here, "no ONNX lowering for \(domain).\(n.opType)")
            }
        }

        /// cos and sin of `f32(position) · inv_freq`, concatenated twice, shaped [N, 1, dim].
        mutating func rotaryTables(_ inv: [Float], positions: String) -> (String, String) {
            let key = "rope:\(positions):\(inv.map(\.bitPattern))"
            let angles = once(key) { b in
                let posF = b.once("cast:\(positions)") { $0.add("Cast", [positions], [("to", .int(1))], hint: positions + "_f32") }
                let column = b.add("Unsqueeze", [posF, b.ints([1], hint: "axis1")], hint: positions + "_column")
                let freqs = b.add("Mul", [column, b.floats(inv, shape: [inv.count], hint: "rope_inv_freq")], hint: "rope_freqs")
                let emb = b.add("Concat", [freqs, freqs], [("axis", .int(-1))], hint: "rope_angles")
                return b.add("Unsqueeze", [emb, b.ints([1], hint: "axis1")], hint: "rope_angles_heads")
            }
            let cos = once("cos:" + key) { $0.add("Cos", [angles], hint: "rope_cos") }
            let sin = once("sin:" + key) { $0.add("Sin", [angles], hint: "rope_sin") }
            return (cos, sin)
        }

        /// `kiln.Gelu`: exact (Erf) or the tanh approximation, from elementary ops (opset 17 has no Gelu).
        mutating func gelu(_ n: Node, tanh: Bool, valid: Bool, out: String) throws {
            guard valid else {
                throw KilnError(.unsupported, path: ["node \"\(n.name)\"", "approximate"], "expected none or tanh")
            }
            let x = n.inputs[0], p = n.name
            let inner: String
            if tanh {
                let cube = add("Mul", [add("Mul", [x, x], hint: p + ".square"), x], hint: p + ".cube")
                let sum = add("Add", [x, add("Mul", [cube, floats([0.044715], shape: [], hint: "gelu_cubic")], hint: p + ".cubic")], hint: p + ".poly")
                let scaled = add("Mul", [sum, floats([(2 / Float.pi).squareRoot()], shape: [], hint: "gelu_sqrt_2_over_pi")], hint: p + ".scaled")
                inner = add("Tanh", [scaled], hint: p + ".tanh")
            } else {
                inner = add("Erf", [add("Mul", [x, floats([1 / Float(2).squareRoot()], shape: [], hint: "gelu_inv_sqrt2")], hint: p + ".scaled")],
                            hint: p + ".erf")
            }
            let onePlus = add("Add", [inner, floats([1], shape: [], hint: "one_f32")], hint: p + ".one_plus")
            let half = add("Mul", [x, floats([0.5], shape: [], hint: "half_f32")], hint: p + ".half_x")
            add("Mul", [half, onePlus], hint: p, output: out)
        }

        mutating func attention(_ n: Node, heads: Int, kvHeads: Int, dim: Int, scale: Float, out: String) throws {
            guard kvHeads > 0, heads % kvHeads == 0 else {
                throw KilnError(.invalidInput, path: ["node \"\(n.name)\""], "num_heads \(heads) is not a multiple of num_kv_heads \(kvHeads)")
            }
            guard (1...4).contains(n.inputs.count) else {
                throw KilnError(.invalidInput, path: ["node \"\(n.name)\""], "expected 1–4 inputs (qkv or q, k, v; then attention_mask), found \(n.inputs.count)")
            }
            let p = n.name
            var inputs = Array(n.inputs.prefix(n.inputs.count <= 2 ? 1 : 3))
            let maskInput = n.inputs.count == 2 || n.inputs.count == 4 ? n.inputs.last : nil
            if inputs.count == 1 {
                let qCols = Int64(heads * dim), kvCols = Int64(kvHeads * dim)
                let bounds = [(0, qCols, "q_part"), (qCols, qCols + kvCols, "k_part"), (qCols + kvCols, qCols + 2 * kvCols, "v_part")]
                inputs = bounds.map { lo, hi, hint in
                    add("Slice", [n.inputs[0], ints([lo], hint: "fused_start"), ints([hi], hint: "fused_end"), ints([1], hint: "axis1")],
                        hint: p + "." + hint)
                }
            }
            func split(_ x: String, _ h: Int, _ perm: [Int64], _ hint: String) -> String {
                let shape = add("Concat", [tokensShape, ints([Int64(h), Int64(dim)], hint: "heads_dim")], [("axis", .int(0))],
                                hint: p + "." + hint + "_shape")
                let x4 = add("Reshape", [x, shape], hint: p + "." + hint + "_4d")
                return add("Transpose", [x4], [("perm", .ints(perm))], hint: p + "." + hint + "_heads")
            }
            let q = split(inputs[0], heads, [0, 2, 1, 3], "q")
            var kT = split(inputs[1], kvHeads, [0, 2, 3, 1], "k")
            var v = split(inputs[2], kvHeads, [0, 2, 1, 3], "v")
            let rep = heads / kvHeads
            if rep > 1 {
                func repeatKV(_ x: String, _ target: [Int64], _ hint: String) -> String {
                    let x5 = add("Unsqueeze", [x, ints([2], hint: "axis2")], hint: p + "." + hint + "_5d")
                    let wide = add("Expand", [x5, ints([1, 1, Int64(rep), 1, 1], hint: "kv_repeat")], hint: p + "." + hint + "_expanded")
                    return add("Reshape", [wide, ints(target, hint: "gqa_shape")], hint: p + "." + hint + "_gqa")
                }
                kT = repeatKV(kT, [0, Int64(heads), Int64(dim), -1], "k")
                v = repeatKV(v, [0, Int64(heads), -1, Int64(dim)], "v")
            }
            var scores = add("Mul", [add("MatMul", [q, kT], hint: p + ".scores"), floats([scale], shape: [], hint: "attention_scale")],
                             hint: p + ".scaled")
            if case .int(let causal)? = n.attribute("causal"), causal != 0 {
                var window: Int64 = 0
                if case .int(let w)? = n.attribute("sliding_window") { window = w }
                let allowed = mask(window: window)
                scores = add("Where", [allowed, scores, floats([-Float.infinity], shape: [], hint: "minus_infinity")], hint: p + ".masked")
            }
            if let maskInput {
                let keys = try keyMask(unflattened[maskInput] ?? maskInput)
                scores = add("Where", [keys, scores, floats([-Float.infinity], shape: [], hint: "minus_infinity")], hint: p + ".padding_masked")
            }
            let probs = add("Softmax", [scores], [("axis", .int(-1))], hint: p + ".probs")
            let context = add("MatMul", [probs, v], hint: p + ".context")
            let t = add("Transpose", [context], [("perm", .ints([0, 2, 1, 3]))], hint: p + ".context_tokens")
            add("Reshape", [t, ints([-1, Int64(heads * dim)], hint: "tokens_features")], hint: p, output: out)
        }

        /// Bool [batch, 1, 1, seq] from an int [batch, seq] attention mask (1 = real token), computed once.
        mutating func keyMask(_ mask: String) throws -> String {
            once("key_mask:\(mask)") { b in
                let wide = b.add("Unsqueeze", [mask, b.ints([1, 2], hint: "axes12")], hint: mask + "_4d")
                return b.add("Cast", [wide], [("to", .int(9))], hint: mask + "_keys")
            }
        }

        /// Bool [seq, seq]: key j visible from query i when j ≤ i (and i − j < window when window > 0).
        mutating func mask(window: Int64) -> String {
            once("mask:\(window)") { b in
                let seq = b.add("Slice", [b.tokensShape, b.ints([1], hint: "one"), b.ints([2], hint: "two"), b.ints([0], hint: "axis0")],
                                hint: "seq_len")
                let square = b.add("Concat", [seq, seq], [("axis", .int(0))], hint: "seq_square")
                let one = Tensor(name: "value", dtype: .f32, shape: [1], values: [Float(1)])
                let ones = b.add("ConstantOfShape", [square], [("value", .tensor(one))], hint: "seq_ones")
                var allowed = b.add("Trilu", [ones], [("upper", .int(0))], hint: "causal")
                if window > 0 {
                    let shift = b.constant("i64:scalar:\(-window)", hint: "window_shift") {
                        Tensor(name: $0, dtype: .i64, shape: [], values: [-window])
                    }
                    let far = b.add("Trilu", [ones, shift], [("upper", .int(0))], hint: "outside_window")
                    allowed = b.add("Sub", [allowed, far], hint: "sliding_window")
                }
                return b.add("Cast", [allowed], [("to", .int(9))], hint: "attention_mask")
            }
        }
    }
}

/// transformers' inverse RoPE frequencies in f32, from a `kiln.RoPE` node's attributes (the same
/// computation as KilnEngine's `RopeParameters.inverseFrequencies`, which plugins cannot link).
struct RotaryFrequencies {
    var theta: Float = 10000, kind = "default", factor: Float = 1, low: Float = 1, high: Float = 4, original = 8192

    init(node: Node) throws {
        func float(_ key: String) -> Float? {
            if case .float(let v)? = node.attribute(key) { return v }
            if case .int(let v)? = node.attribute(key) { return Float(v) }
            return nil
        }
        theta = float("theta") ?? theta
        if case .string(let s)? = node.attribute("rope_type") { kind = String(decoding: s, as: UTF8.self) }
        factor = float("factor") ?? factor
        low = float("low_freq_factor") ?? low
        high = float("high_freq_factor") ?? high
        if case .int(let o)? = node.attribute("original_max_position_embeddings") { original = Int(o) }
        guard ["default", "linear", "llama3"].contains(kind) else {
            throw KilnError(.unsupported, path: ["node \"\(node.name)\"", "rope_type"], "expected default, linear or llama3, found \"\(kind)\"")
        }
    }

    func inverse(headDim: Int) -> [Float] {
        var inv = (0..<(headDim / 2)).map { i in 1 / Foundation.pow(theta, Float(2 * i) / Float(headDim)) }
        switch kind {
        case "linear":
            inv = inv.map { $0 / factor }
        case "llama3":
            let lowWavelen = Double(original) / Double(low), highWavelen = Double(original) / Double(high)
            inv = inv.map { freq in
                let wavelen = (1 / freq) * Float(2 * Double.pi)
                let scaled = Double(wavelen) > lowWavelen ? freq / factor : freq
                guard !(Double(wavelen) < highWavelen), !(Double(wavelen) > lowWavelen) else { return scaled }
                let smooth = ((1 / wavelen) * Float(original) - low) / (high - low)
                return (1 - smooth) * scaled / factor + smooth * scaled
            }
        default:
            break
        }
        return inv
    }
}
