import Foundation
import KilnCore
import KilnTestKit
import Testing

/// DESIGN §9: same input + options ⇒ byte-identical output. Every `kiln quantize` algorithm runs
/// three times on stories260K — statistics computed, computed again in a fresh cache, and read
/// back from the first run's cache — and the three outputs must be equal file for file, byte for byte.
@Suite struct QuantizeDeterminismTests {
    /// `algorithm:writer` pairs: every algorithm with the default writer, and the other writers once.
    static let cases = [
        "fp8:hf-quant", "int8-sq:hf-quant", "int4-awq:hf-quant", "w4a8-awq:hf-quant", "int4-rtn:hf-quant",
        "fp8:trtllm", "int8-sq:onnx",
    ]

    /// Every file under `folder` (or the file itself), relative path → bytes.
    static func tree(_ path: String) throws -> [String: [UInt8]] {
        guard FileSystem.isDirectory(path) else { return ["": try FileSystem.readBytes(path)] }
        var out: [String: [UInt8]] = [:]
        for name in FileSystem.list(path) ?? [] {
            for (sub, bytes) in try tree(path + "/" + name) { out[sub.isEmpty ? name : name + "/" + sub] = bytes }
        }
        return out
    }

    @Test(.requires { try TestEnvironment.sharedModel("stories260K") },
          .requires { try TestEnvironment.sharedFile("data/tinystories_valid_calib.txt") }, arguments: cases)
    func sameInputGivesSameBytes(_ pair: String) throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let calib = try TestEnvironment.sharedFile("data/tinystories_valid_calib.txt")
        let parts = pair.split(separator: ":").map(String.init)
        let (algo, writer) = (parts[0], parts[1])
        let dir = TemporaryDirectory("kiln-determinism")
        func quantize(_ name: String, cache: String) throws -> [String: [UInt8]]? {
            let out = dir.file(writer == "onnx" ? name + ".onnx" : name)
            var args = ["quantize", model, "--algo", algo, "--out", out, "--to", writer,
                        "--calib-samples", "8", "--calib-seq-len", "64"]
            if algo != "int4-rtn" { args += ["--calib", calib] }
            if algo.contains("int4") || algo.contains("w4a8") { args += ["--group-size", "32", "--option", "indivisible=skip"] }
            if writer == "trtllm" { args += ["--tp", "2"] }
            let result = try runKiln(args, environment: ["KILN_CACHE_DIR": dir.file(cache)])
            #expect(result.status == 0, "\(pair) run \(name): \(result.stderr)")
            return result.status == 0 ? try Self.tree(out) : nil
        }
        guard let first = try quantize("a", cache: "cache-a"), let second = try quantize("b", cache: "cache-b"),
              let cached = try quantize("c", cache: "cache-a") else { return }
        #expect(!first.isEmpty)
        for (label, other) in [("a second run", second), ("a run from the calibration cache", cached)] {
            #expect(other.keys.sorted() == first.keys.sorted(), "\(pair): \(label) wrote other files")
            for (name, bytes) in first.sorted(by: { $0.key < $1.key }) where other[name] != bytes {
                let theirs = other[name] ?? []
                let at = zip(bytes.indices, zip(bytes, theirs)).first { $0.1.0 != $0.1.1 }?.0 ?? min(bytes.count, theirs.count)
                Issue.record("\(pair): \(name) differs in \(label) (first difference at byte \(at))")
            }
        }
    }

    /// ONNX post-training quantization (the interpreter calibrates on npz inputs): the PP-OCR classifier,
    /// INT8 with TensorRT placement, INT8 with output pairs and a sensitivity search, and FP8 — twice each.
    @Test(.requires { try TestEnvironment.sharedModel("ppocr-v4-onnx/ch_ppocr_mobile_v2.0_cls_infer.onnx") },
          .requires { try TestEnvironment.sharedModel("ppocr-v4-onnx/inputs/cls.calib.npz") },
          arguments: [["int8"], ["int8", "--option", "output-qdq=true", "--option", "exclude-sensitive=2"], ["fp8"]])
    func graphQuantizationGivesSameBytes(_ options: [String]) throws {
        let model = try TestEnvironment.sharedModel("ppocr-v4-onnx/ch_ppocr_mobile_v2.0_cls_infer.onnx")
        let calib = try TestEnvironment.sharedModel("ppocr-v4-onnx/inputs/cls.calib.npz")
        let dir = TemporaryDirectory("kiln-determinism-graph")
        var outputs: [[UInt8]] = []
        for run in ["a", "b"] {
            let out = dir.file(run + ".onnx")
            let result = try runKiln(["quantize", model, "--algo"] + options + ["--calib", calib, "--calib-samples", "4",
                                                                                 "--out", out, "--to", "onnx"])
            #expect(result.status == 0, "\(options) run \(run): \(result.stderr)")
            guard result.status == 0 else { return }
            outputs.append(try FileSystem.readBytes(out))
        }
        #expect(!outputs[0].isEmpty)
        #expect(outputs[0] == outputs[1], "\(options): two runs wrote different bytes")
    }
}
