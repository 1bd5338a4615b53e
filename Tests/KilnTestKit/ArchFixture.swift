import Foundation
import KilnCore

/// Models for the GPT-2 and BERT template tests, made by Tools/verify/arch_check.py (numpy,
/// safetensors, tokenizers, onnx) — not by Kiln — and its references.
public enum ArchFixture {
    /// Run `arch_check.py ARGS`; its JSON line.
    /// - Throws: `KilnError(.internal)` with the script's output when it fails (numpy, onnx, onnxruntime,
    ///   safetensors and tokenizers are part of the test venv, so a failure is a real failure).
    @discardableResult
    public static func run(_ python: String, _ args: [String]) throws -> JSONValue? {
        let r = try runVerifyScript(python, "arch_check.py", args)
        guard r.status == 0 else {
            throw KilnError(.internal, "arch_check.py \(args.joined(separator: " ")) failed: \(r.stdout)\(r.stderr)")
        }
        return try JSONValue.parse(Array((r.stdout.split(separator: "\n").last.map(String.init) ?? "").utf8))
    }

    /// A tiny random GPT2LMHeadModel folder (safetensors, config.json, tokenizer.json) in `dir`, with a
    /// tokenizer trained on ``gpt2Text``.
    /// - Throws: cancels the current test when that text is absent; `KilnError(.internal)` when the script fails.
    public static func gpt2(_ python: String, in dir: TemporaryDirectory) throws -> String {
        let folder = dir.file("gpt2")
        try run(python, ["gpt2-make", folder, try gpt2Text])
        return folder
    }

    /// ../shared/data/tinystories_valid_calib.txt, the text ``gpt2(_:in:)`` trains the tokenizer on.
    /// - Throws: cancels the current test when it is absent.
    public static var gpt2Text: String {
        get throws { try TestEnvironment.sharedFile("data/tinystories_valid_calib.txt") }
    }

    /// The weights of ../shared's third-party paraphrase-MiniLM-L3-v2 ONNX export as a HF BertModel
    /// folder (with its tokenizer.json) in `dir`.
    /// - Throws: cancels the current test when the model is absent; `KilnError(.internal)` when the script fails.
    public static func miniLM(_ python: String, in dir: TemporaryDirectory) throws -> String {
        let onnx = try miniLMOnnx
        let folder = dir.file("minilm")
        try run(python, ["bert-extract", onnx, folder])
        try FileManager.default.copyItem(atPath: AtomicOutput.parent(of: onnx) + "/tokenizer.json", toPath: folder + "/tokenizer.json")
        return folder
    }

    /// ../shared/models/paraphrase-MiniLM-L3-v2-onnx/model.onnx.
    /// - Throws: cancels the current test when it is absent.
    public static var miniLMOnnx: String {
        get throws { try TestEnvironment.sharedModel("paraphrase-MiniLM-L3-v2-onnx/model.onnx") }
    }

    /// Write `ids` as the JSON list of lists arch_check.py reads.
    public static func writeIDs(_ ids: [[Int]], to path: String) throws {
        let json = JSONValue.array(ids.map { .array($0.map { .int(Int64($0)) }) })
        try Data(json.serialized().utf8).write(to: URL(fileURLWithPath: path))
    }

    /// A raw little-endian float32 file.
    public static func floats(_ path: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// Max over the real tokens of `max|got − ref| / max|ref|` (rows of `width` values; `[batch, seq, width]`
    /// right-padded to `seq`, only positions < `lengths[b]` compared).
    public static func maxRelativeError(_ got: [Float], _ ref: [Float], lengths: [Int], seq: Int, width: Int) -> Double {
        precondition(got.count == ref.count && got.count == lengths.count * seq * width)
        var diff = 0.0, scale = 0.0
        for (b, n) in lengths.enumerated() {
            for i in 0..<(n * width) {
                let k = b * seq * width + i
                diff = max(diff, Double(abs(got[k] - ref[k])))
                scale = max(scale, Double(abs(ref[k])))
            }
        }
        return diff / max(scale, 1e-30)
    }
}
