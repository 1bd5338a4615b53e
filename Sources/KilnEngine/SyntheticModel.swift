import KilnCore

/// Deterministic pseudo-random numbers (SplitMix64): same seed, same sequence, on every machine.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1), from the top 24 bits (exactly representable in f32).
    public mutating func nextSigned() -> Float {
        Float(Int32(truncatingIfNeeded: next() >> 40) - (1 << 23)) / Float(1 << 23)
    }
}

/// Small deterministic models built in code: the `kiln demo` input, test fixtures and benchmark inputs.
public enum SyntheticModel {
    /// Shape of a Llama-family model.
    public struct LlamaShape: Sendable {
        public var hidden = 64
        public var intermediate = 172
        public var layers = 2
        public var heads = 8
        public var kvHeads = 4
        public var vocab = 512
        public var maxPositions = 512
        public var tiedEmbeddings = true
        public init() {}
    }

    /// A Llama-family model (Hugging Face names and config.json) with weights drawn from `seed`.
    /// Weights are scaled by 1/sqrt(fan_in) so activations stay in range; norms are 1 + noise.
    public static func llama(_ s: LlamaShape = LlamaShape(), seed: UInt64 = 0x4B494C4E, dtype: DType = .f32) throws -> Model {
        var rng = SplitMix64(seed: seed)
        let headDim = s.hidden / s.heads
        var tensors: [Tensor] = []
        func add(_ name: String, _ dims: [Int], scale: Float, offset: Float = 0) {
            let n = dims.reduce(1, *)
            var values = [Float](repeating: 0, count: n)
            for i in 0..<n { values[i] = offset + scale * rng.nextSigned() }
            tensors.append(Tensor(name: name, dtype: .f32, shape: Shape(dims), values: values))
        }
        let h = s.hidden, inter = s.intermediate
        add("model.embed_tokens.weight", [s.vocab, h], scale: 1)
        for i in 0..<s.layers {
            let p = "model.layers.\(i)."
            add(p + "input_layernorm.weight", [h], scale: 0.1, offset: 1)
            add(p + "self_attn.q_proj.weight", [s.heads * headDim, h], scale: 1 / Float(h).squareRoot())
            add(p + "self_attn.k_proj.weight", [s.kvHeads * headDim, h], scale: 1 / Float(h).squareRoot())
            add(p + "self_attn.v_proj.weight", [s.kvHeads * headDim, h], scale: 1 / Float(h).squareRoot())
            add(p + "self_attn.o_proj.weight", [h, s.heads * headDim], scale: 1 / Float(h).squareRoot())
            add(p + "post_attention_layernorm.weight", [h], scale: 0.1, offset: 1)
            add(p + "mlp.gate_proj.weight", [inter, h], scale: 1 / Float(h).squareRoot())
            add(p + "mlp.up_proj.weight", [inter, h], scale: 1 / Float(h).squareRoot())
            add(p + "mlp.down_proj.weight", [h, inter], scale: 1 / Float(inter).squareRoot())
        }
        add("model.norm.weight", [h], scale: 0.1, offset: 1)
        if !s.tiedEmbeddings { add("lm_head.weight", [s.vocab, h], scale: 1 / Float(h).squareRoot()) }
        let config: JSONValue = .object(JSONObject([
            ("architectures", ["LlamaForCausalLM"]),
            ("model_type", "llama"),
            ("hidden_size", .int(Int64(h))),
            ("intermediate_size", .int(Int64(inter))),
            ("num_hidden_layers", .int(Int64(s.layers))),
            ("num_attention_heads", .int(Int64(s.heads))),
            ("num_key_value_heads", .int(Int64(s.kvHeads))),
            ("vocab_size", .int(Int64(s.vocab))),
            ("max_position_embeddings", .int(Int64(s.maxPositions))),
            ("rms_norm_eps", .double(1e-5)),
            ("rope_theta", .double(10000.0)),
            ("hidden_act", "silu"),
            ("tie_word_embeddings", .bool(s.tiedEmbeddings)),
            ("torch_dtype", .string(dtype == .f32 ? "float32" : dtype.traits.numpy)),
            ("bos_token_id", 1),
            ("eos_token_id", 2),
        ]))
        let converted = tensors.map { $0.converted(to: dtype) }
        return try Model(tensors: converted, config: config, metadata: ["format": "pt"], provenance: ["synthetic llama, seed \(seed)"])
    }
}
