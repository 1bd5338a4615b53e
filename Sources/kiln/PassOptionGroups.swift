import ArgumentParser

/// Calibration flags shared by `kiln quantize` and `kiln sparsify`.
struct CalibrationOptions: ParsableArguments {
    @Option(help: "Calibration text (plain text, or jsonl with a \"text\" field); for graph (ONNX) models an .npz of graph inputs.")
    var calib: String?

    @Option(help: "Calibration sequences.")
    var calibSamples: Int = 128

    @Option(help: "Tokens per calibration sequence (BOS included).")
    var calibSeqLen: Int = 512

    func validate() throws {
        guard calibSamples >= 1, calibSeqLen >= 2 else { throw ValidationError("--calib-samples ≥ 1 and --calib-seq-len ≥ 2") }
    }

    /// The pass options these flags set (`calib`, `calib-samples`, `calib-seq-len`).
    var passOptions: [String: String] {
        var o = ["calib-samples": String(calibSamples), "calib-seq-len": String(calibSeqLen)]
        if let calib { o["calib"] = calib }
        return o
    }
}

/// Output and accuracy flags shared by `kiln quantize` and `kiln sparsify`.
struct PassOutputOptions: ParsableArguments {
    @Option(help: "Output file or folder.")
    var out: String

    @Flag(help: "Replace the output if it already exists (a file, or a non-empty folder); refused otherwise.")
    var overwrite = false

    @Option(help: "Also measure perplexity on this text before and after (kiln-ppl-v1).")
    var eval: String?

    @Option(help: "Score only the first N tokens of --eval.")
    var evalMaxTokens: Int?

    @Option(help: "Tokenizer folder or tokenizer.json (default: beside the model).")
    var tokenizer: String?

    /// The evaluation to run before and after, if `--eval` was given.
    var evalSettings: EngineSupport.EvalSettings? {
        eval.map { EngineSupport.EvalSettings(text: $0, maxTokens: evalMaxTokens) }
    }
}
