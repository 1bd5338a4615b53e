import Foundation
import KilnCore
import KilnTestKit
import Testing

/// The malformed-input corpus (Tools/corpus/make_corpus.py, issue 10): every bad file is refused
/// by `kiln inspect` / `kiln convert` (`kiln eval` for tokenizers) with exit code 1 (not 2, not a signal), one `error: ` line
/// naming the file and the problem, and nothing left in the output folder.
@Suite struct MalformedCorpusTests {
    /// One manifest entry.
    struct Case {
        let name: String
        let path: String
        let command: String
        let file: String
        let expect: String
        let plugin: String?
        let args: [String]

        init(_ json: JSONValue) throws {
            func string(_ key: String) throws -> String {
                guard let s = json[key]?.stringValue else { throw KilnError(.invalidInput, path: [key], "missing in manifest entry \(json)") }
                return s
            }
            name = try string("name")
            path = try string("path")
            command = try string("command")
            file = try string("file")
            expect = try string("expect")
            plugin = json["plugin"]?.stringValue
            args = json["args"]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
    }

    /// Generate the corpus into `dir`; the cases of its manifest.
    static func generate(_ python: String, into dir: String) throws -> [Case] {
        let script = TestEnvironment.repoRoot + "/Tools/corpus/make_corpus.py"
        let result = try runProcess(python, [script, dir])
        guard result.status == 0 else {
            throw KilnError(.internal, file: script, "corpus generation failed: \(result.stdout)\(result.stderr)")
        }
        let manifest = try JSONValue.parse(FileSystem.readBytes(dir + "/manifest.json"))
        return try (manifest["cases"]?.arrayValue ?? []).map(Case.init)
    }

    /// What is wrong with kiln's answer to `c`, or nil when it is a clean refusal.
    static func problems(_ c: Case, corpus: String, output: TemporaryDirectory) throws -> [String] {
        let input = corpus + "/" + c.path
        var arguments: [String]
        switch c.command {
        case "inspect":
            arguments = ["inspect", input]
        case "convert":
            let target = FileSystem.isDirectory(input) ? output.file("converted") : output.file("converted.safetensors")
            arguments = ["convert", input, target, "--dtype", "bf16"]
        case "eval":
            // Tokenizer cases: a valid tiny model folder with a bad tokenizer file beside it.
            arguments = ["eval", input, "--text", input + "/text.txt", "--seq-len", "16"]
        default:
            return ["unknown command \"\(c.command)\" in the manifest"]
        }
        if let plugin = c.plugin { arguments += ["--plugin", corpus + "/" + plugin] }
        arguments += c.args
        let result = try runKiln(arguments)
        var found: [String] = []
        if result.signalled { found.append("killed by a signal (a crash)") }
        if result.status != 1 { found.append("exit code \(result.status), expected 1") }
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.count != 2 || !lines[1].isEmpty || !result.stderr.hasPrefix("error: ") {
            found.append("stderr is not one line starting with \"error: \"")
        }
        if !result.stderr.contains(corpus + "/" + c.file) { found.append("the message does not name \(c.file)") }
        if !result.stderr.contains(c.expect) { found.append("the message does not contain \"\(c.expect)\"") }
        if !output.contents.isEmpty { found.append("left behind in the output folder: \(output.contents)") }
        if !result.stdout.isEmpty { found.append("wrote to stdout: \(result.stdout.prefix(200))") }
        return found.isEmpty ? [] : found + ["stderr: \(result.stderr.prefix(600))"]
    }

    @Test func everyMalformedInputIsRefusedCleanly() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-corpus")
        let corpus = dir.file("corpus")
        let cases = try Self.generate(python, into: corpus)
        #expect(cases.count >= 40, "the corpus should hold at least 40 cases, found \(cases.count)")
        let categories = Set(cases.map { $0.path.split(separator: "/").first.map(String.init) ?? "" })
        #expect(categories.isSuperset(of: ["st", "index", "hf", "onnx", "trtllm", "hfquant", "tokenizer", "plugin"]), "\(categories.sorted())")
        for c in cases {
            let output = TemporaryDirectory("kiln-corpus-out")
            let found = try Self.problems(c, corpus: corpus, output: output)
            #expect(found.isEmpty, "\(c.name) (\(c.command) \(c.path)): \(found.joined(separator: "; "))")
        }
    }

    @Test func generatorIsDeterministic() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-corpus")
        _ = try Self.generate(python, into: dir.file("a"))
        _ = try Self.generate(python, into: dir.file("b"))
        let a = try FileSystem.readBytes(dir.file("a/manifest.json"))
        let b = try FileSystem.readBytes(dir.file("b/manifest.json"))
        #expect(a == b)
        for probe in ["st/deep-nesting/model.safetensors", "onnx/deep-subgraphs/model.onnx", "trtllm/extra-rank/rank0.safetensors"] {
            #expect(try FileSystem.readBytes(dir.file("a/" + probe)) == FileSystem.readBytes(dir.file("b/" + probe)), "\(probe)")
        }
    }
}
