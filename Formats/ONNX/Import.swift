import Foundation
import KilnCore
import SwiftProtobuf

/// Builds a Kiln ``Model`` from a decoded `ModelProto`: graph (inputs, outputs, value_info with
/// symbolic dims, nodes with every attribute, subgraphs), initializers as lazy tensors, functions,
/// opset imports and metadata. What Kiln does not model is kept in `formatExtras["onnx"]`.
final class Importer {
    let path: String
    let decoder: TensorDecoder
    let model: Model
    static let format = "onnx"

    init(path: String, decoder: TensorDecoder) throws {
        self.path = path
        self.decoder = decoder
        self.model = try Model(sourcePath: path)
    }

    func importModel(_ proto: Onnx_ModelProto) throws -> Model {
        guard proto.hasIrVersion else {
            throw KilnError(.invalidInput, file: path, path: ["ir_version"], "missing: this protobuf is not an ONNX model")
        }
        guard proto.irVersion >= 3 else {
            throw KilnError(.unsupported, file: path, path: ["ir_version"],
                            "IR version \(proto.irVersion) is older than 3 (2017) and not supported")
        }
        guard proto.irVersion <= Int64(Limits.maxIRVersion) else {
            throw KilnError(.unsupported, file: path, path: ["ir_version"],
                            "IR version \(proto.irVersion) is newer than the newest Kiln reads (\(Limits.maxIRVersion)); "
                                + "update Tools/proto/onnx.proto")
        }
        guard proto.hasGraph else {
            throw KilnError(.invalidInput, file: path, path: ["graph"], "missing: the model has no graph")
        }
        model.opsetImports = try opsets(proto.opsetImport, path: ["opset_import"])
        for entry in proto.metadataProps { model.metadata[entry.key] = entry.value }
        var extras = Onnx_ModelProto()
        extras.irVersion = proto.irVersion
        if proto.hasProducerName { extras.producerName = proto.producerName }
        if proto.hasProducerVersion { extras.producerVersion = proto.producerVersion }
        if proto.hasDomain { extras.domain = proto.domain }
        if proto.hasModelVersion { extras.modelVersion = proto.modelVersion }
        if proto.hasDocString { extras.docString = proto.docString }
        extras.trainingInfo = proto.trainingInfo
        extras.configuration = proto.configuration
        extras.unknownFields = proto.unknownFields
        model.formatExtras[Importer.format] = try extras.serializedBytes()
        model.functions = try proto.functions.enumerated().map { i, f in
            try function(f, path: ["functions[\(i)] \"\(f.name)\""])
        }
        model.graph = try graph(proto.graph, path: ["graph"], outer: [], depth: 0)
        let opsets = model.opsetImports.sorted { $0.key < $1.key }.map { "\($0.key.isEmpty ? "ai.onnx" : $0.key) \($0.value)" }
        model.provenance.append("read ONNX \(path) (IR \(proto.irVersion), opsets \(opsets.joined(separator: ", ")))")
        return model
    }

    func opsets(_ list: [Onnx_OperatorSetIdProto], path: [String]) throws -> [String: Int] {
        var result: [String: Int] = [:]
        for (i, o) in list.enumerated() {
            guard o.version >= 1, o.version <= Int64(Int32.max) else {
                throw KilnError.mismatch(file: self.path, path: path + ["[\(i)]", "version"], expected: "a positive opset version",
                                         found: "\(o.version)")
            }
            result[o.domain] = Int(o.version)
        }
        return result
    }

    /// A graph (the main one or a subgraph). `outer` holds the names visible from enclosing graphs.
    func graph(_ g: Onnx_GraphProto, path: [String], outer: Set<String>, depth: Int) throws -> Graph {
        guard depth <= Limits.maxGraphNesting else {
            throw KilnError(.invalidInput, file: self.path, path: path, "graphs nested more than \(Limits.maxGraphNesting) deep")
        }
        var result = Graph(name: g.name)
        var extras = Onnx_GraphProto()
        if g.hasDocString { extras.docString = g.docString }
        extras.sparseInitializer = g.sparseInitializer
        extras.quantizationAnnotation = g.quantizationAnnotation
        extras.metadataProps = g.metadataProps
        extras.unknownFields = g.unknownFields
        var known = outer
        for (i, t) in g.initializer.enumerated() {
            let here = path + ["initializer \"\(t.name)\""]
            guard t.hasName, !t.name.isEmpty else {
                throw KilnError(.invalidInput, file: self.path, path: path + ["initializer[\(i)]", "name"],
                                "missing: initializers must be named")
            }
            switch try decoder.decode(t, name: t.name, path: here) {
            case .tensor(let tensor):
                guard model[t.name] == nil else {
                    throw KilnError(.invalidInput, file: self.path, path: here, "an initializer of this name is already defined")
                }
                try model.add(tensor)
                result.initializerNames.append(t.name)
            case .foreign(let proto):
                extras.initializer.append(proto)
            }
            known.insert(t.name)
        }
        for s in g.sparseInitializer { known.insert(s.values.name) }
        result.inputs = try g.input.enumerated().map { i, v in try valueInfo(v, path: path + ["input[\(i)]"]) }
        for v in g.input { known.insert(v.name) }
        result.outputs = try g.output.enumerated().map { i, v in try valueInfo(v, path: path + ["output[\(i)]"]) }
        result.valueInfo = try g.valueInfo.enumerated().map { i, v in try valueInfo(v, path: path + ["value_info[\(i)]"]) }
        let producers = Dictionary(g.node.enumerated().flatMap { i, n in n.output.map { ($0, i) } }, uniquingKeysWith: { a, _ in a })
        for (i, n) in g.node.enumerated() {
            let here = path + ["node \"\(n.name.isEmpty ? "#\(i)" : n.name)\" (\(n.opType))"]
            try checkInputs(n, known: known, producers: producers, nodes: g.node, path: here)
            result.nodes.append(try node(n, path: here, outer: known, depth: depth))
            for o in n.output where !o.isEmpty { known.insert(o) }
        }
        for (i, o) in g.output.enumerated() where !known.contains(o.name) {
            throw KilnError(.invalidInput, file: self.path, path: path + ["output[\(i)]"],
                            "\"\(o.name)\" names no value (not an input, an initializer or a node output)")
        }
        let extraBytes: [UInt8] = try extras.serializedBytes()
        if !extraBytes.isEmpty { result.formatExtras[Importer.format] = extraBytes }
        return result
    }

    /// Every input must name a value defined before the node (graph input, initializer, earlier node
    /// output, or a value of an enclosing graph).
    func checkInputs(_ n: Onnx_NodeProto, known: Set<String>, producers: [String: Int], nodes: [Onnx_NodeProto],
                     path: [String]) throws {
        for (k, input) in n.input.enumerated() where !input.isEmpty && !known.contains(input) {
            if let j = producers[input] {
                let later = nodes[j].name.isEmpty ? "#\(j)" : nodes[j].name
                throw KilnError(.invalidInput, file: self.path, path: path + ["input \(k)"],
                                "\"\(input)\" is produced by a later node \"\(later)\" (a cycle, or nodes not in topological order)")
            }
            throw KilnError(.invalidInput, file: self.path, path: path + ["input \(k)"],
                            "\"\(input)\" names no value (not a graph input, an initializer or the output of an earlier node)")
        }
    }

    func node(_ n: Onnx_NodeProto, path: [String], outer: Set<String>, depth: Int) throws -> Node {
        var result = Node(name: n.name, opType: n.opType, domain: n.domain, inputs: n.input, outputs: n.output)
        for a in n.attribute {
            result.attributes.append((a.name, try attribute(a, path: path + ["attribute \"\(a.name)\""], outer: outer, depth: depth)))
        }
        var extras = Onnx_NodeProto()
        if n.hasDocString { extras.docString = n.docString }
        if n.hasOverload { extras.overload = n.overload }
        extras.metadataProps = n.metadataProps
        extras.deviceConfigurations = n.deviceConfigurations
        extras.unknownFields = n.unknownFields
        let extraBytes: [UInt8] = try extras.serializedBytes()
        if !extraBytes.isEmpty { result.formatExtras[Importer.format] = extraBytes }
        return result
    }

    func attribute(_ a: Onnx_AttributeProto, path: [String], outer: Set<String>, depth: Int) throws -> AttributeValue {
        typealias T = Onnx_AttributeProto.AttributeType
        func opaque() throws -> AttributeValue {
            let kept = TensorDecoder.restoringInlineData(a, file: decoder.file)
            return .opaque(kind: a.type.rawValue, bytes: try kept.serializedBytes())
        }
        if a.hasRefAttrName || a.hasDocString || !a.unknownFields.data.isEmpty { return try opaque() }
        switch a.hasType ? a.type : inferredType(a) {
        case .float: return .float(a.f)
        case .int: return .int(a.i)
        case .string: return .string([UInt8](a.s))
        case .floats: return .floats(a.floats)
        case .ints: return .ints(a.ints)
        case .strings: return .strings(a.strings.map { [UInt8]($0) })
        case .tensor:
            guard case .tensor(let t) = try decoder.decode(a.t, name: a.t.name, path: path + ["t"]) else { return try opaque() }
            return .tensor(t)
        case .graph:
            return .graph(try graph(a.g, path: path + ["g"], outer: outer, depth: depth + 1))
        case .graphs:
            return .graphs(try a.graphs.enumerated().map { i, g in
                try graph(g, path: path + ["graphs[\(i)]"], outer: outer, depth: depth + 1)
            })
        default:
            // TENSORS, SPARSE_TENSOR(S), TYPE_PROTO(S), UNDEFINED: kept as encoded.
            if a.type == .tensors {
                for (i, t) in a.tensors.enumerated() { _ = try decoder.decode(t, name: t.name, path: path + ["tensors[\(i)]"]) }
            }
            return try opaque()
        }
    }

    /// IR version 1 files may leave `type` unset; it follows from the field that holds the value.
    func inferredType(_ a: Onnx_AttributeProto) -> Onnx_AttributeProto.AttributeType {
        if a.hasF { return .float }
        if a.hasI { return .int }
        if a.hasS { return .string }
        if a.hasT { return .tensor }
        if a.hasG { return .graph }
        if !a.floats.isEmpty { return .floats }
        if !a.ints.isEmpty { return .ints }
        if !a.strings.isEmpty { return .strings }
        if !a.graphs.isEmpty { return .graphs }
        return .undefined
    }

    /// A typed value. Tensor types become dtype + dims; anything more (other types, denotations,
    /// element types without a DType, doc strings) is kept in `formatExtras`.
    func valueInfo(_ v: Onnx_ValueInfoProto, path: [String]) throws -> ValueInfo {
        var result = ValueInfo(name: v.name)
        var extras = Onnx_ValueInfoProto()
        if v.hasDocString { extras.docString = v.docString }
        extras.metadataProps = v.metadataProps
        extras.unknownFields = v.unknownFields
        if v.hasType {
            var modeled = false
            if case .tensorType(let t)? = v.type.value {
                let dtype = DType(onnx: Int(t.elemType))
                result.dtype = t.elemType == 0 ? nil : dtype
                if t.hasShape {
                    guard t.shape.dim.count <= Limits.maxRank else {
                        throw KilnError.mismatch(file: self.path, path: path + ["type", "shape"],
                                                 expected: "at most \(Limits.maxRank) dimensions",
                                                 found: "\(t.shape.dim.count)")
                    }
                    result.dims = t.shape.dim.map { d in
                        switch d.value {
                        case .dimValue(let n)?: return .fixed(Int(truncatingIfNeeded: n))
                        case .dimParam(let s)?: return .symbolic(s)
                        case nil: return .unknown
                        }
                    }
                }
                let plain = !v.type.hasDenotation && t.shape.dim.allSatisfy { !$0.hasDenotation }
                    && t.unknownFields.data.isEmpty && t.shape.unknownFields.data.isEmpty && v.type.unknownFields.data.isEmpty
                modeled = plain && (t.elemType == 0 || dtype != nil)
            }
            if !modeled { extras.type = v.type }
        }
        let extraBytes: [UInt8] = try extras.serializedBytes()
        if !extraBytes.isEmpty { result.formatExtras[Importer.format] = extraBytes }
        return result
    }

    func function(_ f: Onnx_FunctionProto, path: [String]) throws -> GraphFunction {
        var known = Set(f.input)
        var nodes: [Node] = []
        let producers = Dictionary(f.node.enumerated().flatMap { i, n in n.output.map { ($0, i) } }, uniquingKeysWith: { a, _ in a })
        for (i, n) in f.node.enumerated() {
            let here = path + ["node \"\(n.name.isEmpty ? "#\(i)" : n.name)\" (\(n.opType))"]
            try checkInputs(n, known: known, producers: producers, nodes: f.node, path: here)
            nodes.append(try node(n, path: here, outer: known, depth: 1))
            for o in n.output where !o.isEmpty { known.insert(o) }
        }
        var result = GraphFunction(
            name: f.name, domain: f.domain, overload: f.overload, inputs: f.input, outputs: f.output,
            attributeNames: f.attribute,
            attributeDefaults: try f.attributeProto.map { a in
                (a.name, try attribute(a, path: path + ["attribute_proto \"\(a.name)\""], outer: [], depth: 1))
            },
            nodes: nodes, opsetImports: try opsets(f.opsetImport, path: path + ["opset_import"]),
            valueInfo: try f.valueInfo.enumerated().map { i, v in try valueInfo(v, path: path + ["value_info[\(i)]"]) })
        var extras = Onnx_FunctionProto()
        if f.hasDocString { extras.docString = f.docString }
        extras.metadataProps = f.metadataProps
        extras.unknownFields = f.unknownFields
        let extraBytes: [UInt8] = try extras.serializedBytes()
        if !extraBytes.isEmpty { result.formatExtras[Importer.format] = extraBytes }
        return result
    }
}
