import Foundation
import KilnCore
import KilnTestKit
import Testing

/// `kiln convert --to trtllm --tp N`, `kiln inspect` of the checkpoint, and the way back to safetensors.
@Suite struct ConvertTensorRTLLMTests {
    @Test func convertInspectAndBack() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let out = dir.file("trt")
        let convert = try runKiln(["convert", model, out, "--to", "trtllm", "--tp", "2"])
        #expect(convert.status == 0, "\(convert.stderr)")
        #expect(convert.stdout.hasPrefix("wrote \(out) (trtllm): 47 tensors"))
        #expect(FileSystem.list(out)!.filter { $0.hasPrefix("rank") } == ["rank0.safetensors", "rank1.safetensors"])
        let inspect = try runKiln(["inspect", out])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.hasPrefix("\(out) (trtllm)\ntensors: 47   parameters: 260,032"))
        #expect(inspect.stdout.contains("trtllm.tp_size=2"))
        #expect(inspect.stdout.contains("model.layers.4.mlp.down_proj.weight"))
        let back = try runKiln(["convert", out, dir.file("hf"), "--to", "safetensors"])
        #expect(back.status == 0, "\(back.stderr)")
        let original = try SafetensorsCheckpoint.readFolder(model)
        let roundTrip = try SafetensorsCheckpoint.readFolder(dir.file("hf"))
        let d = try ModelDiff.differences(original, roundTrip)
        #expect(d.isEmpty, "\(d)")
        let python = try TestEnvironment.python
        let check = try runVerifyScript(python, "trtllm_check.py", ["trtllm", out, model + "/model.safetensors"])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test func tpThatDoesNotDivideIsAUserErrorWithoutOutput() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let result = try runKiln(["convert", model, dir.file("trt"), "--to", "trtllm", "--tp", "8"])
        #expect(result.status == 1)
        #expect(result.stderr == "error: tensor \"model.layers.0.mlp.gate_proj.weight\": dim 0 (172) is not divisible by tp 8 (column-parallel mlp.fc)\n")
        #expect(dir.contents.isEmpty)
    }

    @Test func badTPFlagIsAUsageError() throws {
        let result = try runKiln(["convert", "a", "b", "--to", "trtllm", "--tp", "0"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("--tp must be between 1 and 64 (found 0)"))
    }
}
