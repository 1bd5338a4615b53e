import Foundation
import KilnCore
import KilnTestKit
import Testing

/// `kiln inspect` and `kiln convert` on ONNX models through the CLI.
@Suite struct ONNXCommandTests {
    static let stories = "stories260K/onnx/model.onnx"

    @Test func inspectShowsTheInitializers() throws {
        let model = try TestEnvironment.sharedModel(Self.stories)
        let result = try runKiln(["inspect", model, "--limit", "1"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "\(model) (onnx)")
        #expect(lines.dropFirst().first == "tensors: 67   parameters: 260,057   bytes: 1,040,285 (1.04 MB)")
        #expect(lines.contains { $0.hasPrefix("m.model.layers.0.input_layernorm.weight") && $0.contains("f32") && $0.contains("[64]") })
    }

    @Test func convertWithExternalDataRunsTheSame() throws {
        let model = try TestEnvironment.sharedModel(Self.stories)
        let dir = TemporaryDirectory()
        let out = dir.file("copy.onnx")
        let result = try runKiln(["convert", model, out, "--external-data"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("wrote \(out) (onnx): 67 tensors"))
        #expect(dir.contents == ["copy.onnx", "copy.onnx.data"])
        let python = try TestEnvironment.python
        let check = try runVerifyScript(python, "onnx_check.py", ["check", out])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let compare = try runVerifyScript(python, "onnx_check.py", ["compare", model, out, "--int-high", "512"])
        #expect(compare.status == 0, "\(compare.stdout)\(compare.stderr)")
        // And back to a single file.
        let inline = try runKiln(["convert", out, dir.file("inline.onnx")])
        #expect(inline.status == 0, "\(inline.stderr)")
        #expect(dir.contents == ["copy.onnx", "copy.onnx.data", "inline.onnx"])
    }

    @Test func truncatedModelExitsOneAndLeavesNoOutput() throws {
        let model = try TestEnvironment.sharedModel(Self.stories)
        let dir = TemporaryDirectory()
        try Data(try FileSystem.readBytes(model).prefix(100_000)).write(to: URL(fileURLWithPath: dir.file("cut.onnx")))
        for flags in [[], ["--external-data"]] {
            let result = try runKiln(["convert", dir.file("cut.onnx"), dir.file("out.onnx")] + flags)
            #expect(result.status == 1)
            #expect(!result.signalled)
            #expect(result.stderr == "error: \(dir.file("cut.onnx"))@0x1F: graph: invalid protobuf: a length-delimited field of 1424195 bytes runs past the end of its message (truncated file?)\n")
            #expect(dir.contents == ["cut.onnx"])
        }
    }
}
