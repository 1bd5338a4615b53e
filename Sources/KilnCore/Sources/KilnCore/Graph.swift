/// A dimension of a graph value: fixed, named (symbolic) or unknown.
public enum Dim: Hashable, Sendable, CustomStringConvertible {
    case fixed(Int)
    case symbolic(String)
    case unknown

    public var description: String {
        switch self {
        case .fixed(let n): return String(n)
        case .symbolic(let s): return s
        case .unknown: return "?"
        }
    }
}

/// A typed value flowing between nodes (graph input, output or intermediate).
public struct ValueInfo: Hashable, Sendable {
    public var name: String
    public var dtype: DType?
    public var dims: [Dim]?

    public init(name: String, dtype: DType? = nil, dims: [Dim]? = nil) {
        self.name = name
        self.dtype = dtype
        self.dims = dims
    }
}

/// A node attribute. Mirrors ONNX's AttributeProto so an import/export round trip loses nothing.
public indirect enum AttributeValue: @unchecked Sendable {
    case int(Int64)
    case float(Float)
    case string([UInt8])
    case ints([Int64])
    case floats([Float])
    case strings([[UInt8]])
    case tensor(Tensor)
    case graph(Graph)
    case graphs([Graph])
    /// Anything Kiln does not model (kept as the encoded bytes of the source format).
    case opaque(kind: Int, bytes: [UInt8])
}

/// One operation. `opType` uses ONNX names plus Kiln ops (`kiln.Attention`, `kiln.RMSNorm`, `kiln.RoPE`, `kiln.Linear`).
public struct Node: @unchecked Sendable {
    public var name: String
    public var opType: String
    /// Operator domain ("" = ONNX default, "kiln", or anything an imported file used).
    public var domain: String
    /// Input value names ("" = optional input left out).
    public var inputs: [String]
    public var outputs: [String]
    /// Attributes in source order.
    public var attributes: [(name: String, value: AttributeValue)]

    public init(name: String, opType: String, domain: String = "", inputs: [String], outputs: [String],
                attributes: [(name: String, value: AttributeValue)] = []) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    /// The attribute named `key`, if present.
    public func attribute(_ key: String) -> AttributeValue? {
        attributes.first(where: { $0.name == key })?.value
    }
}

/// A dataflow graph: inputs, outputs, nodes in topological order, and constant tensors.
public struct Graph: @unchecked Sendable {
    public var name: String
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    public var nodes: [Node]
    /// Constant tensors (weights) referenced by name; the model's weight table holds the same tensors.
    public var initializerNames: [String]
    /// Type information of intermediate values, when known.
    public var valueInfo: [ValueInfo]

    public init(name: String = "main", inputs: [ValueInfo] = [], outputs: [ValueInfo] = [], nodes: [Node] = [],
                initializerNames: [String] = [], valueInfo: [ValueInfo] = []) {
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self.nodes = nodes
        self.initializerNames = initializerNames
        self.valueInfo = valueInfo
    }
}
