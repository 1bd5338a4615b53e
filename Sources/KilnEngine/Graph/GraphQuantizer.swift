import Foundation
import KilnCore

/// Post-training quantization of a graph model (an imported ONNX CNN or transformer), the ONNX
/// counterpart of the LLM passes: the result carries QuantSpecs that the ONNX writer turns into
/// TensorRT-style explicit quantization (``QDQExport`` in Formats/ONNX, DESIGN §6).
///
/// ```
/// for each Conv / ConvTranspose / MatMul / Gemm whose weight is a constant (not excluded):
///     weight  W  → payload q = clamp(round_half_even(W / s_c), −128, 127),  s_c = max|W[c]| / 127
///                  (per output channel c: Conv axis 0, ConvTranspose axis 1, MatMul axis 1, Gemm by transB)
///     input   X  → inputScale s_x = range(X) / 127 (per tensor, symmetric; range by max, percentile or MSE
///                  over the calibration set, measured in the ``GraphInterpreter``)
/// fp8: the same with E4M3 payloads and 448 in place of 127.
/// ```
/// Weights stored as `Constant` nodes (paddle2onnx) become initializers first. Residual Adds,
/// activations and everything else stay in f32 (no Q/DQ on them).
public struct GraphQuantizer {
    public enum Algorithm: String, Sendable { case int8, fp8 }

    /// How the sensitivity analysis of ``Options/excludeSensitive`` ranks nodes (each with its
    /// output pair when ``Options/outputQDQ`` is on).
    public enum Sensitivity: String, Sendable, CaseIterable {
        /// Quantize each node alone; rank by the output error it causes.
        case alone
        /// Quantize every node but one; rank by how little error is left without it (interactions count).
        case inContext = "in-context"
    }

    public struct Options: Sendable {
        public var algorithm: Algorithm = .int8
        public var range: RangeMethod = .percentile
        /// Percentile of |x| for ``RangeMethod/percentile``.
        public var percentile: Double = 99.99
        /// Node-name globs (``LinearTopology/matches(_:pattern:)``) left in f32.
        public var exclude: [String] = []
        /// Calibration samples used (first axis of the npz), at most.
        public var samples: Int = 128
        /// Samples per forward pass.
        public var batch: Int = 8
        /// Leave this many nodes in f32: those whose quantization alone moves the outputs most
        /// (relative squared error on the first calibration batch).
        public var excludeSensitive: Int = 0
        /// Also put a Q→DQ pair on the output of every quantized node (calibrated the same way), so
        /// that onnxruntime's CPU provider can fuse DQ → Conv → Q into QLinearConv. Not TensorRT's
        /// placement (off by default).
        public var outputQDQ = false
        /// Range method of the output pairs (``outputQDQ``); nil: ``range``.
        public var outputRange: RangeMethod?
        /// How ``excludeSensitive`` ranks the nodes.
        public var sensitivity: Sensitivity = .alone

        public init() {}
    }

    /// What was done, for the CLI summary.
    public struct Report: Sendable {
        public var quantizedNodes: [String] = []
        public var excludedNodes: [String] = []
        public var calibrationSamples = 0
        /// Nodes left in f32 by the sensitivity analysis, worst first, with their relative output error
        /// (``Sensitivity/alone``: quantized alone; ``Sensitivity/inContext``: the share of the full model's error they remove).
        public var sensitiveNodes: [(node: String, error: Double)] = []
    }

    /// Σ‖a − b‖² / Σ‖a‖² over the float outputs, summed in `outputs` order (the same bits every run).
    static func relativeError(_ a: [String: GraphValue], _ b: [String: GraphValue], outputs: [String]) -> Double {
        var num = 0.0, den = 0.0
        for name in outputs {
            guard let x = a[name], x.isFloat, let y = b[name], y.isFloat, y.count == x.count else { continue }
            for i in 0..<x.count {
                let u = Double(x.pointer[i]), d = u - Double(y.pointer[i])
                num += d * d
                den += u * u
            }
        }
        return den > 0 ? num / den : num
    }

    /// Ops whose weight input is quantized, with the input index of the weight.
    static let weightInput: [String: Int] = ["Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1]

    /// Quantize `model` in place.
    /// - Throws: `KilnError(.invalidInput)` for a model without a graph or calibration inputs that do not fit it;
    ///   interpreter errors (naming the node) from the calibration passes.
    public static func quantize(_ model: Model, calibration: GraphInputs, options: Options,
                                progress: ProgressSink? = nil) throws -> Report {
        guard var graph = model.graph else {
            throw KilnError(.invalidInput, path: ["graph"], "the model has no graph; ONNX post-training quantization needs one")
        }
        var report = Report()
        // 1. Which nodes, which weights, which activations.
        var constantNodes: [String: Int] = [:]
        for (i, n) in graph.nodes.enumerated() where n.opType == "Constant" && n.domain.isEmpty && n.outputs.count == 1 {
            constantNodes[n.outputs[0]] = i
        }
        let initializers = Set(graph.initializerNames)
        func isConstant(_ name: String) -> Bool { initializers.contains(name) || constantNodes[name] != nil }
        var plan: [(node: Int, weight: String, activation: String)] = []
        for (i, n) in graph.nodes.enumerated() where (n.domain.isEmpty || n.domain == "ai.onnx") {
            guard let k = weightInput[n.opType], n.inputs.count > k, isConstant(n.inputs[k]), !n.inputs[0].isEmpty,
                  !isConstant(n.inputs[0]) else { continue }
            if options.exclude.contains(where: { LinearTopology.matches(n.name, pattern: $0) }) {
                report.excludedNodes.append(n.name)
                continue
            }
            plan.append((i, n.inputs[k], n.inputs[0]))
        }
        // A weight shared with an excluded node (or read twice by one) stays in f32 for all of them.
        var weightUses: [String: Int] = [:]
        for n in graph.nodes { for x in n.inputs { weightUses[x, default: 0] += 1 } }
        plan = plan.filter { p in plan.filter { $0.weight == p.weight }.count == weightUses[p.weight] }

        // Node → its output (node indices change below when Constant nodes go).
        let outputOf = Dictionary(plan.map { (graph.nodes[$0.node].name, graph.nodes[$0.node].outputs.first ?? "") },
                                  uniquingKeysWith: { a, _ in a })

        // 2. Constant-node weights become initializers (QuantSpecs live on tensors).
        var hoisted = Set<Int>()
        for p in plan where constantNodes[p.weight] != nil && model[p.weight] == nil {
            let i = constantNodes[p.weight]!
            guard case .tensor(var t)? = graph.nodes[i].attribute("value") else { continue }
            t.name = p.weight
            try model.add(t)
            graph.initializerNames.append(p.weight)
            hoisted.insert(i)
        }
        plan = plan.filter { model[$0.weight] != nil && model[$0.weight]!.dtype.isFloat && model[$0.weight]!.quant == nil }
        graph.nodes = graph.nodes.enumerated().filter { !hoisted.contains($0.offset) }.map(\.element)
        model.graph = graph

        // 3. Calibration: amax of every quantized activation, then (percentile / mse) histograms.
        let watched = Set(plan.map(\.activation)).union(options.outputQDQ ? Set(outputOf.values) : [])
        let interpreter = try GraphInterpreter(model: model)
        let batches = try calibration.batches(size: options.batch, limit: options.samples)
        var stats: [String: RangeStatistics] = [:]
        let passes = options.range == .max && (options.outputRange ?? .max) == .max ? 1 : 2
        for pass in 0..<passes {
            for (b, range) in batches.enumerated() {
                _ = try interpreter.run(calibration.batch(range)) { name, value in
                    guard watched.contains(name), value.isFloat else { return }
                    if pass == 0 { stats[name, default: RangeStatistics()].observeMax(value.pointer, value.count) }
                    else { stats[name]?.observeHistogram(value.pointer, value.count) }
                }
                progress?.update(label: "calibrating (pass \(pass + 1)/\(passes))", done: b + 1, total: batches.count)
            }
        }
        for name in stats.keys.sorted() where stats[name]!.finite == 0 && stats[name]!.nonFinite > 0 {
            throw KilnError(.invalidInput, path: ["graph", "value \"\(name)\""],
                            "every calibration value is NaN or infinite (\(stats[name]!.nonFinite) elements); no range can be derived")
        }
        report.calibrationSamples = batches.last?.upperBound ?? 0

        // 4. Weights and input scales.
        let fp8 = options.algorithm == .fp8
        let levels: Float = fp8 ? 448 : 127
        var quantized: [(node: String, float: Tensor, quantized: Tensor)] = []
        for p in plan {
            let node = graph.nodes.first { $0.inputs.count > 1 && $0.inputs[1] == p.weight && $0.inputs[0] == p.activation }!
            let original = model[p.weight]!
            var w = original
            let axis = channelAxis(node, rank: w.shape.rank)
            let range = stats[p.activation]?.range(options.range, percentile: options.percentile, levels: levels, fp8: fp8) ?? 0
            var spec = try weightSpec(&w, axis: axis, fp8: fp8)
            spec.inputScale = Tensor(name: p.activation + "_scale", dtype: .f32, shape: [],
                                     values: [range > 0 ? range / levels : 1])
            w.quant = spec
            quantized.append((node.name, original, w))
        }
        // 5. Optionally leave the most sensitive nodes in f32 (relative output error on the first calibration batch).
        let outputRanges = stats.mapValues { $0.range(options.outputRange ?? options.range, percentile: options.percentile, levels: levels, fp8: fp8) }
        let graphOutputs = Set(graph.outputs.map(\.name))
        /// The output fake quantization an output pair after `node` would do (none for graph outputs).
        func outputQuant(_ node: String) -> [String: (scale: Float, type: DType)] {
            guard options.outputQDQ, let y = outputOf[node], !graphOutputs.contains(y), let r = outputRanges[y], r > 0 else { return [:] }
            return [y: (r / levels, fp8 ? .f8e4m3fn : .i8)]
        }
        var keepFloat = Set<String>()
        if options.excludeSensitive > 0, let first = batches.first {
            let feed = calibration.batch(first)
            let reference = try GraphInterpreter(model: model).run(feed)
            let outputNames = graph.outputs.map(\.name)
            var errors: [(String, Double)] = []
            switch options.sensitivity {
            case .alone:
                for (i, q) in quantized.enumerated() {
                    model.set(q.quantized)
                    let interpreter = try GraphInterpreter(model: model)
                    interpreter.outputQuant = outputQuant(q.node)
                    errors.append((q.node, relativeError(reference, try interpreter.run(feed), outputs: outputNames)))
                    model.set(q.float)
                    progress?.update(label: "sensitivity", done: i + 1, total: quantized.count)
                }
            case .inContext:
                // Everything quantized, then everything but one node: the error that node accounts for.
                let all = quantized.reduce(into: [String: (scale: Float, type: DType)]()) { $0.merge(outputQuant($1.node)) { a, _ in a } }
                for q in quantized { model.set(q.quantized) }
                let full = try GraphInterpreter(model: model)
                full.outputQuant = all
                let total = relativeError(reference, try full.run(feed), outputs: outputNames)
                for (i, q) in quantized.enumerated() {
                    model.set(q.float)
                    let interpreter = try GraphInterpreter(model: model)
                    interpreter.outputQuant = all.filter { outputQuant(q.node)[$0.key] == nil }
                    errors.append((q.node, total - relativeError(reference, try interpreter.run(feed), outputs: outputNames)))
                    model.set(q.quantized)
                    progress?.update(label: "sensitivity (in context)", done: i + 1, total: quantized.count)
                }
                for q in quantized { model.set(q.float) }
            }
            // Ties (equal errors) go by node name, so the excluded set does not depend on the plan order.
            let worst = errors.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.prefix(options.excludeSensitive)
            keepFloat = Set(worst.map(\.0))
            report.sensitiveNodes = worst.map { ($0.0, $0.1) }
        }
        for q in quantized {
            if keepFloat.contains(q.node) {
                report.excludedNodes.append(q.node)
            } else {
                model.set(q.quantized)
                report.quantizedNodes.append(q.node)
            }
        }
        if options.outputQDQ {
            try insertOutputPairs(model, nodes: report.quantizedNodes.compactMap { n in outputOf[n].map { (n, $0) } },
                                  ranges: outputRanges,
                                  levels: levels, type: fp8 ? .f8e4m3fn : .i8)
        }
        model.quantization = QuantizationRecord(algorithm: fp8 ? "FP8" : "INT8", excludedModules: report.excludedNodes)
        model.provenance.append("quantized \(report.quantizedNodes.count) Conv/ConvTranspose/MatMul/Gemm weights (\(options.algorithm.rawValue), "
                                + "per-channel weights, per-tensor \(options.range.rawValue) activation ranges over \(report.calibrationSamples) samples)")
        return report
    }

    /// Insert `y → QuantizeLinear(y, s, 0) → DequantizeLinear → consumers` after each listed node
    /// (graph outputs are left alone); s = range / levels, scale and zero point as initializers.
    static func insertOutputPairs(_ model: Model, nodes: [(node: String, output: String)], ranges: [String: Float],
                                  levels: Float, type: DType) throws {
        guard var graph = model.graph else { return }
        var taken = Set(graph.nodes.flatMap { $0.inputs + $0.outputs + [$0.name] }).union(model.tensorNames)
        func fresh(_ base: String) -> String {
            var name = base, i = 0
            while taken.contains(name) { i += 1; name = "\(base)_\(i)" }
            taken.insert(name)
            return name
        }
        let graphOutputs = Set(graph.outputs.map(\.name))
        var after: [String: [Node]] = [:], renamed: [String: String] = [:]
        for (node, y) in nodes where !y.isEmpty && !graphOutputs.contains(y) {
            guard let range = ranges[y], range > 0 else { continue }
            let scale = Tensor(name: fresh(y + "_output_scale"), dtype: .f32, shape: [], values: [range / levels])
            let zero = Tensor(name: fresh(y + "_output_zero_point"), dtype: type, shape: [],
                              storage: .owned(TensorBuffer(count: type.byteCount(elements: 1)!)))
            try model.add(scale)
            try model.add(zero)
            graph.initializerNames += [scale.name, zero.name]
            let q = fresh(y + "_QuantizeLinear_Output"), dq = fresh(y + "_DequantizeLinear_Output")
            after[node] = [
                Node(name: fresh(node + "_output_QuantizeLinear"), opType: "QuantizeLinear", inputs: [y, scale.name, zero.name], outputs: [q]),
                Node(name: fresh(node + "_output_DequantizeLinear"), opType: "DequantizeLinear", inputs: [q, scale.name, zero.name], outputs: [dq]),
            ]
            renamed[y] = dq
        }
        var nodesOut: [Node] = []
        for var n in graph.nodes {
            n.inputs = n.inputs.map { renamed[$0] ?? $0 }  // the pairs, appended below, keep reading the original
            nodesOut.append(n)
            nodesOut += after[n.name] ?? []
        }
        graph.nodes = nodesOut
        model.graph = graph
    }

    /// The output-channel axis of a node's weight, or nil for per-tensor (grouped ConvTranspose, 1-D weights).
    static func channelAxis(_ node: Node, rank: Int) -> Int? {
        switch node.opType {
        case "Conv": return rank >= 2 ? 0 : nil
        case "ConvTranspose":
            if case .int(let g)? = node.attribute("group"), g != 1 { return nil }
            return rank >= 2 ? 1 : nil
        case "Gemm":
            if case .int(let t)? = node.attribute("transB"), t != 0 { return 0 }
            return 1
        default: return rank == 2 ? 1 : nil
        }
    }

    /// Replace `w`'s payload with its quantized form; the QuantSpec (scale per channel of `axis`, or one).
    static func weightSpec(_ w: inout Tensor, axis: Int?, fp8: Bool) throws -> QuantSpec {
        let values = try GraphValue(w).floats
        let dims = w.shape.dims
        let channels = axis.map { dims[$0] } ?? 1
        let inner = axis.map { dims[($0 + 1)...].reduce(1, *) } ?? values.count
        var amax = [Float](repeating: 0, count: channels)
        for (i, v) in values.enumerated() { let c = (i / inner) % channels; amax[c] = max(amax[c], abs(v)) }
        let levels: Float = fp8 ? 448 : 127
        let scales = amax.map { $0 > 0 ? $0 / levels : 1 }
        let scaled = values.enumerated().map { i, v in v / scales[(i / inner) % channels] }
        let scale = Tensor(name: w.name + "_scale", dtype: .f32, shape: Shape([channels]), values: scales)
        let granularity: QuantSpec.Granularity = axis.map { .perChannel(axis: $0) } ?? .perTensor
        if fp8 {
            var bytes = [UInt8](repeating: 0, count: scaled.count)
            let clamped = scaled.map { max(-448, min(448, $0)) }
            try clamped.withUnsafeBytes { src in
                try bytes.withUnsafeMutableBytes { dst in
                    guard !clamped.isEmpty else { return }
                    try DType.convert(clamped.count, from: .f32, src.baseAddress!, to: .f8e4m3fn, dst.baseAddress!)
                }
            }
            w = Tensor(name: w.name, dtype: .f8e4m3fn, shape: w.shape, storage: .owned(TensorBuffer(values: bytes)))
            return QuantSpec(format: .fp8e4m3, granularity: granularity, scale: scale)
        }
        let q = scaled.map { Int8(max(-128, min(127, $0.rounded(.toNearestOrEven)))) }
        w = Tensor(name: w.name, dtype: .i8, shape: w.shape, values: q)
        return QuantSpec(format: .int8, granularity: granularity, scale: scale)
    }
}
