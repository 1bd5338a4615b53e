import KilnCore

/// Raises the default-domain opset of a graph (Q/DQ export needs 13, 19 or 21), rewriting the
/// operators whose signature or defaults changed on the way (https://onnx.ai/onnx/operators/ —
/// each operator's "Changelog"):
///
/// | crossing | operator | rewrite |
/// |---|---|---|
/// | 13 | Squeeze, Unsqueeze, ReduceSum | attribute `axes` → second input (an int64 initializer) |
/// | 13 | Split | attribute `split` → second input |
/// | 13 | Softmax, LogSoftmax, Hardmax | from "flatten to 2-D at `axis` (default 1)" to "along `axis` (default −1)": kept with an explicit axis when the input's rank is known and `axis` is the last one, else rewritten as Flatten(axis) → op(axis −1) → Reshape(Shape(x)) |
/// | 16 | RoiAlign | the default `coordinate_transformation_mode` became `half_pixel`: the old default is written out |
/// | 18 | ReduceMean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare | attribute `axes` → second input (an int64 initializer) |
/// | 20 | GridSample | `mode` bilinear/bicubic renamed linear/cubic |
/// | 20 | DFT | refused (`axis` moved to an input with different semantics) |
/// | 21 | GroupNormalization | refused (scale and bias changed from per group to per channel) |
///
/// Models below opset 11 are refused (Clip, Resize, Pad and Slice took their inputs differently).
enum OpsetUpgrade {
    static let reduceOps: Set<String> = ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                                         "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]

    /// Rewrite `graph` (and add the tensors new inputs need) from opset `from` to `to`.
    /// - Throws: `KilnError(.unsupported)` naming the node for operators that cannot be upgraded.
    static func raise(graph: inout Graph, tensors: inout [Tensor], from: Int, to: Int) throws {
        guard from < to else { return }
        guard from >= Layout.lowestUpgradableOpset else {
            throw KilnError(.unsupported, path: ["opset_import"],
                            "the model uses ONNX opset \(from); quantized export needs opset \(to), and upgrading from below "
                                + "\(Layout.lowestUpgradableOpset) is not supported — convert the model to opset "
                                + "\(Layout.lowestUpgradableOpset) first (onnx.version_converter)")
        }
        var names = NameTable(graph: graph, tensors: tensors)
        var added: [Tensor] = []
        func crosses(_ v: Int) -> Bool { from < v && v <= to }
        var ranks: [String: Int] = [:]
        for v in graph.inputs + graph.outputs + graph.valueInfo { if let d = v.dims { ranks[v.name] = d.count } }

        /// Move list attribute `key` to input 1 as an int64 initializer.
        func attributeToInput(_ n: inout Node, _ key: String, here: [String]) throws {
            guard let at = n.attributes.firstIndex(where: { $0.name == key }) else { return }
            guard case .ints(let values) = n.attributes[at].value else {
                throw KilnError(.invalidInput, path: here + ["attribute \"\(key)\""], "expected a list of ints")
            }
            let base = (n.name.isEmpty ? (n.outputs.first ?? n.opType) : n.name) + "_" + key
            let t = Tensor(name: names.unique(base), dtype: .i64, shape: Shape([values.count]), values: values)
            added.append(t)
            n.attributes.remove(at: at)
            n.inputs = [n.inputs.first ?? "", t.name]
        }
        /// Nodes to insert before node i (the legacy softmax rewrite).
        var inserted: [Int: [Node]] = [:]

        func upgrade(_ g: inout Graph, path: [String]) throws {
            for i in g.nodes.indices {
                var n = g.nodes[i]
                let here = path + ["node \"\(n.name)\" (\(n.opType))"]
                for k in n.attributes.indices {
                    if case .graph(var sub) = n.attributes[k].value {
                        try upgrade(&sub, path: here)
                        n.attributes[k].value = .graph(sub)
                    } else if case .graphs(var subs) = n.attributes[k].value {
                        for j in subs.indices { try upgrade(&subs[j], path: here) }
                        n.attributes[k].value = .graphs(subs)
                    }
                }
                guard Layout.isDefaultDomain(n.domain) else { g.nodes[i] = n; continue }
                switch n.opType {
                case "Squeeze" where crosses(13), "Unsqueeze" where crosses(13), "ReduceSum" where crosses(13):
                    try attributeToInput(&n, "axes", here: here)
                case "Split" where crosses(13):
                    if n.attribute("split") != nil { try attributeToInput(&n, "split", here: here) }
                case "Softmax" where crosses(13), "LogSoftmax" where crosses(13), "Hardmax" where crosses(13):
                    var axis = 1
                    if case .int(let a)? = n.attribute("axis") { axis = Int(a) }
                    n.attributes.removeAll { $0.name == "axis" }
                    let x = n.inputs.first ?? ""
                    if let rank = ranks[x] ?? n.outputs.first.flatMap({ ranks[$0] }), axis == rank - 1 || axis == -1 {
                        n.attributes.append(("axis", .int(-1)))
                    } else if axis == 0 {
                        throw KilnError(.unsupported, path: here, "\(n.opType) over all axes (axis 0) of an input of unknown rank cannot be upgraded")
                    } else {
                        guard !x.isEmpty, let output = n.outputs.first, !output.isEmpty else {
                            throw KilnError.mismatch(file: nil, path: here, expected: "1 input and 1 output to rewrite the legacy \(n.opType)",
                                                     found: "\(n.inputs.count) inputs, \(n.outputs.count) outputs")
                        }
                        let base = n.name.isEmpty ? output : n.name
                        let shape = names.unique(base + "_input_shape"), flat = names.unique(base + "_flattened")
                        let result = names.unique(base + "_2d")
                        inserted[i] = [
                            Node(name: names.unique(base + "_Shape"), opType: "Shape", inputs: [x], outputs: [shape]),
                            Node(name: names.unique(base + "_Flatten"), opType: "Flatten", inputs: [x], outputs: [flat],
                                 attributes: [("axis", .int(Int64(axis)))]),
                        ]
                        n.inputs[0] = flat
                        n.outputs[0] = result
                        n.attributes.append(("axis", .int(-1)))
                        inserted[i]!.append(n)
                        n = Node(name: names.unique(base + "_Reshape"), opType: "Reshape", inputs: [result, shape], outputs: [output])
                    }
                case "RoiAlign" where crosses(16) && n.attribute("coordinate_transformation_mode") == nil:
                    n.attributes.append(("coordinate_transformation_mode", .string(Array("output_half_pixel".utf8))))
                case let op where reduceOps.contains(op) && crosses(18):
                    try attributeToInput(&n, "axes", here: here)
                case "GridSample" where crosses(20):
                    if case .string(let mode)? = n.attribute("mode"), let at = n.attributes.firstIndex(where: { $0.name == "mode" }) {
                        let renamed = ["bilinear": "linear", "bicubic": "cubic"][String(decoding: mode, as: UTF8.self)]
                        if let renamed { n.attributes[at].value = .string(Array(renamed.utf8)) }
                    }
                case "DFT" where crosses(20), "GroupNormalization" where crosses(21):
                    throw KilnError(.unsupported, path: here,
                                    "\(n.opType) changed meaning between opset \(from) and \(to); it cannot be upgraded automatically")
                default:
                    break
                }
                g.nodes[i] = n
            }
            if !inserted.isEmpty {
                g.nodes = g.nodes.enumerated().flatMap { (inserted[$0.offset] ?? []) + [$0.element] }
                inserted = [:]
            }
        }
        try upgrade(&graph, path: ["graph"])
        tensors += added
        graph.initializerNames += added.map(\.name)
    }
}
