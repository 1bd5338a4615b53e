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
        Graph models (ONNX) calibrated with --calib INPUTS.npz: int8 or fp8 (per-channel weights, per-tensor \
        activations on Conv / ConvTranspose / MatMul / Gemm inputs; --option range=max|percentile|mse, \
        percentile=P, batch=N, exclude-sensitive=N, sensitivity=alone|in-context, output-qdq=true for onnxruntime-style \
        output pairs, output-range=max|percentile|mse for them; --exclude NODE_GLOB).
        """
    )

    /// Algorithms of graph models (calibrated on an .npz) — run by the engine's ``GraphQuantizer``.
    static let graphAlgorithms: [String: GraphQuantizer.Algorithm] = ["int8": .int8, "fp8": .fp8]

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

    @Option(help: "fp8 | int8-sq | int4-awq | w4a8-awq | int4-rtn; graph models: int8 | fp8")
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

    /// A graph model calibrated on an .npz of its inputs (the ONNX PTQ flow).
    var isGraphFlow: Bool { calibration.calib?.hasSuffix(".npz") == true }

    func validate() throws {
        if isGraphFlow {
            guard QuantizeCommand.graphAlgorithms[algo] != nil else {
                throw ValidationError("with --calib FILE.npz (a graph model), --algo must be int8 or fp8 (found \"\(algo)\")")
            }
            guard to == "onnx" else { throw ValidationError("a quantized graph model is written with --to onnx (found --to \(to))") }
            let ignored = [("--tp", tp != nil), ("--kv-cache", kvCache != nil), ("--group-size", groupSize != nil), ("--alpha", alpha != nil),
                           ("--tokenizer", output.tokenizer != nil), ("--eval", output.eval != nil)].filter(\.1).map(\.0)
            guard ignored.isEmpty else {
                throw ValidationError("\(ignored.joined(separator: ", ")) do not apply to a graph model calibrated on an .npz (ONNX post-training quantization)")
            }
            for o in passOptions where !o.contains("=") { throw ValidationError("--option expects KEY=VALUE (found \"\(o)\")") }
            let unknown = Set(explicitOptions.keys).subtracting(QuantizeCommand.graphOptionNames).sorted()
            guard unknown.isEmpty else {
                throw ValidationError("unknown --option \(unknown.joined(separator: ", ")) for a graph model; known: \(QuantizeCommand.graphOptionNames.sorted().joined(separator: ", "))")
            }
            _ = try graphOptions()
            return
        }
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
        return o.merging(explicitOptions) { $1 }
    }

    /// The --option KEY=VALUE pairs.
    var explicitOptions: [String: String] {
        var o: [String: String] = [:]
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

    /// The --option keys ``graphOptions()`` reads.
    static let graphOptionNames: Set<String> = ["range", "output-range", "percentile", "exclude-sensitive", "output-qdq", "sensitivity", "batch"]

    /// Options of the graph flow, from --exclude, --calib-samples and --option range= / percentile= / batch=.
    func graphOptions() throws -> GraphQuantizer.Options {
        var o = GraphQuantizer.Options()
        o.algorithm = QuantizeCommand.graphAlgorithms[algo] ?? .int8
        o.exclude = exclude
        o.samples = calibration.calibSamples
        let given = explicitOptions
        for key in ["range", "output-range"] {
            guard let r = given[key] else { continue }
            guard let method = RangeMethod(rawValue: r) else {
                throw ValidationError("--option \(key) must be one of \(RangeMethod.allCases.map(\.rawValue).joined(separator: ", ")) (found \"\(r)\")")
            }
            if key == "range" { o.range = method } else { o.outputRange = method }
        }
        if let p = given["percentile"] {
            guard let v = Double(p), v > 50, v <= 100 else { throw ValidationError("--option percentile must be in (50, 100] (found \"\(p)\")") }
            o.percentile = v
        }
        if let n = given["exclude-sensitive"] {
            guard let v = Int(n), v >= 0 else { throw ValidationError("--option exclude-sensitive must be a count ≥ 0 (found \"\(n)\")") }
            o.excludeSensitive = v
        }
        if let v = given["output-qdq"] {
            guard let flag = ["true": true, "false": false][v] else { throw ValidationError("--option output-qdq must be true or false (found \"\(v)\")") }
            o.outputQDQ = flag
        }
        if let v = given["sensitivity"] {
            guard let method = GraphQuantizer.Sensitivity(rawValue: v) else {
                throw ValidationError("--option sensitivity must be one of \(GraphQuantizer.Sensitivity.allCases.map(\.rawValue).joined(separator: ", ")) (found \"\(v)\")")
            }
            o.sensitivity = method
        }
        if let b = given["batch"] {
            guard let v = Int(b), v >= 1 else { throw ValidationError("--option batch must be at least 1 (found \"\(b)\")") }
            o.batch = v
        }
        return o
    }

    func run() throws {
        if isGraphFlow {
            var pipeline = PassPipeline(model: model, passes: [], output: output.out, writer: "onnx", writerOptions: writerOptions,
                                        global: global)
            pipeline.graphQuantization = (try graphOptions(), calibration.calib!)
            try pipeline.run()
            return
        }
        var pipeline = PassPipeline(
            model: model, passes: [(QuantizeCommand.algorithms[algo]!.pass, options)], output: output.out, writer: to,
            writerOptions: writerOptions, tokenizer: output.tokenizer, eval: output.evalSettings, global: global)
        try pipeline.run()
    }
}
