import Foundation
import KilnCore
import KilnEngine
import KilnHost

/// Small models and helpers for the quantized-checkpoint format tests (TensorRT-LLM, unified HF).
public enum CheckpointFixture {
    /// Write `model` with the writer called `format`.
    public static func write(_ model: Model, _ format: String, to path: String, _ options: [String: String] = [:]) throws {
        try TestEnvironment.plugins.writer(named: format, for: path).write(model, to: path, context: KilnContext(options: options))
    }

    /// Read `path` with the reader called `format`.
    public static func read(_ path: String, _ format: String) throws -> Model {
        try TestEnvironment.plugins.reader(for: path, named: format).read(path: path, context: KilnContext())
    }

    /// stories260K from ../shared/models.
    /// - Throws: cancels the current test when it is absent.
    public static func stories260K() throws -> Model {
        try read(try TestEnvironment.sharedModel("stories260K"), "safetensors")
    }

    /// A synthetic Llama with its own shape.
    public static func llama(hidden: Int = 64, heads: Int = 8, kvHeads: Int = 4, intermediate: Int = 128, layers: Int = 2,
                             vocab: Int = 512, tied: Bool = true) throws -> Model {
        var s = SyntheticModel.LlamaShape()
        s.hidden = hidden
        s.heads = heads
        s.kvHeads = kvHeads
        s.intermediate = intermediate
        s.layers = layers
        s.vocab = vocab
        s.tiedEmbeddings = tied
        return try SyntheticModel.llama(s)
    }

    /// A Qwen2-style model: the synthetic Llama with q/k/v biases and Qwen2's config names.
    public static func qwen2() throws -> Model {
        let base = try llama(heads: 8, kvHeads: 2, tied: false)
        var rng = SplitMix64(seed: 7)
        var tensors: [Tensor] = []
        for t in base.tensors {
            tensors.append(t)
            for p in ["q_proj", "k_proj", "v_proj"] where t.name.hasSuffix("self_attn.\(p).weight") {
                let n = t.shape[0]
                tensors.append(Tensor(name: t.name.replacingOccurrences(of: ".weight", with: ".bias"), dtype: .f32, shape: [n],
                                      values: (0..<n).map { _ in rng.nextSigned() }))
            }
        }
        var config = base.config!.objectValue!
        config["architectures"] = ["Qwen2ForCausalLM"]
        config["model_type"] = "qwen2"
        return try Model(tensors: tensors, config: .object(config))
    }

    /// A tiny GPT-2 (Conv1D weights stored [in, out], biases everywhere, tied lm_head).
    public static func gpt2(hidden: Int = 16, heads: Int = 4, layers: Int = 2, positions: Int = 32, vocab: Int = 40) throws -> Model {
        var rng = SplitMix64(seed: 0x475054)
        var tensors: [Tensor] = []
        func add(_ name: String, _ dims: [Int]) {
            let n = dims.reduce(1, *)
            tensors.append(Tensor(name: name, dtype: .f32, shape: Shape(dims), values: (0..<n).map { _ in rng.nextSigned() }))
        }
        add("transformer.wte.weight", [vocab, hidden])
        add("transformer.wpe.weight", [positions, hidden])
        for i in 0..<layers {
            let h = "transformer.h.\(i)."
            add(h + "ln_1.weight", [hidden]); add(h + "ln_1.bias", [hidden])
            add(h + "attn.c_attn.weight", [hidden, 3 * hidden]); add(h + "attn.c_attn.bias", [3 * hidden])
            add(h + "attn.c_proj.weight", [hidden, hidden]); add(h + "attn.c_proj.bias", [hidden])
            add(h + "ln_2.weight", [hidden]); add(h + "ln_2.bias", [hidden])
            add(h + "mlp.c_fc.weight", [hidden, 4 * hidden]); add(h + "mlp.c_fc.bias", [4 * hidden])
            add(h + "mlp.c_proj.weight", [4 * hidden, hidden]); add(h + "mlp.c_proj.bias", [hidden])
        }
        add("transformer.ln_f.weight", [hidden]); add("transformer.ln_f.bias", [hidden])
        let config: JSONValue = .object(JSONObject([
            ("architectures", ["GPT2LMHeadModel"]), ("model_type", "gpt2"), ("n_embd", .int(Int64(hidden))),
            ("n_head", .int(Int64(heads))), ("n_layer", .int(Int64(layers))), ("n_positions", .int(Int64(positions))),
            ("vocab_size", .int(Int64(vocab))), ("activation_function", "gelu_new"), ("layer_norm_epsilon", 1e-5),
            ("tie_word_embeddings", true),
        ]))
        return try Model(tensors: tensors, config: config)
    }

    /// Tensors of one safetensors file by name (lazy, mapped).
    public static func tensors(_ path: String) throws -> [String: Tensor] {
        let st = try SafetensorsFile(path: path)
        return Dictionary(uniqueKeysWithValues: st.tensors().map { ($0.name, $0) })
    }

    /// Rows `rows` (all columns) of a 2-D f32 tensor, or columns `cols` (all rows).
    public static func slice(_ t: Tensor, rows: Range<Int>? = nil, cols: Range<Int>? = nil) throws -> [Float] {
        let v = try t.floats()
        let c = t.shape.rank > 1 ? t.shape[1] : 1
        let r = rows ?? 0..<(t.shape.rank > 0 ? t.shape[0] : 1)
        let k = cols ?? 0..<c
        return r.flatMap { i in k.map { v[i * c + $0] } }
    }

    /// Read a JSON file, apply `change`, write it back.
    public static func editJSON(_ path: String, _ change: (inout JSONObject) -> Void) throws {
        var o = try JSONValue.parse(FileSystem.readBytes(path)).objectValue!
        change(&o)
        try Data(JSONValue.object(o).serialized(pretty: true).utf8).write(to: URL(fileURLWithPath: path))
    }

    /// Run Tools/verify/trtllm_check.py (`trtllm` or `hfquant`) on `checkpoint` against the tensors of
    /// `expected` (written to a temporary safetensors file); returns nil on success, else its output.
    public static func pythonCheck(_ python: String, _ kind: String, _ checkpoint: String, expected: Model) throws -> String? {
        let dir = TemporaryDirectory("kiln-expected")
        let file = dir.file("expected.safetensors")
        try SafetensorsFile.write(expected.tensors, to: file)
        let result = try withExtendedLifetime(dir) { try runVerifyScript(python, "trtllm_check.py", [kind, checkpoint, file]) }
        return result.status == 0 ? nil : result.stdout + result.stderr
    }
}
