import ArgumentParser
import KilnCore
import KilnEngine

/// `kiln sparsify MODEL --method magnitude|sparsegpt --out DIR`, optionally quantized in the same run.
struct SparsifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sparsify",
        abstract: "Prune linear layers to 2:4 structured sparsity (magnitude or SparseGPT), optionally then quantize."
    )

    @Argument(help: "Model file or folder.")
    var model: String

    @Option(help: "magnitude | sparsegpt")
    var method: String = "magnitude"

    @Option(help: "SparseGPT damping as a fraction of mean(diag H) (the paper: 0.01; ModelOpt: 0.1).")
    var damp: Double?

    @Option(help: "SparseGPT column block size.")
    var blockSize: Int?

    @Option(help: "Keep matching modules dense (glob, repeatable; lm_head and embeddings are always kept).")
    var exclude: [String] = []

    @Option(help: "Quantize after pruning: fp8 | int8-sq (the 2:4 pattern is kept).")
    var quantize: String?

    @Option(help: "Output format: safetensors | trtllm | hf-quant | onnx (default: safetensors, hf-quant with --quantize).")
    var to: String?

    @OptionGroup var calibration: CalibrationOptions
    @OptionGroup var output: PassOutputOptions
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        guard ["magnitude", "sparsegpt"].contains(method) else {
            throw ValidationError("--method must be magnitude or sparsegpt (found \"\(method)\")")
        }
        if (method == "sparsegpt" || quantize != nil) && calibration.calib == nil {
            throw ValidationError("--method sparsegpt and --quantize need --calib FILE (calibration text)")
        }
        if let quantize, !["fp8", "int8-sq"].contains(quantize) {
            throw ValidationError("--quantize must be fp8 or int8-sq (found \"\(quantize)\")")
        }
        if let quantize, let to, !QuantizeCommand.targets.contains(to) {
            throw ValidationError("--quantize \(quantize) cannot be written --to \(to) (it has no place for quantization scales); supported: \(QuantizeCommand.targets.joined(separator: ", "))")
        }
    }

    func run() throws {
        var common = calibration.passOptions
        if !exclude.isEmpty { common["exclude"] = exclude.joined(separator: ",") }
        var sparse = common
        sparse["method"] = method
        if let damp { sparse["damp"] = String(damp) }
        if let blockSize { sparse["block-size"] = String(blockSize) }
        var passes: [(name: String, options: [String: String])] = [("sparse-2:4", sparse)]
        if let quantize { passes.append((quantize, common)) }
        var pipeline = PassPipeline(
            model: model, passes: passes, output: output.out, writer: to ?? (quantize == nil ? "safetensors" : "hf-quant"),
            writerOptions: output.overwrite ? ["overwrite": "true"] : [:], tokenizer: output.tokenizer,
            eval: output.evalSettings, global: global)
        try pipeline.run()
    }
}
