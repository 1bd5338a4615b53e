import Foundation
import KilnCore
import KilnTestKit
import Testing

/// `kiln quantize` / `kiln sparsify` on bad input (issues 7 and 9): empty or too short calibration text,
/// an exclude pattern that matches nothing, a target format that cannot hold the algorithm. Messages are
/// checked verbatim; a refused run leaves no output.
@Suite struct PassBadInputTests {
    static let data = TestEnvironment.shared + "/data/"

    func write(_ text: String, _ path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    @Test func emptyCalibrationTextIsRefused() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        try write("", dir.file("empty.txt"))
        let r = try runKiln(["quantize", model, "--algo", "int8-sq", "--calib", dir.file("empty.txt"), "--out", dir.file("q")])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(dir.file("empty.txt")): int8-sq: the calibration text is empty"), "\(r.stderr)")
        #expect(dir.contents == ["empty.txt"])
    }

    @Test func sparseGPTCalibrationShorterThanOneSequenceIsRefused() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        try write("Once upon a time.", dir.file("short.txt"))
        let r = try runKiln(["sparsify", model, "--method", "sparsegpt", "--calib", dir.file("short.txt"), "--calib-seq-len", "64",
                             "--out", dir.file("s")])
        #expect(r.status == 1)
        #expect(r.stderr.contains("\(dir.file("short.txt")): sparse-2:4 › text: expected at least 63 tokens for one calibration sequence, found 5"), "\(r.stderr)")
        #expect(dir.contents == ["short.txt"])
    }

    @Test func anExcludePatternMatchingNothingIsAWarning() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let r = try runKiln(["quantize", model, "--algo", "fp8", "--calib", Self.data + "tinystories_valid_calib.txt",
                             "--calib-samples", "2", "--calib-seq-len", "32", "--exclude", "*.no_such_proj", "--exclude", "*.down_proj",
                             "--out", dir.file("q"), "--json"], environment: ["KILN_CACHE_DIR": dir.file("cache")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("warning: fp8: --exclude pattern \"*.no_such_proj\" matches no linear layer"), "\(r.stderr)")
        #expect(!r.stderr.contains("\"*.down_proj\" matches no"))
        #expect(try JSONValue.parse(r.stdout)["excluded"]?.arrayValue?.count == 6, "5 down_proj + lm_head")
    }

    @Test func aTargetThatCannotHoldTheAlgorithmIsRefusedWithTheSupportedOnes() throws {
        let dir = TemporaryDirectory()
        let r = try runKiln(["quantize", "m", "--algo", "fp8", "--calib", "c.txt", "--out", dir.file("q"), "--to", "safetensors"])
        #expect(r.status == 1)
        #expect(r.stderr.contains("--algo fp8 cannot be written --to safetensors (it has no place for quantization scales); supported: trtllm, hf-quant, onnx"), "\(r.stderr)")
        #expect(dir.contents.isEmpty)
    }
}
