import Foundation
import KilnCore
import KilnTestKit
import Testing

/// `kiln run` and `kiln quantize … --calib X.npz` on a graph model through the CLI.
@Suite struct GraphCommandTests {
    static let cls = "ppocr-v4-onnx/ch_ppocr_mobile_v2.0_cls_infer.onnx"
    static let clsInputs = "ppocr-v4-onnx/inputs/cls.eval.npz"

    @Test func runPrintsOutputsAndWritesThem() throws {
        let model = try TestEnvironment.sharedModel(Self.cls)
        let inputs = try TestEnvironment.sharedModel(Self.clsInputs)
        let dir = TemporaryDirectory()
        let result = try runKiln(["run", model, "--inputs", inputs, "--output", dir.file("out.npz"), "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONValue.parse(Array(result.stdout.utf8))
        let out = try #require(json["outputs"]?["save_infer_model/scale_0.tmp_1"])
        #expect(out["shape"]?.arrayValue?.compactMap(\.intValue) == [32, 2])
        #expect(out["min"]!.doubleValue! >= 0 && out["max"]!.doubleValue! <= 1)
        #expect(dir.contents == ["out.npz"])
    }

    @Test func runRefusesInputsThatDoNotFit() throws {
        let model = try TestEnvironment.sharedModel(Self.cls)
        let dir = TemporaryDirectory()
        // An .npz whose member names no graph input (the cls model's input is "x").
        let python = try TestEnvironment.python
        let made = try runProcess(python, ["-c", "import numpy as np; np.savez('\(dir.file("bad.npz"))', y=np.zeros((1, 3, 48, 192), np.float32))"])
        try #require(made.status == 0, "\(made.stderr)")
        let result = try runKiln(["run", model, "--inputs", dir.file("bad.npz")])
        #expect(result.status == 1)
        #expect(result.stderr.contains("bad.npz") && result.stderr.contains("member \"x.npy\""), "\(result.stderr)")
    }

    @Test func quantizeGraphNeedsInt8OrFP8() throws {
        let model = try TestEnvironment.sharedModel(Self.cls)
        let inputs = try TestEnvironment.sharedModel(Self.clsInputs)
        let dir = TemporaryDirectory()
        let result = try runKiln(["quantize", model, "--algo", "int4-awq", "--calib", inputs, "--out", dir.file("q.onnx"), "--to", "onnx"])
        #expect(result.status != 0 && result.stderr.contains("--algo must be int8 or fp8"), "\(result.stderr)")
        #expect(dir.contents.isEmpty)
    }

    /// Flags and --option keys the graph flow would not read are refused, not silently dropped.
    @Test func quantizeGraphRefusesWhatItWouldIgnore() throws {
        let model = try TestEnvironment.sharedModel(Self.cls)
        let inputs = try TestEnvironment.sharedModel(Self.clsInputs)
        let dir = TemporaryDirectory()
        let base = ["quantize", model, "--algo", "int8", "--calib", inputs, "--out", dir.file("q.onnx")]
        var r = try runKiln(base + ["--to", "onnx", "--option", "exclude-sensitve=8"])
        #expect(r.status != 0 && r.stderr.contains("unknown --option exclude-sensitve") && r.stderr.contains("exclude-sensitive"), "\(r.stderr)")
        r = try runKiln(base + ["--to", "onnx", "--group-size", "64", "--alpha", "0.5"])
        #expect(r.status != 0 && r.stderr.contains("--group-size, --alpha do not apply to a graph model"), "\(r.stderr)")
        r = try runKiln(base + ["--to", "trtllm"])
        #expect(r.status != 0 && r.stderr.contains("written with --to onnx (found --to trtllm)"), "\(r.stderr)")
        #expect(dir.contents.isEmpty)
    }

    @Test func quantizeGraphWritesQDQ() throws {
        let model = try TestEnvironment.sharedModel(Self.cls)
        let inputs = try TestEnvironment.sharedModel(Self.clsInputs)
        let dir = TemporaryDirectory()
        let result = try runKiln(["quantize", model, "--algo", "int8", "--calib", inputs, "--calib-samples", "2",
                                  "--exclude", "Conv@0", "--out", dir.file("q.onnx"), "--to", "onnx", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try JSONValue.parse(Array(result.stdout.utf8))
        #expect(json["algorithm"]?.stringValue == "INT8")
        #expect(json["quantized_tensors"]?.intValue == 53)
        #expect(json["excluded"]?.arrayValue?.compactMap(\.stringValue) == ["Conv@0"])
        #expect(dir.contents == ["q.onnx"])
    }
}
