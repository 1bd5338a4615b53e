import KilnCore

/// Writes quantized IR tensors as TensorRT-style explicit quantization (DESIGN §6):
///
/// ```
/// weight W with QuantSpec          →  W_quantized (payload) ─► DequantizeLinear(·, W_scale[, W_zero_point]) ─► W
///     per tensor: scalar scale; per channel: `axis`; per block: `axis` + `block_size` (opset 21)
/// spec.preQuantScale p (MatMul/Gemm) →  X ─► Mul(X, p) ─► …
/// spec.inputScale s on the weight    →  X ─► QuantizeLinear(X, s, 0) ─► DequantizeLinear(·, s, 0) ─► MatMul/Gemm/Conv(·, W)
/// ```
/// Activation pairs go only on the activation input of MatMul / Gemm / Conv / ConvTranspose (never on residual
/// Adds); consumers of the same activation with the same scale share one pair. Activation types:
/// int8 for int8 weights, uint8 for uint8, fp8 e4m3 for fp8, int4 and uint4 (W4A8), always with a
/// zero point, which fixes QuantizeLinear's output type. Required opsets: 13 (int8 / uint8, per
/// axis), 19 (fp8, f16/bf16 scales), 21 (int4 / uint4, `block_size`).
enum QDQExport {
    /// Rewrite `graph` and `tensors`; returns the default-domain opset the result needs (0 if nothing
    /// is quantized).
    /// - Throws: `KilnError(.unsupported)` naming the tensor for formats or placements ONNX cannot express.
    static func expand(graph: inout Graph, tensors: inout [Tensor]) throws -> Int {
        guard tensors.contains(where: { $0.quant != nil }) else { return 0 }
        var names = NameTable(graph: graph, tensors: tensors)
        var required = 13
        var out: [Tensor] = []
        var added: [String: Tensor] = [:]
        var dqNodes: [Node] = []
        let quantized = Dictionary(tensors.filter { $0.quant != nil }.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })

        let existing = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        /// Add a small tensor (scale, zero point) under `preferred` if free (or already holding the
        /// same values), else under a fresh name.
        func addSide(_ t: Tensor, preferred: String, fallback: String) throws -> String {
            if !preferred.isEmpty, let same = added[preferred] ?? existing[preferred], try QDQImport.sameContent(same, t) {
                return preferred
            }
            let name = !preferred.isEmpty && !names.isTaken(preferred) ? names.claim(preferred) : names.unique(fallback)
            var copy = t
            copy.name = name
            added[name] = copy
            out.append(copy)
            return name
        }

        for t in tensors {
            guard let spec = t.quant else { out.append(t); continue }
            let here = ["tensor \"\(t.name)\""]
            guard spec.format != .nvfp4 else {
                throw KilnError(.unsupported, path: here, "NVFP4 has no ONNX Q/DQ form yet")
            }
            guard t.dtype == spec.format.payload else {
                throw KilnError.mismatch(file: nil, path: here + ["dtype"], expected: spec.format.payload.name, found: t.dtype.name)
            }
            var payload = t
            payload.quant = nil
            payload.name = names.unique(t.name + "_quantized")
            out.append(payload)
            var scale = spec.scale
            var attributes: [(name: String, value: AttributeValue)] = []
            switch spec.granularity {
            case .perTensor:
                guard scale.elementCount == 1 else {
                    throw KilnError.mismatch(file: nil, path: here + ["scale"], expected: "1 value (per tensor)",
                                             found: "\(scale.elementCount)")
                }
                scale.shape = []
            case .perChannel(let axis):
                attributes.append(("axis", .int(Int64(axis))))
                scale.shape = Shape([scale.elementCount])
            case .perBlock(let axis, let size):
                attributes += [("axis", .int(Int64(axis))), ("block_size", .int(Int64(size)))]
                required = max(required, 21)
            @unknown default:
                throw KilnError(.unsupported, path: here, "granularity unknown to this writer")
            }
            if [.fp8e4m3].contains(spec.format) || scale.dtype != .f32 { required = max(required, 19) }
            if [.int4, .uint4].contains(spec.format) { required = max(required, 21) }
            var inputs = [payload.name, try addSide(scale, preferred: spec.scale.name, fallback: t.name + "_scale")]
            if var zero = spec.zeroPoint {
                zero.shape = scale.shape
                inputs.append(try addSide(zero, preferred: zero.name, fallback: t.name + "_zero_point"))
            }
            dqNodes.append(Node(name: names.unique(t.name + "_DequantizeLinear"), opType: "DequantizeLinear",
                                inputs: inputs, outputs: [t.name], attributes: attributes))
        }

        // Activation inputs of the consumers.
        var before: [Int: [Node]] = [:]
        var shared: [String: String] = [:]
        for i in graph.nodes.indices {
            let node = graph.nodes[i]
            guard QDQImport.consumers.contains(node.opType), Layout.isDefaultDomain(node.domain), node.inputs.count >= 2 else { continue }
            let candidates = node.opType.hasPrefix("Conv") ? [1] : [1, 0]
            guard let k = candidates.first(where: { quantized[node.inputs[$0]] != nil }),
                  quantized[node.inputs[1 - k]] == nil, let spec = quantized[node.inputs[k]]!.quant else { continue }
            let w = node.inputs[k]
            var act = node.inputs[1 - k]
            if let p = spec.preQuantScale {
                guard !node.opType.hasPrefix("Conv") else {
                    throw KilnError(.unsupported, path: ["tensor \"\(w)\""], "a pre-quantization scale on a Conv weight has no ONNX form")
                }
                let pName = try addSide(p, preferred: p.name, fallback: w + "_pre_quant_scale")
                let key = "mul|\(act)|\(pName)"
                if let existing = shared[key] {
                    act = existing
                } else {
                    let output = names.unique(act + "_pre_quant_scaled")
                    before[i, default: []].append(Node(name: names.unique(w + "_pre_quant_scale_Mul"), opType: "Mul",
                                                       inputs: [act, pName], outputs: [output]))
                    shared[key] = output
                    act = output
                }
            }
            if let s = spec.inputScale {
                guard let type = QDQImport.activationType(for: spec.format) else {
                    throw KilnError(.unsupported, path: ["tensor \"\(w)\""], "no activation type for \(spec.format)")
                }
                guard s.elementCount == 1 else {
                    throw KilnError.mismatch(file: nil, path: ["tensor \"\(w)\"", "input scale"], expected: "1 value (per tensor)",
                                             found: "\(s.elementCount)")
                }
                if type == .f8e4m3fn || s.dtype != .f32 { required = max(required, 19) }
                var scalar = s
                scalar.shape = []
                let sName = try addSide(scalar, preferred: s.name, fallback: act + "_scale")
                let key = "qdq|\(act)|\(sName)|\(type)"
                if let existing = shared[key] {
                    act = existing
                } else {
                    let zero = Tensor(name: act + "_zero_point", dtype: type, shape: [],
                                      storage: .owned(TensorBuffer(count: type.byteCount(elements: 1)!)))
                    let zName = try addSide(zero, preferred: "", fallback: act + "_zero_point")
                    let quantizedAct = names.unique(act + "_QuantizeLinear_Output")
                    let output = names.unique(act + "_DequantizeLinear_Output")
                    before[i, default: []] += [
                        Node(name: names.unique(act + "_QuantizeLinear"), opType: "QuantizeLinear",
                             inputs: [act, sName, zName], outputs: [quantizedAct]),
                        Node(name: names.unique(act + "_DequantizeLinear"), opType: "DequantizeLinear",
                             inputs: [quantizedAct, sName, zName], outputs: [output]),
                    ]
                    shared[key] = output
                    act = output
                }
            }
            graph.nodes[i].inputs[1 - k] = act
        }

        var nodes = dqNodes
        for (i, n) in graph.nodes.enumerated() {
            nodes += before[i] ?? []
            nodes.append(n)
        }
        graph.nodes = nodes
        let owned = Exporter.subgraphInitializers(graph)
        graph.initializerNames = out.map(\.name).filter { !owned.contains($0) }
        tensors = out
        return required
    }
}

/// Every name used in a graph (values, nodes, initializers), to make new ones unique.
struct NameTable {
    private var taken = Set<String>()

    init(graph: Graph, tensors: [Tensor]) {
        func visit(_ g: Graph) {
            taken.formUnion(g.inputs.map(\.name))
            taken.formUnion(g.outputs.map(\.name))
            taken.formUnion(g.initializerNames)
            for n in g.nodes {
                taken.insert(n.name)
                taken.formUnion(n.inputs)
                taken.formUnion(n.outputs)
                for (_, a) in n.attributes {
                    if case .graph(let sub) = a { visit(sub) }
                    if case .graphs(let subs) = a { subs.forEach(visit) }
                }
            }
        }
        visit(graph)
        taken.formUnion(tensors.map(\.name))
    }

    func isTaken(_ name: String) -> Bool { taken.contains(name) }

    /// Mark `name` as used and return it.
    mutating func claim(_ name: String) -> String {
        taken.insert(name)
        return name
    }

    /// `base` if unused, else `base_1`, `base_2`, ...
    mutating func unique(_ base: String) -> String {
        var name = base, i = 0
        while taken.contains(name) {
            i += 1
            name = "\(base)_\(i)"
        }
        return claim(name)
    }
}
