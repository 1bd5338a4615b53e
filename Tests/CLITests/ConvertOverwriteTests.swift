import Foundation
import KilnCore
import KilnTestKit
import Testing

/// Every writer refuses an existing output (a file, or a non-empty folder) unless `--overwrite`:
/// the error names it, and nothing is changed or left behind; with `--overwrite` it is replaced.
@Suite struct ConvertOverwriteTests {
    /// (writer, output name, is a folder)
    static let writers: [(String, String, Bool)] = [
        ("safetensors", "m.safetensors", false), ("safetensors", "hf", true), ("trtllm", "trt", true),
        ("hf-quant", "hfq", true), ("onnx", "m.onnx", false),
    ]

    /// Put something at `path`: a folder holding keep.txt, or a file.
    static func occupy(_ path: String, folder: Bool) throws {
        if folder {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            try Data("keep".utf8).write(to: URL(fileURLWithPath: path + "/keep.txt"))
        } else {
            try Data("old bytes".utf8).write(to: URL(fileURLWithPath: path))
        }
    }

    static func refusal(_ path: String, folder: Bool) -> String {
        folder ? "error: \(path): output folder is not empty; pass --overwrite to replace it\n"
            : "error: \(path): output file already exists; pass --overwrite to replace it\n"
    }

    @Test(.requires { try TestEnvironment.sharedModel("stories260K") }, arguments: 0..<writers.count)
    func existingOutputIsRefusedUnlessOverwrite(_ i: Int) throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let (writer, name, folder) = Self.writers[i]
        let dir = TemporaryDirectory()
        let out = dir.file(name)
        try Self.occupy(out, folder: folder)
        let before = dir.contents
        let refused = try runKiln(["convert", model, out, "--to", writer])
        #expect(refused.status == 1)
        #expect(refused.stderr == Self.refusal(out, folder: folder))
        // Nothing changed, nothing left behind.
        #expect(dir.contents == before)
        if folder {
            #expect(FileSystem.list(out) == ["keep.txt"])
            #expect(try String(contentsOfFile: out + "/keep.txt", encoding: .utf8) == "keep")
        } else {
            #expect(try String(contentsOfFile: out, encoding: .utf8) == "old bytes")
        }
        let replaced = try runKiln(["convert", model, out, "--to", writer, "--overwrite"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(dir.contents == before, "no temporary or .old left behind")
        if folder { #expect(!(FileSystem.list(out) ?? []).contains("keep.txt")) }
        let inspect = try runKiln(["inspect", out])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.contains("model.layers.4.mlp.down_proj.weight"))
    }

    @Test func emptyFolderIsReplacedWithoutOverwrite() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let out = dir.file("trt")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let r = try runKiln(["convert", model, out, "--to", "trtllm"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileSystem.list(out)!.contains("rank0.safetensors"))
    }

    @Test func writerOptionInProcess() throws {
        let model = try CheckpointFixture.llama(layers: 1, vocab: 40)
        let dir = TemporaryDirectory()
        let out = dir.file("ckpt")
        try CheckpointFixture.write(model, "trtllm", to: out)
        let first = try Data(contentsOf: URL(fileURLWithPath: out + "/rank0.safetensors"))
        #expect {
            try CheckpointFixture.write(model, "trtllm", to: out, ["tp": "2"])
        } throws: { error in
            (error as? KilnError)?.kind == .invalidInput
                && "\(error)" == "\(out): output folder is not empty; pass --overwrite to replace it"
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/rank0.safetensors")) == first)
        #expect(!FileSystem.exists(out + "/rank1.safetensors"))
        try CheckpointFixture.write(model, "trtllm", to: out, ["tp": "2", "overwrite": "true"])
        #expect(FileSystem.list(out)!.filter { $0.hasPrefix("rank") } == ["rank0.safetensors", "rank1.safetensors"])
        #expect(dir.contents == ["ckpt"])
    }

    /// quantize / sparsify refuse before the passes run, and accept --overwrite.
    @Test func quantizeAndSparsifyRefuseUnlessOverwrite() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let out = dir.file("q")
        try Self.occupy(out, folder: true)
        let q = try runKiln(["quantize", model, "--algo", "int4-rtn", "--out", out, "--to", "hf-quant"])
        #expect(q.status == 1)
        #expect(q.stderr == Self.refusal(out, folder: true))
        let s = try runKiln(["sparsify", model, "--method", "magnitude", "--out", out])
        #expect(s.status == 1)
        #expect(s.stderr == Self.refusal(out, folder: true))
        #expect(FileSystem.list(out) == ["keep.txt"])
        #expect(dir.contents == ["q"])
        let ok = try runKiln(["sparsify", model, "--method", "magnitude", "--out", out, "--overwrite"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(FileSystem.list(out)!.contains("model.safetensors"))
        #expect(dir.contents == ["q"])
    }
}
