import ArgumentParser
import KilnCore
import KilnEngine

/// `kiln quantize MODEL --algo … --calib FILE --out OUT --to …`
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a model (FP8, INT8 SmoothQuant, INT4 AWQ / RTN) with calibration, and write it for an engine.",
        discussion: """
        Algorithms: fp8 (W8A8 e4m3, static activation scales), int8-sq (SmoothQuant W8A8), \
        int4-awq (W4A16, group 128), w4a8-awq (INT4 weights + FP8 activations), int4-rtn (round to nearest).
        """
    )

    static let algorithms: [String: (pass: String, options: [String: String])] = [
        "fp8": ("fp8", [:]),
        "int8-sq": ("int8-sq", [:]),
        "int4-awq": ("int4-awq", [:]),
        "w4a8-awq": ("int4-awq", ["w4a8": "true"]),
        "int4-rtn": ("int4-rtn", [:]),
    ]

    /// Output formats that hold quantized weights with their scales (every algorithm above).
    static let targets = ["trtllm", "hf-quant", "onnx"]

    @Argument(help: "Model file or folder (Hugging Face checkpoint, ...).")
    var model: String

    @Option(help: "fp8 | int8-sq | int4-awq | w4a8-awq | int4-rtn")
    var algo: String

    @Option(help: "Output format: trtllm | hf-quant | onnx.")
    var to: String = "hf-quant"

    @Option(help: "TensorRT-LLM output: tensor-parallel size.")
    var tp: Int?

    @Option(help: "KV-cache quantization: fp8.")
    var kvCache: String?

    @Option(help: "Keep matching modules in high precision (glob, repeatable; lm_head is always kept).")
    var exclude: [String] = []

    @Option(help: "INT4 group size (32, 64, 128).")
    var groupSize: Int?

    @Option(help: "SmoothQuant migration strength α in [0, 1], or auto (grid search per layer).")
    var alpha: String?

    @Option(name: .customLong("option"), help: ArgumentHelp("Pass-specific KEY=VALUE (repeatable; see `kiln plugins`).", valueName: "key=value"))
    var passOptions: [String] = []

    @OptionGroup var calibration: CalibrationOptions
    @OptionGroup var output: PassOutputOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard QuantizeCommand.algorithms[algo] != nil else {
            throw ValidationError("--algo must be one of \(QuantizeCommand.algorithms.keys.sorted().joined(separator: ", ")) (found \"\(algo)\")")
        }
        guard QuantizeCommand.targets.contains(to) else {
            throw ValidationError("--algo \(algo) cannot be written --to \(to) (it has no place for quantization scales); supported: \(QuantizeCommand.targets.joined(separator: ", "))")
        }
        if algo != "int4-rtn" && calibration.calib == nil { throw ValidationError("--algo \(algo) needs --calib FILE (calibration text)") }
        if let kvCache, kvCache != "fp8" { throw ValidationError("--kv-cache must be fp8 (found \"\(kvCache)\")") }
        if let tp, tp < 1 { throw ValidationError("--tp must be at least 1 (found \(tp))") }
        if tp != nil && to != "trtllm" { throw ValidationError("--tp applies to --to trtllm only") }
        for o in passOptions where !o.contains("=") { throw ValidationError("--option expects KEY=VALUE (found \"\(o)\")") }
    }

    /// Options handed to the pass: the flags above plus every --option.
    var options: [String: String] {
        var o = QuantizeCommand.algorithms[algo]!.options.merging(calibration.passOptions) { $1 }
        if let kvCache { o["kv-cache"] = kvCache }
        if !exclude.isEmpty { o["exclude"] = exclude.joined(separator: ",") }
        if let groupSize { o["group-size"] = String(groupSize) }
        if let alpha { o["alpha"] = alpha }
        for kv in passOptions {
            let parts = kv.split(separator: "=", maxSplits: 1)
            o[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return o
    }

    /// Options handed to the writer.
    var writerOptions: [String: String] {
        var o: [String: String] = [:]
        if let tp { o["tp"] = String(tp) }
        if output.overwrite { o["overwrite"] = "true" }
        return o
    }

    func run() throws {
        var pipeline = PassPipeline(
            model: model, passes: [(QuantizeCommand.algorithms[algo]!.pass, options)], output: output.out, writer: to,
            writerOptions: writerOptions, tokenizer: output.tokenizer, eval: output.evalSettings, global: global)
        try pipeline.run()
    }
}
