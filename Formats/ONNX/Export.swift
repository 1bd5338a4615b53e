import Foundation
import KilnCore
import SwiftProtobuf

/// Builds the `ModelProto` of a Kiln ``Model``: the graph with its subgraphs, functions, opset
/// imports, metadata and what the import kept in `formatExtras["onnx"]`. Quantized tensors
/// become Q/DQ first (``QDQExport``).
///
/// Main-graph initializers are left without payload when the writer streams them
/// (``Placement/streamed``): their protos carry dims, type and name only, and ``streamed``
/// lists the tensors whose bytes the writer appends.
final class Exporter {
    /// Where tensor payloads go.
    enum Placement {
        /// Inside the .onnx; the writer streams main-graph initializer bytes itself.
        case streamed
        /// Initializers of at least `threshold` bytes go to the external data file.
        case external(ExternalDataWriter, threshold: Int)
    }

    let model: Model
    let placement: Placement
    let progress: (Int) -> Void
    /// Main-graph initializers whose payload the writer must append, by index in `graph.initializer`.
    private(set) var streamed: [Int: Tensor] = [:]
    private var byName: [String: Tensor] = [:]
    private var dtypesUsed = Set<DType>()
    static let format = Importer.format

    init(model: Model, placement: Placement, progress: @escaping (Int) -> Void = { _ in }) {
        self.model = model
        self.placement = placement
        self.progress = progress
    }

    /// The whole model.
    /// - Throws: `KilnError(.unsupported)` for what ONNX (or this writer) cannot express, naming the
    ///   tensor or node; errors of the tensors' storage.
    func build() throws -> Onnx_ModelProto {
        guard var graph = model.graph else {
            throw KilnError(.unsupported, path: ["graph"],
                            "the model has no graph (weights only); ONNX needs one — build it from an architecture template first")
        }
        var tensors = model.tensors
        var opsets = model.opsetImports.isEmpty ? ["": Layout.defaultOpset] : model.opsetImports
        if let ai = opsets.removeValue(forKey: "ai.onnx") { opsets[""] = max(opsets[""] ?? 0, ai) }
        if KilnLowering.isNeeded(graph) {
            let target = max(opsets[""] ?? 0, KilnLowering.minimumOpset)
            try OpsetUpgrade.raise(graph: &graph, tensors: &tensors, from: opsets[""] ?? target, to: target)
            try KilnLowering.lower(graph: &graph, tensors: &tensors, opset: target)
            opsets[""] = target
            opsets.removeValue(forKey: KilnLowering.domain)
        }
        let required = try QDQExport.expand(graph: &graph, tensors: &tensors)
        if required > (opsets[""] ?? 0) {
            try OpsetUpgrade.raise(graph: &graph, tensors: &tensors, from: opsets[""] ?? 0, to: required)
            opsets[""] = required
        }
        byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for domain in Exporter.domains(graph, functions: model.functions) where opsets[domain] == nil && !Layout.isDefaultDomain(domain) {
            opsets[domain] = 1
        }

        var proto = Onnx_ModelProto()
        if let extras = model.formatExtras[Exporter.format] { proto = try Onnx_ModelProto(serializedBytes: extras) }
        let sourceIR = proto.hasIrVersion ? Int(proto.irVersion) : 0
        proto.producerName = "kiln"
        proto.producerVersion = ONNXPlugin.version
        proto.opsetImport = opsets.keys.sorted().map { d in
            var o = Onnx_OperatorSetIdProto()
            o.domain = d
            o.version = Int64(opsets[d]!)
            return o
        }
        proto.metadataProps = model.metadata.keys.sorted().map { entry($0, model.metadata[$0]!) }
        proto.functions = try model.functions.map { try function($0) }

        let owned = Exporter.subgraphInitializers(graph)
        let mainTensors = tensors.filter { !owned.contains($0.name) }
        proto.graph = try graphProto(graph, path: ["graph"], mainInitializers: mainTensors)
        let typeIR = dtypesUsed.map { Layout.irVersion(for: $0) }.max() ?? 3
        proto.irVersion = Int64(max(sourceIR, Layout.irVersion(forOpset: opsets[""] ?? Layout.defaultOpset), typeIR))
        return proto
    }

    // MARK: - Graph

    func graphProto(_ g: Graph, path: [String], mainInitializers: [Tensor]?) throws -> Onnx_GraphProto {
        var proto = Onnx_GraphProto()
        if let extras = g.formatExtras[Exporter.format] { proto = try Onnx_GraphProto(serializedBytes: extras) }
        let foreign = proto.initializer
        proto.name = g.name
        proto.node = try g.nodes.enumerated().map { i, n in
            try node(n, path: path + ["node \"\(n.name.isEmpty ? "#\(i)" : n.name)\" (\(n.opType))"])
        }
        var initializers: [Onnx_TensorProto] = []
        if let mainInitializers {
            for t in mainInitializers {
                initializers.append(try initializer(t, path: path, stream: true, index: initializers.count))
            }
        } else {
            for name in g.initializerNames {
                guard let t = byName[name] else {
                    throw KilnError(.invalidInput, path: path + ["initializer \"\(name)\""],
                                    "listed as an initializer but the model has no such tensor")
                }
                initializers.append(try initializer(t, path: path, stream: false, index: initializers.count))
            }
        }
        proto.initializer = initializers + foreign
        proto.input = try g.inputs.map { try valueInfo($0) }
        proto.output = try g.outputs.map { try valueInfo($0) }
        proto.valueInfo = try g.valueInfo.map { try valueInfo($0) }
        return proto
    }

    /// An initializer: streamed by the writer, written to external data, or with its bytes inline.
    private func initializer(_ t: Tensor, path: [String], stream: Bool, index: Int) throws -> Onnx_TensorProto {
        guard t.quant == nil else {
            throw KilnError(.unsupported, path: path + ["initializer \"\(t.name)\""],
                            "quantized tensors inside subgraphs are not exported (only main-graph weights get DequantizeLinear)")
        }
        var proto = header(t)
        switch placement {
        case .external(let sink, let threshold) where t.byteCount >= threshold:
            proto.externalData = try sink.append(t, progress: progress)
            proto.dataLocation = .external
        case .streamed where stream:
            streamed[index] = t
        default:
            proto.rawData = try payload(t)
        }
        return proto
    }

    /// dims, data_type and name of `t` (no payload).
    func header(_ t: Tensor) -> Onnx_TensorProto {
        dtypesUsed.insert(t.dtype)
        var proto = Onnx_TensorProto()
        proto.dims = t.shape.dims.map { Int64($0) }
        proto.dataType = Int32(t.dtype.traits.onnx)
        if !t.name.isEmpty { proto.name = t.name }
        return proto
    }

    func payload(_ t: Tensor) throws -> Data {
        do {
            return try t.withBytes { Data($0) }
        } catch let error as KilnError {
            throw error.adding(context: "tensor \"\(t.name)\"")
        }
    }

    // MARK: - Nodes and attributes

    func node(_ n: Node, path: [String]) throws -> Onnx_NodeProto {
        var proto = Onnx_NodeProto()
        if let extras = n.formatExtras[Exporter.format] { proto = try Onnx_NodeProto(serializedBytes: extras) }
        proto.input = n.inputs
        proto.output = n.outputs
        if !n.name.isEmpty { proto.name = n.name }
        proto.opType = n.opType
        if !n.domain.isEmpty { proto.domain = n.domain }
        proto.attribute = try n.attributes.map { try attribute($0.name, $0.value, path: path + ["attribute \"\($0.name)\""]) }
        return proto
    }

    func attribute(_ name: String, _ value: AttributeValue, path: [String]) throws -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        switch value {
        case .int(let v): a.type = .int; a.i = v
        case .float(let v): a.type = .float; a.f = v
        case .string(let v): a.type = .string; a.s = Data(v)
        case .ints(let v): a.type = .ints; a.ints = v
        case .floats(let v): a.type = .floats; a.floats = v
        case .strings(let v): a.type = .strings; a.strings = v.map { Data($0) }
        case .tensor(let t):
            guard t.quant == nil else {
                throw KilnError(.unsupported, path: path, "a quantized tensor in an attribute cannot be exported; dequantize it first")
            }
            a.type = .tensor
            a.t = header(t)
            a.t.rawData = try payload(t)
        case .graph(let g):
            a.type = .graph
            a.g = try graphProto(g, path: path + ["g"], mainInitializers: nil)
        case .graphs(let gs):
            a.type = .graphs
            a.graphs = try gs.enumerated().map { i, g in try graphProto(g, path: path + ["graphs[\(i)]"], mainInitializers: nil) }
        case .opaque(_, let bytes):
            a = try Onnx_AttributeProto(serializedBytes: bytes)
        @unknown default:
            throw KilnError(.unsupported, path: path, "attribute kind unknown to this writer")
        }
        a.name = name
        return a
    }

    // MARK: - Types

    func valueInfo(_ v: ValueInfo) throws -> Onnx_ValueInfoProto {
        var proto = Onnx_ValueInfoProto()
        if let extras = v.formatExtras[Exporter.format] { proto = try Onnx_ValueInfoProto(serializedBytes: extras) }
        proto.name = v.name
        if let dtype = v.dtype { dtypesUsed.insert(dtype) }
        guard v.dtype != nil || v.dims != nil else { return proto }
        var t = Onnx_TypeProto.Tensor()
        t.elemType = Int32(v.dtype?.traits.onnx ?? 0)
        if let dims = v.dims {
            t.shape = Onnx_TensorShapeProto()
            t.shape.dim = dims.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                switch d {
                case .fixed(let n): dim.dimValue = Int64(n)
                case .symbolic(let s): dim.dimParam = s
                case .unknown: break
                @unknown default: break
                }
                return dim
            }
        }
        if proto.hasType, case .tensorType(let kept)? = proto.type.value {
            // Keep the source's type (with its denotations) unless dtype or dims changed since.
            var bare = kept
            bare.shape.dim = bare.shape.dim.map { var d = $0; d.clearDenotation(); return d }
            if v.dtype == nil || (bare.elemType == t.elemType && bare.hasShape == t.hasShape && bare.shape.dim == t.shape.dim) {
                return proto
            }
        } else if proto.hasType, v.dtype == nil {
            return proto
        }
        proto.type = Onnx_TypeProto()
        proto.type.tensorType = t
        return proto
    }

    // MARK: - Functions

    func function(_ f: GraphFunction) throws -> Onnx_FunctionProto {
        var proto = Onnx_FunctionProto()
        if let extras = f.formatExtras[Exporter.format] { proto = try Onnx_FunctionProto(serializedBytes: extras) }
        let path = ["function \"\(f.name)\""]
        proto.name = f.name
        proto.domain = f.domain
        if !f.overload.isEmpty { proto.overload = f.overload }
        proto.input = f.inputs
        proto.output = f.outputs
        proto.attribute = f.attributeNames
        proto.attributeProto = try f.attributeDefaults.map { try attribute($0.name, $0.value, path: path + ["attribute \"\($0.name)\""]) }
        proto.node = try f.nodes.enumerated().map { i, n in try node(n, path: path + ["node #\(i) (\(n.opType))"]) }
        proto.opsetImport = f.opsetImports.keys.sorted().map { d in
            var o = Onnx_OperatorSetIdProto()
            o.domain = d
            o.version = Int64(f.opsetImports[d]!)
            return o
        }
        proto.valueInfo = try f.valueInfo.map { try valueInfo($0) }
        return proto
    }

    // MARK: - Helpers

    func entry(_ key: String, _ value: String) -> Onnx_StringStringEntryProto {
        var e = Onnx_StringStringEntryProto()
        e.key = key
        e.value = value
        return e
    }

    /// Names of initializers that belong to subgraphs (If / Loop / Scan bodies).
    static func subgraphInitializers(_ g: Graph) -> Set<String> {
        var names = Set<String>()
        func visit(_ g: Graph, top: Bool) {
            if !top { names.formUnion(g.initializerNames) }
            for n in g.nodes {
                for (_, a) in n.attributes {
                    if case .graph(let sub) = a { visit(sub, top: false) }
                    if case .graphs(let subs) = a { subs.forEach { visit($0, top: false) } }
                }
            }
        }
        visit(g, top: true)
        return names
    }

    /// Every operator domain used by the graph, its subgraphs and the functions (and the functions' own).
    static func domains(_ g: Graph, functions: [GraphFunction]) -> Set<String> {
        var result = Set<String>()
        func visit(_ nodes: [Node]) {
            for n in nodes {
                result.insert(n.domain)
                for (_, a) in n.attributes {
                    if case .graph(let sub) = a { visit(sub.nodes) }
                    if case .graphs(let subs) = a { subs.forEach { visit($0.nodes) } }
                }
            }
        }
        visit(g.nodes)
        for f in functions { result.insert(f.domain) }
        return result
    }
}
