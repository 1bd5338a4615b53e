import Foundation
import KilnCore
import KilnEngine
import KilnNumpy
import KilnTestKit
import Testing

/// Shared steps: read an ONNX model, run it in the interpreter on an .npz, compare with onnxruntime
/// (Tools/verify/graph_check.py compare).
enum GraphCheck {
    static func read(_ path: String) throws -> Model {
        try TestEnvironment.plugins.reader(for: path, named: "onnx").read(path: path, context: KilnContext())
    }

    /// Run `model` on `inputs` (an .npz) in the interpreter, write the outputs beside, and return
    /// graph_check's per-output comparison with onnxruntime running `reference` (default: the same model).
    static func compare(_ python: String, model: String, reference: String? = nil, inputs: String, dir: TemporaryDirectory,
                        sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: JSONValue] {
        let interpreter = try GraphInterpreter(model: try read(model))
        let feed = try GraphInputs(npz: inputs, graph: interpreter.graph)
        let outputs = try interpreter.run(feed.values)
        let out = dir.file(URL(fileURLWithPath: model).deletingPathExtension().lastPathComponent + ".kiln.npz")
        try NPZWriter.write(interpreter.graph.outputs.map { outputs[$0.name]!.tensor(name: $0.name) }, to: out, overwrite: true)
        let run = try runVerifyScript(python, "graph_check.py", ["compare", reference ?? model, inputs, out])
        try #require(run.status == 0, "graph_check.py compare: \(run.stderr)", sourceLocation: sourceLocation)
        let line = run.stdout.split(separator: "\n").last.map(String.init) ?? ""
        return try #require(JSONValue.parse(Array(line.utf8))["outputs"]?.objectValue, sourceLocation: sourceLocation)
            .reduce(into: [:]) { $0[$1.0] = $1.1 }
    }

    /// Every output within `relative` × its scale (max |ort|) of onnxruntime, same shape.
    static func expectClose(_ result: [String: JSONValue], relative: Double, _ label: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!result.isEmpty, "\(label): no outputs compared", sourceLocation: sourceLocation)
        for (name, r) in result {
            guard let maxAbs = r["max_abs"]?.doubleValue, let scale = r["scale"]?.doubleValue else {
                Issue.record("\(label) › \(name): shapes differ: \(r)", sourceLocation: sourceLocation)
                continue
            }
            #expect(maxAbs <= relative * max(scale, 1e-6), "\(label) › \(name): max |kiln − ort| \(maxAbs) vs scale \(scale)",
                    sourceLocation: sourceLocation)
        }
    }

    /// Every output of a `compare` result at cosine ≥ `minimum` with its reference.
    static func expectCosine(_ result: [String: JSONValue], atLeast minimum: Double, sourceLocation: SourceLocation = #_sourceLocation) {
        for (name, r) in result {
            #expect((r["cosine"]?.doubleValue ?? 0) >= minimum, "\(name): \(r)", sourceLocation: sourceLocation)
        }
    }

    /// MiniLM's inputs (token ids, attention mask, token types of a few tokenized sentences) as `dir/minilm.npz`,
    /// tokenized by graph_check.py with HF `tokenizers`.
    static func miniLMInputs(_ python: String, folder: String, into dir: TemporaryDirectory) throws -> String {
        let inputs = dir.file("minilm.npz")
        let made = try runVerifyScript(python, "graph_check.py", ["minilm", folder + "/tokenizer.json", inputs])
        try #require(made.status == 0, "\(made.stderr)")
        return inputs
    }

    /// The first `count` samples of a shared `*.eval.npz`, written as a new archive.
    static func firstSamples(_ source: String, _ count: Int, into dir: TemporaryDirectory) throws -> String {
        let model = try NPZReader().read(path: source, context: KilnContext())
        let tensors = try model.tensors.map { t -> Tensor in
            let v = try GraphValue(t)
            let inner = t.shape.dims.dropFirst().reduce(1, *)
            return GraphValue(shape: [count] + t.shape.dims.dropFirst(), floats: Array(v.floats.prefix(count * inner))).tensor(name: t.name)
        }
        let path = dir.file(URL(fileURLWithPath: source).lastPathComponent)
        try NPZWriter.write(tensors, to: path, overwrite: true)
        return path
    }
}

@Suite("Graph interpreter vs onnxruntime")
struct GraphInterpreterTests {
    let dir = TemporaryDirectory("kiln-graph")

    /// Tolerance: max |kiln − onnxruntime| ≤ 1e-4 × max |onnxruntime output| (f32 sums in a different order).
    static let tolerance = 1e-4

    @Test("PP-OCR det / rec / cls on two eval images match onnxruntime",
          .requires { try TestEnvironment.python }, .requires { try TestEnvironment.sharedModel("ppocr-v4-onnx") },
          arguments: ["det", "rec", "cls"])
    func ppocr(_ kind: String) throws {
        let python = try TestEnvironment.python
        let folder = try TestEnvironment.sharedModel("ppocr-v4-onnx")
        let model = try #require(FileSystem.list(folder)?.first { $0.contains("_\(kind)_") && $0.hasSuffix(".onnx") })
        let inputs = try GraphCheck.firstSamples(folder + "/inputs/\(kind).eval.npz", 2, into: dir)
        let result = try GraphCheck.compare(python, model: folder + "/" + model, inputs: inputs, dir: dir)
        GraphCheck.expectClose(result, relative: Self.tolerance, kind)
    }

    @Test("MiniLM (BERT, opset 17) on tokenized sentences matches onnxruntime, int64 outputs exactly")
    func minilm() throws {
        let python = try TestEnvironment.python
        let folder = try TestEnvironment.sharedModel("paraphrase-MiniLM-L3-v2-onnx")
        let inputs = try GraphCheck.miniLMInputs(python, folder: folder, into: dir)
        let result = try GraphCheck.compare(python, model: folder + "/model.onnx", inputs: inputs, dir: dir)
        GraphCheck.expectClose(result, relative: Self.tolerance, "minilm")
        #expect(result["output"]?["max_abs"]?.doubleValue == 0 && result["463"]?["max_abs"]?.doubleValue == 0)
    }

    @Test("single-op models built with onnx.helper (Resize, ConvTranspose, grouped Conv, negative Slice steps, legacy opsets)")
    func ops() throws {
        let python = try TestEnvironment.python
        let made = try runVerifyScript(python, "graph_check.py", ["ops", dir.path])
        try #require(made.status == 0, "\(made.stderr)")
        let names = try #require(JSONValue.parse(Array(made.stdout.utf8))["models"]?.arrayValue).compactMap(\.stringValue)
        #expect(names.count >= 20)
        for name in names {
            let result = try GraphCheck.compare(python, model: dir.file(name + ".onnx"), inputs: dir.file(name + ".npz"), dir: dir)
            GraphCheck.expectClose(result, relative: 1e-5, name)
        }
    }

    /// A small fixed sample of Tools/verify/graph_diff.py (random one/two-node models of every supported op, run by
    /// the `kiln` CLI and by onnxruntime): the summary's total row must count no crash and no mismatch, and every
    /// op must have been generated and have agreed at least once (so a generator that stops producing runnable
    /// models is noticed too).
    @Test("graph_diff.py --count 5 --seed 1: every supported op agrees with onnxruntime, no crash, no mismatch")
    func differential() throws {
        let python = try TestEnvironment.python
        let count = 5
        let run = try runVerifyScript(python, "graph_diff.py", ["--kiln", TestEnvironment.kiln, "--count", "\(count)", "--seed", "1"])
        #expect(run.status == 0, "graph_diff.py exit \(run.status)\n\(run.stdout)\(run.stderr)")
        // Rows: op, models, then agree, mismatch, ort-deviates, kiln-refused, crash, ... (the header's order).
        let rows = run.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let header = try #require(rows.first, "no summary: \(run.stderr)")
        let column = { (name: String) in header.firstIndex(of: name) }
        let total = try #require(rows.first { $0.first == "total" }, "no total row:\n\(run.stdout)")
        let (agree, mismatch, crash) = try (#require(column("agree")), #require(column("mismatch")), #require(column("crash")))
        #expect(total.count == header.count && total[mismatch] == "0" && total[crash] == "0", "\(run.stdout)")
        let ops = rows.dropFirst(2).prefix { $0.first != "total" }
        #expect(ops.count >= 57, "ops covered: \(ops.count)\n\(run.stdout)")
        for row in ops {
            #expect(row.count == header.count && row[1] == "\(count)" && (Int(row[agree]) ?? 0) >= 1, "\(row.joined(separator: " "))")
        }
    }

    /// onnxruntime is no reference here: its max pools keep or drop a NaN depending on where it sits in
    /// the window (graph_diff.py found both); numpy and onnx.reference propagate it, and so does Kiln.
    @Test("MaxPool / GlobalMaxPool give NaN for a window holding a NaN, wherever it sits (Swift.max dropped a NaN that came second)")
    func maxPoolNaN() throws {
        let x = GraphValue(shape: [1, 1, 1, 5], floats: [1, .nan, 3, 2, 5])
        func run(_ node: Node) throws -> [Float] {
            let model = try Model(graph: Graph(inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")], nodes: [node]))
            model.opsetImports = ["": 17]
            return try #require(try GraphInterpreter(model: model).run(["x": x])["y"]).floats
        }
        let pooled = try run(Node(name: "pool", opType: "MaxPool", inputs: ["x"], outputs: ["y"], attributes: [("kernel_shape", .ints([1, 2]))]))
        #expect(pooled.count == 4 && pooled[0].isNaN && pooled[1].isNaN && pooled[2] == 3 && pooled[3] == 5, "\(pooled)")
        let global = try run(Node(name: "global", opType: "GlobalMaxPool", inputs: ["x"], outputs: ["y"]))
        #expect(global.count == 1 && global[0].isNaN, "\(global)")
    }

    @Test("an op the interpreter lacks fails naming the op type and the node")
    func unsupportedOp() throws {
        let graph = Graph(inputs: [ValueInfo(name: "x", dtype: .f32, dims: [.fixed(2)])], outputs: [ValueInfo(name: "y")],
                          nodes: [Node(name: "fft_node", opType: "DFT", inputs: ["x"], outputs: ["y"])])
        let model = try Model(graph: graph)
        let interpreter = try GraphInterpreter(model: model)
        do {
            _ = try interpreter.run(["x": GraphValue(shape: [2], floats: [1, 2])])
            Issue.record("expected an error")
        } catch let e as KilnError {
            #expect(e.kind == .unsupported && "\(e)".contains("DFT") && "\(e)".contains("fft_node"), "\(e)")
        }
    }

    @Test("a node reading an undefined value is refused at construction, naming node and input")
    func undefinedInput() throws {
        let graph = Graph(inputs: [ValueInfo(name: "x")], outputs: [ValueInfo(name: "y")],
                          nodes: [Node(name: "add", opType: "Add", inputs: ["x", "nowhere"], outputs: ["y"])])
        #expect(throws: KilnError.self) { try GraphInterpreter(model: try Model(graph: graph)) }
        do { _ = try GraphInterpreter(model: try Model(graph: graph)) } catch let e as KilnError {
            #expect("\(e)".contains("nowhere") && "\(e)".contains("node \"add\""), "\(e)")
        }
    }
}
