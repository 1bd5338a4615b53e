import KilnCore

/// Folds explicit quantization back into the IR after an ONNX import, so that
/// `export(import(x))` reproduces the Q/DQ structure and passes see quantized weights:
///
/// ```
/// P (int8/uint8/fp8/int4/uint4 initializer) ─► DequantizeLinear(P, S[, Z]) ─► W
///     becomes tensor W = P's payload with QuantSpec(scale S, zero point Z, axis / block_size)
/// X ─► QuantizeLinear(X, s, z) ─► DequantizeLinear(·, s, z) ─► MatMul/Gemm/Conv(·, W)
///     becomes MatMul/Gemm/Conv(X, W) with W.quant.inputScale = s   (z all zero, of the
///     activation type the export would choose for W's format)
/// ```
/// Only the main graph is folded, and only when every tensor involved is used by that pattern
/// alone; anything else stays as nodes (still lossless).
enum QDQImport {
    /// Payload types a weight DequantizeLinear may fold into.
    static let formats: [DType: QuantSpec.Format] = [.i8: .int8, .u8: .uint8, .f8e4m3fn: .fp8e4m3, .i4: .int4, .u4: .uint4]
    /// Ops whose activation input gets a Q→DQ pair (TensorRT's explicit quantization).
    static let consumers: Set<String> = ["MatMul", "Gemm", "Conv", "ConvTranspose"]

    /// The activation payload type paired with a weight format (int4/uint4: W4A8 with fp8 activations).
    static func activationType(for format: QuantSpec.Format) -> DType? {
        switch format {
        case .int8: return .i8
        case .uint8: return .u8
        case .fp8e4m3, .int4, .uint4: return .f8e4m3fn
        case .nvfp4: return nil
        @unknown default: return nil
        }
    }

    static func fold(_ model: Model) throws {
        guard var graph = model.graph else { return }
        var tensors = Dictionary(model.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let initializers = Set(graph.initializerNames)
        var removedNodes = Set<Int>()
        var removedTensors = Set<String>()
        var renamed: [String: String] = [:]

        // 1. Weights.
        var uses = useCounts(graph)
        let outputs = Set(graph.outputs.map(\.name)), inputs = Set(graph.inputs.map(\.name))
        for (i, n) in graph.nodes.enumerated() where n.opType == "DequantizeLinear" && Layout.isDefaultDomain(n.domain) {
            guard n.outputs.count == 1, (2...3).contains(n.inputs.count), tensors[n.outputs[0]] == nil,
                  !inputs.contains(n.outputs[0]),
                  n.attributes.allSatisfy({ $0.name == "axis" || $0.name == "block_size" }) else { continue }
            let names = n.inputs.filter { !$0.isEmpty }
            guard names.allSatisfy({ initializers.contains($0) && uses[$0] == 1 && tensors[$0] != nil }),
                  names.count == Set(names).count else { continue }
            let payload = tensors[n.inputs[0]]!, scale = tensors[n.inputs[1]]!
            let zero = n.inputs.count == 3 && !n.inputs[2].isEmpty ? tensors[n.inputs[2]] : nil
            guard let format = formats[payload.dtype], payload.quant == nil, [.f32, .f16, .bf16].contains(scale.dtype),
                  zero.map({ $0.dtype == payload.dtype && $0.shape == scale.shape }) ?? true,
                  let granularity = granularity(n, payload: payload.shape, scale: scale.shape) else { continue }
            var w = Tensor(name: n.outputs[0], dtype: payload.dtype, shape: payload.shape, storage: payload.storage)
            w.quant = QuantSpec(format: format, granularity: granularity, scale: scale, zeroPoint: zero)
            tensors[w.name] = w
            renamed[payload.name] = w.name
            removedTensors.formUnion(names)
            removedNodes.insert(i)
        }
        let weightFolds = removedNodes.count

        // 2. Activation Q → DQ pairs in front of quantized MatMul / Gemm / Conv.
        uses = useCounts(graph, skipping: removedNodes)
        let producer = Dictionary(graph.nodes.enumerated().flatMap { i, n in n.outputs.map { ($0, i) } }, uniquingKeysWith: { a, _ in a })
        var consumersOf: [String: [Int]] = [:]
        for (i, n) in graph.nodes.enumerated() where !removedNodes.contains(i) {
            for x in Set(n.inputs) where !x.isEmpty { consumersOf[x, default: []].append(i) }
        }
        for (di, dq) in graph.nodes.enumerated()
        where dq.opType == "DequantizeLinear" && Layout.isDefaultDomain(dq.domain) && !removedNodes.contains(di) {
            guard dq.inputs.count == 3, dq.outputs.count == 1, !outputs.contains(dq.outputs[0]),
                  let qi = producer[dq.inputs[0]], !removedNodes.contains(qi) else { continue }
            let q = graph.nodes[qi]
            guard q.opType == "QuantizeLinear", Layout.isDefaultDomain(q.domain), q.inputs.count == 3, q.outputs.count == 1,
                  uses[q.outputs[0]] == 1, plainQDQAttributes(q), plainQDQAttributes(dq),
                  let s = tensors[q.inputs[1]], let z = tensors[q.inputs[2]],
                  initializers.contains(s.name), initializers.contains(z.name),
                  let s2 = tensors[dq.inputs[1]], let z2 = tensors[dq.inputs[2]],
                  try isScalarScale(s), try same(s, s2), try same(z, z2), try isZero(z) else { continue }
            let users = consumersOf[dq.outputs[0]] ?? []
            var plan: [(node: Int, input: Int, weight: String)] = []
            for c in users {
                let node = graph.nodes[c]
                guard consumers.contains(node.opType), Layout.isDefaultDomain(node.domain), node.inputs.count >= 2,
                      let k = node.inputs.firstIndex(of: dq.outputs[0]), k < 2, node.inputs.lastIndex(of: dq.outputs[0]) == k,
                      let w = tensors[node.inputs[1 - k]], let spec = w.quant, spec.inputScale == nil,
                      uses[w.name] == 1, activationType(for: spec.format) == z.dtype else { plan = []; break }
                plan.append((c, k, w.name))
            }
            guard !plan.isEmpty, plan.count == users.count else { continue }
            for p in plan {
                graph.nodes[p.node].inputs[p.input] = q.inputs[0]
                tensors[p.weight]!.quant!.inputScale = s
            }
            removedNodes.formUnion([qi, di])
            for name in Set([s.name, z.name, s2.name, z2.name]) { removedTensors.insert(name) }
        }
        guard !removedNodes.isEmpty else { return }

        // Keep tensors still used elsewhere (a scale shared by several pairs).
        uses = useCounts(graph, skipping: removedNodes)
        removedTensors = removedTensors.filter { (uses[$0] ?? 0) == 0 }
        graph.nodes = graph.nodes.enumerated().filter { !removedNodes.contains($0.offset) }.map(\.element)
        graph.initializerNames = graph.initializerNames.compactMap { name in
            if let r = renamed[name] { return r }
            return removedTensors.contains(name) ? nil : name
        }
        let ordered = model.tensors.compactMap { t -> Tensor? in
            if let r = renamed[t.name] { return tensors[r] }
            return removedTensors.contains(t.name) ? nil : tensors[t.name]
        }
        for name in model.tensorNames { model.remove(name) }
        for t in ordered { try model.add(t) }
        model.graph = graph
        let pairs = (removedNodes.count - weightFolds) / 2
        model.provenance.append("folded \(weightFolds) weight DequantizeLinear and \(pairs) activation Q/DQ pairs into QuantSpecs")
    }

    /// Per tensor, per channel or per block, from DequantizeLinear's attributes and the scale's shape.
    static func granularity(_ n: Node, payload: Shape, scale: Shape) -> QuantSpec.Granularity? {
        var axis = 1, block = 0
        if case .int(let a)? = n.attribute("axis") { axis = Int(a) }
        if case .int(let b)? = n.attribute("block_size") { block = Int(b) }
        let rank = payload.rank
        if axis < 0 { axis += rank }
        if block > 0 {
            guard axis >= 0, axis < rank, scale.rank == rank else { return nil }
            for d in 0..<rank where scale[d] != (d == axis ? (payload[d] + block - 1) / block : payload[d]) { return nil }
            return .perBlock(axis: axis, size: block)
        }
        // One scale (shape [] or [1]) is per tensor, whatever the axis says.
        if scale.rank == 0 || (scale.rank == 1 && scale[0] == 1) { return .perTensor }
        guard scale.rank == 1, axis >= 0, axis < rank, scale[0] == payload[axis] else { return nil }
        return .perChannel(axis: axis)
    }

    static func plainQDQAttributes(_ n: Node) -> Bool {
        n.attributes.allSatisfy { a in
            if a.name == "axis" { return true }
            if a.name == "saturate", case .int(1) = a.value { return true }
            return false
        }
    }

    static func isScalarScale(_ t: Tensor) throws -> Bool { t.elementCount == 1 && t.dtype == .f32 && t.quant == nil }

    /// The same tensor (by name) or equal contents.
    static func same(_ a: Tensor, _ b: Tensor) throws -> Bool {
        try a.name == b.name || sameContent(a, b)
    }

    /// Same dtype, shape and bytes.
    static func sameContent(_ a: Tensor, _ b: Tensor) throws -> Bool {
        guard a.dtype == b.dtype, a.shape == b.shape, a.quant == nil, b.quant == nil else { return false }
        return try a.withBytes { x in try b.withBytes { y in x.elementsEqual(y) } }
    }

    static func isZero(_ t: Tensor) throws -> Bool {
        guard t.elementCount == 1, t.quant == nil else { return false }
        return try t.withBytes { $0.allSatisfy { $0 == 0 } }
    }

    /// How often each value name is read: node inputs (subgraphs included) and graph outputs.
    static func useCounts(_ graph: Graph, skipping: Set<Int> = []) -> [String: Int] {
        var uses: [String: Int] = [:]
        func visit(_ g: Graph, top: Bool) {
            for (i, n) in g.nodes.enumerated() where !(top && skipping.contains(i)) {
                for x in n.inputs where !x.isEmpty { uses[x, default: 0] += 1 }
                for (_, a) in n.attributes {
                    if case .graph(let sub) = a { visit(sub, top: false) }
                    if case .graphs(let subs) = a { subs.forEach { visit($0, top: false) } }
                }
            }
            for o in g.outputs { uses[o.name, default: 0] += 1 }
        }
        visit(graph, top: true)
        return uses
    }
}
