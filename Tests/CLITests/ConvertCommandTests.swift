import Foundation
import KilnCore
import KilnTestKit
import Testing

/// `kiln convert`: exact copies, casts equal to ml_dtypes, shards, refusals without leftovers.
@Suite struct ConvertCommandTests {
    @Test func copyWithoutCastKeepsTensorBytes() throws {
        let python = try TestEnvironment.python
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let result = try runKiln(["convert", model + "/model.safetensors", dir.file("copy.safetensors")])
        #expect(result.status == 0, "\(result.stderr)")
        let check = try runVerifyScript(python, "safetensors_check.py", ["equal", model + "/model.safetensors", dir.file("copy.safetensors")])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test(.requires { try TestEnvironment.python }, .requires { try TestEnvironment.sharedModel("stories260K") },
          arguments: ["bf16", "f16"])
    func castEqualsMlDtypes(_ dtype: String) throws {
        let python = try TestEnvironment.python
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let out = dir.file("cast")
        let result = try runKiln(["convert", model, out, "--dtype", dtype, "--max-shard-size", "150KB"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileSystem.list(out)!.contains("tokenizer.json"))
        #expect(FileSystem.list(out)!.contains("model-00004-of-00004.safetensors"), "\(FileSystem.list(out)!)")
        let check = try runVerifyScript(python, "safetensors_check.py", ["cast", model, out, dtype])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test func badInputExitsOneAndLeavesNoOutput() throws {
        let dir = TemporaryDirectory()
        var bytes = SafetensorsFixture.valid()
        bytes.removeLast(3)
        try SafetensorsFixture.write(bytes, to: dir.file("cut.safetensors"))
        let result = try runKiln(["convert", dir.file("cut.safetensors"), dir.file("out.safetensors"), "--dtype", "bf16"])
        #expect(result.status == 1)
        #expect(!result.signalled)
        #expect(result.stderr == "error: \(dir.file("cut.safetensors")): header › tensor \"w\" › data_offsets: expected end ≤ 13 (data bytes in the file), found 16 (truncated file)\n")
        #expect(dir.contents == ["cut.safetensors"])
    }

    @Test func badDtypeFlagIsAUsageError() throws {
        let result = try runKiln(["convert", "a.safetensors", "b.safetensors", "--dtype", "int3"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("--dtype must be f32, f16 or bf16 (found \"int3\")"))
    }

    @Test func badShardSizeIsAUserError() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let dir = TemporaryDirectory()
        let result = try runKiln(["convert", model, dir.file("o"), "--max-shard-size", "lots"])
        #expect(result.status == 1)
        #expect(result.stderr == "error: --max-shard-size: expected a size like 500MB, 2GB or a byte count, found \"lots\"\n")
        #expect(dir.contents.isEmpty)
    }

    @Test func demoRuns() throws {
        let dir = TemporaryDirectory()
        let result = try runKiln(["demo", "--workdir", dir.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("dtypes: bf16 20 tensors / 123,712 params"))
        #expect(FileSystem.list(dir.path) == ["model-bf16", "model-f32"])
    }
}
