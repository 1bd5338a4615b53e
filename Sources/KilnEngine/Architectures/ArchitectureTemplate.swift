import Foundation
import KilnCore

/// Builds the computation of a model family from its `config.json` and weights.
///
/// A template claims the `architectures` names it understands (`LlamaForCausalLM`, ...)
/// and turns a config plus a weight table into a ``Graph`` of ONNX ops and Kiln ops
/// (``KilnOp``) that the ``Executor`` runs. Templates validate before they build: a
/// config field that is missing or inconsistent, or a weight that is missing or has the
/// wrong shape, is a `KilnError(.invalidInput)` naming the field or tensor.
public protocol ArchitectureTemplate {
    /// The `architectures` entries of config.json this template handles.
    static var architectures: [String] { get }

    /// The graph of the model described by `config`, reading weight names and shapes from `weights`.
    /// - Parameters:
    ///   - config: the parsed config.json.
    ///   - weights: the model whose tensors the graph refers to by name (payloads are not read).
    /// - Throws: `KilnError(.invalidInput, file: "config.json", path: [field])` for a bad config;
    ///   `KilnError(.invalidInput, path: ["tensor \"NAME\""])` for a missing or mis-shaped weight;
    ///   `KilnError(.unsupported)` for valid configs asking for something not implemented.
    static func build(config: JSONValue, weights: Model) throws -> Graph
}

/// Names of the Kiln operators (domain `kiln`); everything else in a template graph is ONNX.
///
/// ```
/// kiln.RMSNorm    (x, weight)                 y = x / sqrt(mean(x²) + epsilon) · weight     attr epsilon
/// kiln.Linear     (x, weight[out,in], bias?)  y = x · weightᵀ + bias                        (HF layout; attr weight_layout
///                                             "in_out": weight stored [in, out], GPT-2's Conv1D)
/// kiln.RoPE       (x, position_ids)           rotary embedding, HF half-split rotate_half   attrs: RopeParameters + num_heads, head_dim
/// kiln.Attention  (q, k, v, attention_mask?)  softmax(q·kᵀ·scale + mask)·v per head, GQA    attrs num_heads, num_kv_heads, head_dim, scale, causal, sliding_window
///                 (qkv, attention_mask?)      one input: fused [q | k | v] columns (GPT-2's c_attn)
/// kiln.Gelu       (x)                         0.5·x·(1 + erf(x/√2))                         attr approximate "none" (default)
///                                             0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))    attr approximate "tanh" (gelu_new)
/// kiln.FirstToken (x)                         row 0 of every sequence: [batch·seq, F] → [batch, F] (BERT's pooler)
/// ```
/// Activations are `[batch·seq, features]` row-major; heads are consecutive `head_dim` slices of a row.
/// `attention_mask` (int64 `[batch, seq]`, 1 = real token) hides padded keys; the executor takes it
/// from the sequence lengths (right padding). ONNX `LayerNormalization` (last axis) is used as is.
public enum KilnOp {
    /// The operator domain of Kiln ops.
    public static let domain = "kiln"
    /// `kiln.RMSNorm`.
    public static let rmsNorm = "RMSNorm"
    /// `kiln.Linear`.
    public static let linear = "Linear"
    /// `kiln.RoPE`.
    public static let rope = "RoPE"
    /// `kiln.Attention`.
    public static let attention = "Attention"
    /// `kiln.Gelu`.
    public static let gelu = "Gelu"
    /// `kiln.FirstToken`.
    public static let firstToken = "FirstToken"

    /// The op of `node` as one string: `kiln.RMSNorm` for Kiln ops, `Add` for ONNX ops.
    /// Accepts both `(domain "kiln", opType "RMSNorm")` and an opType already spelled `kiln.RMSNorm`.
    public static func qualifiedName(of node: Node) -> String {
        if node.domain.isEmpty || node.domain == "ai.onnx" { return node.opType }
        return node.domain + "." + node.opType
    }
}

/// A template as the registry holds it: the names it claims and how it builds a graph.
/// Built-in templates are ``ArchitectureTemplate`` types; a host can also register a builder a
/// plugin provides (plugins do not link KilnEngine) with ``Architectures/register(architectures:origin:build:)``.
public struct RegisteredTemplate: @unchecked Sendable {
    /// The `architectures` names it claims.
    public let architectures: [String]
    /// `built-in`, or the plugin that provided it.
    public let origin: String
    /// Builds the graph (see ``ArchitectureTemplate/build(config:weights:)``).
    public let build: (_ config: JSONValue, _ weights: Model) throws -> Graph
}

/// The registry of architecture templates: the built-in Llama family, GPT-2 and BERT, plus any a plugin registers.
public enum Architectures {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var registered: [RegisteredTemplate] = [
        entry(LlamaTemplate.self, origin: "built-in"), entry(GPT2Template.self, origin: "built-in"),
        entry(BertTemplate.self, origin: "built-in"),
    ]

    private static func entry(_ t: any ArchitectureTemplate.Type, origin: String) -> RegisteredTemplate {
        RegisteredTemplate(architectures: t.architectures, origin: origin, build: { try t.build(config: $0, weights: $1) })
    }

    /// Every architecture name some registered template claims, in registration order.
    public static var supported: [String] {
        lock.lock(); defer { lock.unlock() }
        return registered.flatMap { $0.architectures }
    }

    /// Add a template type. Names already claimed stay with the earlier template.
    public static func register(_ template: any ArchitectureTemplate.Type, origin: String = "built-in") {
        register(entry(template, origin: origin))
    }

    /// Add a builder for `architectures` (e.g. one a plugin provides through the host).
    public static func register(architectures: [String], origin: String,
                                build: @escaping (_ config: JSONValue, _ weights: Model) throws -> Graph) {
        register(RegisteredTemplate(architectures: architectures, origin: origin, build: build))
    }

    private static func register(_ t: RegisteredTemplate) {
        lock.lock(); defer { lock.unlock() }
        registered.append(t)
    }

    /// The template for the first name in config.json's `architectures` that some template claims.
    /// - Throws: `KilnError(.invalidInput)` when `architectures` is missing or not a list of strings;
    ///   `KilnError(.unsupported)` when no template claims any of its names (the message lists the
    ///   supported names and says that a plugin can add more).
    public static func template(for config: JSONValue) throws -> RegisteredTemplate {
        let names = try architectureNames(config)
        lock.lock()
        let all = registered
        lock.unlock()
        for name in names {
            if let t = all.first(where: { $0.architectures.contains(name) }) { return t }
        }
        let list = names.map { "\"\($0)\"" }.joined(separator: ", ")
        throw KilnError(.unsupported, file: "config.json", path: ["architectures"],
                        "no template for \(list); supported: \(supported.joined(separator: ", ")) (a plugin can register more)")
    }

    /// The graph of `model`, built by the template its config names.
    /// - Throws: `KilnError(.invalidInput)` if the model has no config; whatever ``template(for:)``
    ///   and the template's `build` throw.
    public static func graph(for model: Model) throws -> Graph {
        guard let config = model.config else {
            throw KilnError(.invalidInput, file: "config.json", "the model has no config.json, so no architecture template applies")
        }
        return try template(for: config).build(config, model)
    }

    /// Give a weights-only `model` (a Hugging Face checkpoint) the graph its template builds, and drop
    /// the tensors the graph does not read (GPT-2's `attn.bias` mask buffers), e.g. before an ONNX export.
    /// - Throws: as ``graph(for:)``.
    public static func attachGraph(to model: Model) throws {
        let graph = try self.graph(for: model)
        let used = Set(graph.initializerNames)
        for name in model.tensorNames where !used.contains(name) { model.remove(name) }
        model.graph = graph
    }

    /// The `architectures` list of a config.
    static func architectureNames(_ config: JSONValue) throws -> [String] {
        guard let value = config["architectures"] else {
            throw KilnError.mismatch(file: "config.json", path: ["architectures"], expected: "a list of architecture names", found: "no value")
        }
        guard let array = value.arrayValue, !array.isEmpty else {
            throw KilnError.mismatch(file: "config.json", path: ["architectures"], expected: "a non-empty list of architecture names", found: value.description)
        }
        return try array.map { item in
            guard let s = item.stringValue else {
                throw KilnError.mismatch(file: "config.json", path: ["architectures"], expected: "strings", found: item.description)
            }
            return s
        }
    }
}

/// The shared weight check of the built-in templates.
enum WeightCheck {
    /// Check that `weights` holds every tensor of `expected` with its shape.
    /// - Parameters:
    ///   - layers: the config's layer count; every layer has tensors of its own, so a count above the
    ///     checkpoint's tensor count is refused before the (then huge) list is built.
    ///   - expected: names and shapes, in checkpoint order (built only after that check).
    ///   - needs: why a missing tensor is needed (`GPT2LMHeadModel with n_layer 2`).
    ///   - source: the config fields a tensor's shape comes from, for the note.
    /// - Throws: `KilnError(.invalidInput, path: ["tensor \"NAME\""])`: "missing (… needs it)" or
    ///   "shape: expected [a, b], found [c, d] (from config.json: …)"; `KilnError(.invalidInput)` when
    ///   `layers` exceeds the tensors in `weights`.
    static func validate(_ weights: Model, layers: Int, expected: @autoclosure () -> [(name: String, shape: [Int])], needs: String,
                         source: (String) -> String) throws {
        guard layers <= weights.tensors.count else {
            throw KilnError(.invalidInput, file: "config.json",
                            "\(needs): the checkpoint holds \(weights.tensors.count) tensors, too few for that many layers")
        }
        for (name, shape) in expected() {
            guard let t = weights[name] else {
                throw KilnError(.invalidInput, path: ["tensor \"\(name)\""], "missing (\(needs) needs it)")
            }
            guard t.shape.dims == shape else {
                throw KilnError.mismatch(file: nil, path: ["tensor \"\(name)\"", "shape"], expected: Shape(shape).description,
                                         found: t.shape.description, note: "from config.json: \(source(name))")
            }
        }
    }
}
