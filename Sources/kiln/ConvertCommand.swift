import ArgumentParser
import KilnCore
import KilnEngine
import KilnHost
#if canImport(Glibc)
import Glibc
#endif

/// `kiln convert IN OUT`: change format and/or float dtype, streaming tensor by tensor.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a model to another format and/or float dtype (streams; peak memory ≈ one chunk)."
    )

    @Argument(help: "Input model file or folder.")
    var input: String

    @Argument(help: "Output file or folder (written to a temporary name, renamed when complete).")
    var output: String

    @Option(help: "Output format plugin (default: from the output name; a folder means safetensors).")
    var to: String?

    @Option(help: "Input format plugin (default: the reader most confident about the input).")
    var from: String?

    @Option(help: "Cast floating-point tensors to this dtype: f32, f16, bf16 (integer tensors are kept).")
    var dtype: String?

    @Option(help: "Split the output into shards of at most this size (e.g. 500MB, 2GB); implies a folder.")
    var maxShardSize: String?

    @Flag(help: "ONNX output: put tensors of 1 KB or more in OUT.data beside the model (automatic past 2 GB).")
    var externalData = false

    @Option(help: "TensorRT-LLM output: tensor-parallel size (rank files; 1, 2, 4, 8, ...).")
    var tp: Int?

    @Flag(help: "TensorRT-LLM output: shard the vocab embedding over the ranks too (use_parallel_embedding).")
    var embeddingSharding = false

    @Flag(help: "Replace OUT if it already exists (a file, or a non-empty folder); refused otherwise.")
    var overwrite = false

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if let tp, tp < 1 || tp > 64 {
            throw ValidationError("--tp must be between 1 and 64 (found \(tp))")
        }
        if let dtype {
            guard let d = DType(name: dtype), [.f32, .f16, .bf16].contains(d) else {
                throw ValidationError("--dtype must be f32, f16 or bf16 (found \"\(dtype)\")")
            }
        }
    }

    func run() throws {
        let registry = try global.registry()
        let reader = try registry.reader(for: input, named: from)
        var options: [String: String] = [:]
        if let maxShardSize { options["max-shard-size"] = maxShardSize }
        if let tp { options["tp"] = String(tp) }
        if embeddingSharding { options["embedding-sharding"] = "true" }
        if externalData { options["external-data"] = "true" }
        if overwrite { options["overwrite"] = "true" }
        let context = global.context(options)
        let started = monotonicSeconds()
        let model = try reader.read(path: input, context: context)
        let writer = try registry.writer(named: to ?? (output.contains(".") && !output.hasSuffix("/") ? nil : "safetensors"), for: output)
        if let target = dtype.flatMap(DType.init(name:)) {
            for t in model.tensors where t.dtype.isFloat && t.dtype != target && t.quant == nil {
                model.set(t.converted(to: target))
            }
            model.provenance.append("cast floating-point tensors to \(target)")
        }
        if writer.name == "onnx", model.graph == nil, model.config != nil {
            // Weights-only input (a Hugging Face checkpoint): build the graph from config.json.
            try Architectures.attachGraph(to: model)
        }
        try writer.write(model, to: output, context: context)
        let seconds = monotonicSeconds() - started
        let bytes = model.byteCount
        if global.json {
            print(JSONValue.object(JSONObject([
                ("input", .string(input)), ("output", .string(output)), ("reader", .string(reader.name)),
                ("writer", .string(writer.name)), ("tensors", .int(Int64(model.tensors.count))),
                ("bytes", .int(Int64(bytes))), ("seconds", .double(seconds)),
            ])).serialized(pretty: true))
        } else {
            let rate = seconds > 0 ? humanBytes(Int(Double(bytes) / seconds)) + "/s" : "-"
            print("wrote \(output) (\(writer.name)): \(model.tensors.count) tensors, \(humanBytes(bytes)) in \(String(format3(seconds))) s (\(rate))")
        }
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func format3(_ v: Double) -> String {
    let r = (v * 1000).rounded() / 1000
    return String(r)
}
