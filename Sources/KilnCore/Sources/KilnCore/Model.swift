/// What quantization was applied to a model, as recorded for writers and `kiln inspect`.
public struct QuantizationRecord: Sendable, Equatable {
    /// Algorithm name as TensorRT-LLM spells it (`FP8`, `W4A16_AWQ`, `W8A8_SQ_PER_CHANNEL`, ...).
    public var algorithm: String
    /// KV-cache quantization (`FP8`, `INT8`) if any.
    public var kvCacheAlgorithm: String?
    /// Group size for block-wise formats.
    public var groupSize: Int?
    /// Module names or patterns left in high precision.
    public var excludedModules: [String]
    /// Structured sparsity applied to the weights ("2:4"), if any.
    public var sparsity: String?

    public init(algorithm: String, kvCacheAlgorithm: String? = nil, groupSize: Int? = nil,
                excludedModules: [String] = [], sparsity: String? = nil) {
        self.algorithm = algorithm
        self.kvCacheAlgorithm = kvCacheAlgorithm
        self.groupSize = groupSize
        self.excludedModules = excludedModules
        self.sparsity = sparsity
    }
}

/// A model in Kiln's IR: weights by name (in a stable order), an optional graph,
/// the architecture config, metadata and provenance.
public final class Model: @unchecked Sendable {
    /// Weights in their source order (writers keep it; same input gives the same bytes).
    public private(set) var tensors: [Tensor]
    private var index: [String: Int]
    /// The computation, when the source format carries one (ONNX) or a template built it.
    public var graph: Graph?
    /// The parsed Hugging Face `config.json` (or equivalent), when known.
    public var config: JSONValue?
    /// Free-form string metadata (safetensors `__metadata__`, ONNX metadata_props).
    public var metadata: [String: String]
    public var quantization: QuantizationRecord?
    /// Where this model came from and what was done to it, one line per step.
    public var provenance: [String]
    /// The folder or file it was read from, if any (tokenizer files are found relative to it).
    public var sourcePath: String?
    /// Side files that travel with the weights (`config.json`, `tokenizer.json`, ...): output
    /// file name → source path. Folder writers copy them unless they write their own version.
    public var attachments: [String: String] = [:]
    /// Operator set versions the graph is written against: domain ("" = ONNX, "kiln", ...) → version.
    /// Empty when unknown (a writer then picks its default).
    public var opsetImports: [String: Int] = [:]
    /// Model-local functions the graph's nodes may call.
    public var functions: [GraphFunction] = []
    /// Parts of the source file's description that Kiln does not model, by format name: for
    /// `"onnx"`, an encoded `ModelProto` holding only those fields (IR version, producer, domain,
    /// model version, doc string, training info). A writer of the same format restores them;
    /// other writers ignore them.
    public var formatExtras: [String: [UInt8]] = [:]

    public init(tensors: [Tensor] = [], graph: Graph? = nil, config: JSONValue? = nil, metadata: [String: String] = [:],
                quantization: QuantizationRecord? = nil, provenance: [String] = [], sourcePath: String? = nil) throws {
        self.tensors = []
        self.index = [:]
        self.graph = graph
        self.config = config
        self.metadata = metadata
        self.quantization = quantization
        self.provenance = provenance
        self.sourcePath = sourcePath
        for t in tensors { try add(t) }
    }

    /// The tensor called `name`, if any.
    public subscript(name: String) -> Tensor? {
        index[name].map { tensors[$0] }
    }

    /// Names of all tensors, in order.
    public var tensorNames: [String] { tensors.map(\.name) }

    /// Append a tensor.
    /// - Throws: `KilnError(.invalidInput)` if the name is already taken.
    public func add(_ tensor: Tensor) throws {
        guard index[tensor.name] == nil else {
            throw KilnError(.invalidInput, path: ["tensor \"\(tensor.name)\""], "duplicate tensor name")
        }
        index[tensor.name] = tensors.count
        tensors.append(tensor)
    }

    /// Replace the tensor of the same name (or append it if new).
    public func set(_ tensor: Tensor) {
        if let i = index[tensor.name] {
            tensors[i] = tensor
        } else {
            index[tensor.name] = tensors.count
            tensors.append(tensor)
        }
    }

    /// Remove the tensor called `name`, if present.
    public func remove(_ name: String) {
        guard let i = index.removeValue(forKey: name) else { return }
        tensors.remove(at: i)
        for j in i..<tensors.count { index[tensors[j].name] = j }
    }

    /// Total number of elements over all tensors (quantization scales included).
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }
    /// Total payload bytes.
    public var byteCount: Int { tensors.reduce(0) { $0 + $1.byteCount } }
}
