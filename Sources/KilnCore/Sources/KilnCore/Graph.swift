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
    /// Parts of the source file's description that Kiln does not model, by format name: for
    /// `"onnx"`, an encoded `ValueInfoProto` holding only those fields (doc string, denotations,
    /// a sequence / map / optional / sparse type, for which `dtype` and `dims` are nil).
    /// A writer of the same format restores them; other writers ignore them.
    public var formatExtras: [String: [UInt8]] = [:]

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
    /// ONNX: `kind` is the `AttributeProto.AttributeType` and `bytes` the whole encoded
    /// `AttributeProto` (sparse tensors, type protos, `ref_attr_name` references in functions).
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
    /// Parts of the source file's description that Kiln does not model, by format name: for
    /// `"onnx"`, an encoded `NodeProto` holding only those fields (doc string, overload, metadata_props).
    /// A writer of the same format restores them; other writers ignore them.
    public var formatExtras: [String: [UInt8]] = [:]

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
    /// Parts of the source file's description that Kiln does not model, by format name: for
    /// `"onnx"`, an encoded `GraphProto` holding only those fields (doc string, sparse initializers,
    /// quantization annotations, metadata_props, initializers of element types without a DType:
    /// strings, complex).
    /// A writer of the same format restores them; other writers ignore them.
    public var formatExtras: [String: [UInt8]] = [:]

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

/// A model-local function (ONNX `FunctionProto`): a reusable body that nodes call by
/// `domain` + `opType` (+ `overload`). Kept so an import/export round trip loses nothing.
public struct GraphFunction: @unchecked Sendable {
    public var name: String
    public var domain: String
    /// Distinguishes functions of the same name and domain ("" = none).
    public var overload: String
    /// Formal input and output names, in order.
    public var inputs: [String]
    public var outputs: [String]
    /// Attribute parameters without a default value.
    public var attributeNames: [String]
    /// Attribute parameters with their default values.
    public var attributeDefaults: [(name: String, value: AttributeValue)]
    /// The body in topological order; attributes may refer to the parameters.
    public var nodes: [Node]
    /// Operator set versions the body is written against (domain → version; "" = ONNX).
    public var opsetImports: [String: Int]
    /// Type information of the body's values, when known.
    public var valueInfo: [ValueInfo]
    /// Parts of the source file's description that Kiln does not model, by format name: for
    /// `"onnx"`, an encoded `FunctionProto` holding only those fields (doc string, metadata_props).
    /// A writer of the same format restores them; other writers ignore them.
    public var formatExtras: [String: [UInt8]] = [:]

    public init(name: String, domain: String, overload: String = "", inputs: [String], outputs: [String],
                attributeNames: [String] = [], attributeDefaults: [(name: String, value: AttributeValue)] = [],
                nodes: [Node], opsetImports: [String: Int] = [:], valueInfo: [ValueInfo] = []) {
        self.name = name
        self.domain = domain
        self.overload = overload
        self.inputs = inputs
        self.outputs = outputs
        self.attributeNames = attributeNames
        self.attributeDefaults = attributeDefaults
        self.nodes = nodes
        self.opsetImports = opsetImports
        self.valueInfo = valueInfo
    }
}
