import Foundation
import KilnCore
import KilnTestKit
import Testing

/// `kiln eval / generate / compare / quantize / sparsify` on the real stories260K model.
@Suite struct EngineCommandTests {
    static let data = TestEnvironment.shared + "/data/"

    @Test func evalMatchesTheGoldenPerplexity() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let r = try runKiln(["eval", model, "--text", Self.data + "tinystories_valid_eval.txt", "--max-tokens", "20000", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.parse(r.stdout)
        // golden/ppl.json: 4.2702889205447905 over 20000 tokens (transformers, float32)
        let ppl = json["perplexity"]!.doubleValue!
        #expect(abs(ppl / 4.2702889205447905 - 1) < 1e-3)
        #expect(json["tokens"] == 20000)
    }

    /// An ONNX export read back (no config.json: the graph interpreter runs its standard ops — Trilu
    /// causal mask, Cos/Sin rotary tables, Gemm …) scores like the checkpoint; an INT4 export with
    /// block-wise DequantizeLinear scores like the in-memory quantized model `quantize --eval` measured.
    @Test func evalRunsOnnxExportsThroughTheGraphInterpreter() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory("kiln-eval-onnx")
        let text = Self.data + "tinystories_valid_eval.txt"
        func perplexity(_ args: [String]) throws -> Double? {
            let r = try runKiln(args + ["--json"])
            #expect(r.status == 0, "\(args): \(r.stderr)")
            return r.status == 0 ? try JSONValue.parse(r.stdout)["perplexity"]?.doubleValue : nil
        }
        #expect(try runKiln(["convert", model, dir.file("m.onnx")]).status == 0)
        let eval = ["--text", text, "--max-tokens", "3000", "--tokenizer", model]
        let reference = try #require(try perplexity(["eval", model] + eval))
        let exported = try #require(try perplexity(["eval", dir.file("m.onnx")] + eval))
        #expect(abs(exported / reference - 1) < 1e-5, "checkpoint \(reference), ONNX export \(exported)")

        let quantize = try runKiln(["quantize", model, "--algo", "int4-rtn", "--group-size", "64", "--option", "indivisible=pad",
                                    "--out", dir.file("q.onnx"), "--to", "onnx", "--eval", text, "--eval-max-tokens", "3000", "--json"])
        #expect(quantize.status == 0, "\(quantize.stderr)")
        let after = try #require(try JSONValue.parse(quantize.stdout)["perplexity_after"]?.doubleValue, "\(quantize.stdout)")
        let quantized = try #require(try perplexity(["eval", dir.file("q.onnx")] + eval))
        #expect(abs(quantized / after - 1) < 1e-5, "quantize --eval \(after), ONNX export \(quantized)")
        #expect(abs(quantized / reference - 1) > 1e-3, "INT4 should change the perplexity")
    }

    @Test func generateWritesTheKnownStory() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let r = try runKiln(["generate", model, "--prompt", "Once upon a time", "--max-tokens", "24"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix("Once upon a time, there was a little girl named Lily. She loved to play outside"))
    }

    @Test func evalRefusesBadText() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        try Data().write(to: URL(fileURLWithPath: dir.file("empty.txt")))
        var r = try runKiln(["eval", model, "--text", dir.file("empty.txt")])
        #expect(r.status == 1)
        #expect(r.stderr == "error: \(dir.file("empty.txt")): the text is empty\n")
        try Data([0x66, 0xFF, 0xFE, 0x66]).write(to: URL(fileURLWithPath: dir.file("bad.txt")))
        r = try runKiln(["eval", model, "--text", dir.file("bad.txt")])
        #expect(r.status == 1)
        #expect(r.stderr == "error: \(dir.file("bad.txt")): expected UTF-8 text\n")
        r = try runKiln(["eval", model, "--text", Self.data + "tinystories_valid_eval.txt", "--seq-len", "1024"])
        #expect(r.status == 1)
        #expect(r.stderr == "error: --seq-len: expected at most max_position_embeddings = 512, found 1024 (use a shorter --seq-len)\n")
    }

    @Test func quantizeFP8ReportsAccuracyAndHitsTheCalibrationCache() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let env = ["KILN_CACHE_DIR": dir.file("cache")]
        let args = ["quantize", model, "--algo", "fp8", "--kv-cache", "fp8", "--calib", Self.data + "tinystories_valid_calib.txt",
                    "--calib-samples", "8", "--calib-seq-len", "128", "--to", "hf-quant",
                    "--eval", Self.data + "tinystories_valid_eval.txt", "--eval-max-tokens", "2000", "--json"]
        let first = try runKiln(args + ["--out", dir.file("q1")], environment: env)
        #expect(first.status == 0, "\(first.stderr)")
        let a = try JSONValue.parse(first.stdout)
        #expect(a["algorithm"] == "FP8")
        #expect(a["kv_cache"] == "FP8")
        #expect(a["quantized_tensors"] == 35)
        #expect(a["excluded"] == ["lm_head"])
        let before = a["perplexity_before"]!.doubleValue!, after = a["perplexity_after"]!.doubleValue!
        // FP8 weights + activations + KV cache on this tiny model (head_dim 8) cost a few percent.
        #expect(after > before && after < before * 1.10, "FP8 should cost little: \(before) → \(after)")
        #expect(FileSystem.list(dir.file("cache/calibration"))?.count == 1)
        let second = try runKiln(args + ["--out", dir.file("q2")], environment: env)
        #expect(second.status == 0, "\(second.stderr)")
        let b = try JSONValue.parse(second.stdout)
        #expect(b["seconds"]?.objectValue?.keys.contains("fp8 (calibration from cache)") == true, "\(second.stdout)")
        #expect(b["perplexity_after"] == a["perplexity_after"])
        // Same input and options, same bytes out, cached or not.
        #expect(try FileSystem.readBytes(dir.file("q1/model.safetensors")) == FileSystem.readBytes(dir.file("q2/model.safetensors")))
        // The checkpoint reads back and evaluates (fake quantization) to the same perplexity.
        let eval = try runKiln(["eval", dir.file("q1"), "--text", Self.data + "tinystories_valid_eval.txt", "--max-tokens", "2000", "--json"])
        #expect(eval.status == 0, "\(eval.stderr)")
        #expect(try JSONValue.parse(eval.stdout)["perplexity"] == a["perplexity_after"])
        let cmp = try runKiln(["compare", model, dir.file("q1"), "--text", Self.data + "tinystories_valid_eval.txt", "--max-tokens", "1000", "--json"])
        #expect(cmp.status == 0, "\(cmp.stderr)")
        let c = try JSONValue.parse(cmp.stdout)
        #expect(c["logit_cosine"]!.doubleValue! > 0.99)
        #expect(c["top1_agreement"]!.doubleValue! > 0.85)
        #expect(c["kl_divergence"]!.doubleValue! > 0)
    }

    @Test func quantizeNeedsCalibrationText() throws {
        let r = try runKiln(["quantize", "m", "--algo", "int8-sq", "--out", "o"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("--algo int8-sq needs --calib FILE (calibration text)"))
    }

    @Test func calibrationTextShorterThanOneSequenceIsRefused() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        try Data("Once upon a time.".utf8).write(to: URL(fileURLWithPath: dir.file("short.txt")))
        let r = try runKiln(["quantize", model, "--algo", "fp8", "--calib", dir.file("short.txt"), "--out", dir.file("q")])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(dir.file("short.txt")): fp8 › text: expected at least 511 tokens for one calibration sequence, found 5"))
        #expect(dir.contents == ["short.txt"])
    }

    @Test func sparsifyMagnitudeIsReportedByInspect() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let r = try runKiln(["sparsify", model, "--method", "magnitude", "--out", dir.file("sparse"), "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try JSONValue.parse(r.stdout)["sparsity"] == "2:4")
        let inspect = try runKiln(["inspect", dir.file("sparse"), "--sparsity", "--json"])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        let tensors = try JSONValue.parse(inspect.stdout)["tensors"]!.arrayValue!
        let q = tensors.first { $0["name"] == "model.layers.0.self_attn.q_proj.weight" }!
        #expect(q["sparsity"]?["groups"] == 1024)
        #expect(q["sparsity"]?["conforming"] == 1024)
        #expect(q["sparsity"]?["zeros"] == 2048)
        let embed = tensors.first { $0["name"] == "model.embed_tokens.weight" }!
        #expect(embed["sparsity"]?["conforming"] != embed["sparsity"]?["groups"])
    }
}
