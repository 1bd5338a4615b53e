import KilnCore

/// Raises the default-domain opset of a graph (Q/DQ export needs 13, 19 or 21), rewriting the
/// operators whose signature or defaults changed on the way (https://onnx.ai/onnx/operators/ —
/// each operator's "Changelog"):
///
/// | crossing | operator | rewrite |
/// |---|---|---|
/// | 16 | RoiAlign | the default `coordinate_transformation_mode` became `half_pixel`: the old default is written out |
/// | 18 | ReduceMean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare | attribute `axes` → second input (an int64 initializer) |
/// | 20 | GridSample | `mode` bilinear/bicubic renamed linear/cubic |
/// | 20 | DFT | refused (`axis` moved to an input with different semantics) |
/// | 21 | GroupNormalization | refused (scale and bias changed from per group to per channel) |
///
/// Models below opset 13 are refused (Split, Squeeze, Unsqueeze, ReduceSum and Softmax changed
/// at 13 in ways that need shape information).
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
                case "RoiAlign" where crosses(16) && n.attribute("coordinate_transformation_mode") == nil:
                    n.attributes.append(("coordinate_transformation_mode", .string(Array("output_half_pixel".utf8))))
                case let op where reduceOps.contains(op) && crosses(18):
                    if let at = n.attributes.firstIndex(where: { $0.name == "axes" }) {
                        guard case .ints(let axes) = n.attributes[at].value else {
                            throw KilnError(.invalidInput, path: here + ["attribute \"axes\""], "expected a list of ints")
                        }
                        let base = (n.name.isEmpty ? (n.outputs.first ?? "reduce") : n.name) + "_axes"
                        let t = Tensor(name: names.unique(base), dtype: .i64, shape: Shape([axes.count]), values: axes)
                        added.append(t)
                        n.attributes.remove(at: at)
                        n.inputs = [n.inputs.first ?? "", t.name]
                    }
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
        }
        try upgrade(&graph, path: ["graph"])
        tensors += added
        graph.initializerNames += added.map(\.name)
    }
}
