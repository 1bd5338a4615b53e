import Foundation
import KilnCore
import KilnTestKit
import Testing

/// `kiln inspect` against the reference safetensors library, on the shared real models.
@Suite struct InspectCommandTests {
    /// The real models whose weights are safetensors (SmolLM2 as built by its fetch.sh into KILN_SMOLLM2_DIR).
    /// - Throws: cancels the current test when one is absent.
    static var models: [String] {
        get throws { [try TestEnvironment.sharedModel("stories260K"), try TestEnvironment.smolLM2] }
    }

    @Test func agreesWithPythonSafetensorsOnSharedModels() throws {
        let python = try TestEnvironment.python
        for model in try Self.models {
            let ours = try runKiln(["inspect", model, "--json"])
            #expect(ours.status == 0, "\(ours.stderr)")
            let theirs = try runVerifyScript(python, "safetensors_check.py", ["summary", model])
            #expect(theirs.status == 0, "\(theirs.stderr)")
            let a = try JSONValue.parse(ours.stdout), b = try JSONValue.parse(theirs.stdout)
            #expect(a["parameters"] == b["parameters"])
            let reference = b["tensors"]!.objectValue!
            let tensors = a["tensors"]!.arrayValue!
            #expect(tensors.count == reference.count)
            for t in tensors {
                let name = t["name"]!.stringValue!
                let ref = reference[name]
                #expect(ref != nil, "\(name) not in the reference")
                #expect(t["shape"] == ref?["shape"], "\(name)")
                let dtype = DType(name: t["dtype"]!.stringValue!)
                #expect(dtype?.traits.safetensors == ref?["dtype"]?.stringValue, "\(name)")
            }
        }
    }

    @Test func tableShowsTotalsAndHistogram() throws {
        let model = try TestEnvironment.sharedModel("stories260K")
        let result = try runKiln(["inspect", model, "--limit", "2"])
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines[0] == "\(model) (safetensors)")
        #expect(lines[1] == "tensors: 47   parameters: 260,032   bytes: 1,040,128 (1.04 MB)")
        #expect(lines[2] == "dtypes: f32 47 tensors / 260,032 params")
        #expect(lines[3] == "metadata: format=pt")
        #expect(lines[5] == "NAME                                   DTYPE  SHAPE      PARAMS    BYTES")
        #expect(lines[6] == "model.embed_tokens.weight              f32    [512, 64]  32,768  131,072")
        #expect(lines[8] == "… 45 more (use --limit 0)")
    }

    @Test func missingInputIsAUserError() throws {
        let result = try runKiln(["inspect", "/nonexistent/model.safetensors"])
        #expect(result.status == 1)
        #expect(result.stderr == "error: /nonexistent/model.safetensors: no such file or folder\n")
    }

    @Test func unknownFormatIsAUserError() throws {
        let dir = TemporaryDirectory()
        try Data("hello".utf8).write(to: URL(fileURLWithPath: dir.file("notes.txt")))
        let result = try runKiln(["inspect", dir.file("notes.txt")])
        #expect(result.status == 1)
        #expect(result.stderr.contains("no format plugin recognises this input"))
    }
}
