import Foundation
import KilnCore
@testable import KilnEngine
import KilnNumpy
import KilnTestKit
import Testing

@Suite("ONNX post-training quantization (GraphQuantizer → Q/DQ ONNX)")
struct GraphQuantizerTests {
    let dir = TemporaryDirectory("kiln-ptq")

    /// Quantize a shared PP-OCR model on `samples` calibration images and write it as ONNX.
    func quantize(_ kind: String, samples: Int, options: GraphQuantizer.Options = GraphQuantizer.Options())
        throws -> (source: String, output: String, report: GraphQuantizer.Report) {
        let folder = try TestEnvironment.sharedModel("ppocr-v4-onnx")
        let name = try #require(FileSystem.list(folder)?.first { $0.contains("_\(kind)_") && $0.hasSuffix(".onnx") })
        let model = try GraphCheck.read(folder + "/" + name)
        var o = options
        o.samples = samples
        let calibration = try GraphInputs(npz: folder + "/inputs/\(kind).calib.npz", graph: try #require(model.graph))
        let report = try GraphQuantizer.quantize(model, calibration: calibration, options: o)
        let output = dir.file("\(kind).q.onnx")
        try TestEnvironment.plugins.writer(named: "onnx", for: output).write(model, to: output, context: KilnContext())
        return (folder + "/" + name, output, report)
    }

    /// onnx.checker full check of a written file; the JSON graph_check printed.
    func check(_ python: String, _ path: String) throws -> JSONValue {
        let run = try runVerifyScript(python, "graph_check.py", ["check", path])
        try #require(run.status == 0, "check_model(full_check=True) failed on \(path): \(run.stderr)")
        return try JSONValue.parse(Array((run.stdout.split(separator: "\n").last.map(String.init) ?? "").utf8))
    }

    /// A quantized cls model on 8 eval images: Kiln's interpreter (weights folded back into QuantSpecs, activations
    /// fake-quantized) vs onnxruntime on the same Q/DQ file at cosine ≥ 0.9999, and the same class as FP32 in
    /// onnxruntime for every image.
    func expectClassifierAgrees(_ python: String, _ q: (source: String, output: String, report: GraphQuantizer.Report),
                                sourceLocation: SourceLocation = #_sourceLocation) throws {
        let inputs = try GraphCheck.firstSamples(TestEnvironment.shared + "/models/ppocr-v4-onnx/inputs/cls.eval.npz", 8, into: dir)
        GraphCheck.expectCosine(try GraphCheck.compare(python, model: q.output, inputs: inputs, dir: dir), atLeast: 0.9999,
                                sourceLocation: sourceLocation)
        for (name, r) in try GraphCheck.compare(python, model: q.output, reference: q.source, inputs: inputs, dir: dir) {
            #expect(r["argmax_agreement"]?.doubleValue == 1, "\(name): \(r)", sourceLocation: sourceLocation)
        }
    }

    @Test("cls (opset 11) INT8: valid opset-13 Q/DQ file; Kiln's fake-quant run of it matches onnxruntime (cosine ≥ 0.9999); top-1 = FP32")
    func classifier() throws {
        let python = try TestEnvironment.python
        let q = try quantize("cls", samples: 4)
        #expect(q.report.quantizedNodes.count == 54 && q.report.calibrationSamples == 4)
        let info = try check(python, q.output)
        #expect(info["opset"]?.intValue == 13)
        #expect(info["quantize_linear"]?.intValue == 54 && info["dequantize_linear"]?.intValue == 108)
        try expectClassifierAgrees(python, q)
    }

    @Test("det (ConvTranspose, Resize, opset 12) INT8 with an excluded node: valid, runs in onnxruntime like in Kiln")
    func detector() throws {
        let python = try TestEnvironment.python
        var options = GraphQuantizer.Options()
        options.exclude = ["p2o.ConvTranspose.2"]
        options.range = .max
        let q = try quantize("det", samples: 2, options: options)
        #expect(q.report.excludedNodes.count == 1 && q.report.excludedNodes == ["p2o.ConvTranspose.2"], "\(q.report.excludedNodes)")
        #expect(!q.report.quantizedNodes.isEmpty && q.report.quantizedNodes.contains("p2o.ConvTranspose.0"))
        _ = try check(python, q.output)
        let inputs = try GraphCheck.firstSamples(TestEnvironment.shared + "/models/ppocr-v4-onnx/inputs/det.eval.npz", 1, into: dir)
        GraphCheck.expectCosine(try GraphCheck.compare(python, model: q.output, inputs: inputs, dir: dir), atLeast: 0.9999)
    }

    @Test("cls FP8 E4M3: valid opset-19 Q/DQ file; Kiln's run of it matches onnxruntime (cosine ≥ 0.9999)")
    func classifierFP8() throws {
        var options = GraphQuantizer.Options()
        options.algorithm = .fp8
        let python = try TestEnvironment.python
        let q = try quantize("cls", samples: 4, options: options)
        #expect(try check(python, q.output)["opset"]?.intValue == 19)
        let inputs = try GraphCheck.firstSamples(TestEnvironment.shared + "/models/ppocr-v4-onnx/inputs/cls.eval.npz", 4, into: dir)
        GraphCheck.expectCosine(try GraphCheck.compare(python, model: q.output, inputs: inputs, dir: dir), atLeast: 0.9999)
    }

    @Test("exclude-sensitive keeps the nodes whose quantization alone moves the outputs most in f32")
    func sensitivity() throws {
        var options = GraphQuantizer.Options()
        options.excludeSensitive = 2
        options.batch = 2
        let q = try quantize("cls", samples: 2, options: options)
        #expect(q.report.sensitiveNodes.count == 2 && q.report.quantizedNodes.count == 52)
        #expect(Set(q.report.excludedNodes) == Set(q.report.sensitiveNodes.map(\.node)))
        #expect(q.report.sensitiveNodes[0].error >= q.report.sensitiveNodes[1].error && q.report.sensitiveNodes[1].error > 0)
        let written = try GraphCheck.read(q.output)
        for node in q.report.excludedNodes {
            let conv = try #require(written.graph?.nodes.first { $0.name == node })
            #expect(written[conv.inputs[1]]?.quant == nil, "\(node) should stay in f32")
        }
    }

    @Test("output-qdq: a Q→DQ pair after each quantized node; valid, Kiln's run matches onnxruntime (cosine ≥ 0.9999), top-1 = FP32")
    func outputPairs() throws {
        var options = GraphQuantizer.Options()
        options.outputQDQ = true
        let python = try TestEnvironment.python
        let q = try quantize("cls", samples: 4, options: options)
        let info = try check(python, q.output)
        // 54 input pairs + one output pair per quantized node whose output is not a graph output.
        #expect(info["quantize_linear"]?.intValue == 108, "\(info)")
        try expectClassifierAgrees(python, q)
    }

    @Test("output-qdq, output-range=max, in-context sensitivity: nodes ranked with their output pairs; excluded ones lose both pairs; valid, matches onnxruntime, top-1 = FP32")
    func outputPairsInContext() throws {
        var options = GraphQuantizer.Options()
        options.outputQDQ = true
        options.outputRange = .max
        options.excludeSensitive = 2
        options.sensitivity = .inContext
        options.batch = 2
        let python = try TestEnvironment.python
        let q = try quantize("cls", samples: 2, options: options)
        #expect(q.report.sensitiveNodes.count == 2 && q.report.quantizedNodes.count == 52)
        #expect(Set(q.report.excludedNodes) == Set(q.report.sensitiveNodes.map(\.node)))
        #expect(q.report.sensitiveNodes[0].error >= q.report.sensitiveNodes[1].error && q.report.sensitiveNodes[0].error > 0,
                "\(q.report.sensitiveNodes)")
        let info = try check(python, q.output)
        // 52 input pairs + 52 output pairs (cls's graph output is a Softmax, not a quantized node).
        #expect(info["quantize_linear"]?.intValue == 104, "\(info)")
        let written = try GraphCheck.read(q.output)
        #expect(written.graph?.nodes.filter { $0.name.hasSuffix("_output_QuantizeLinear") }.count == 52)
        for node in q.report.excludedNodes {
            let conv = try #require(written.graph?.nodes.first { $0.name == node })
            #expect(written[conv.inputs[1]]?.quant == nil, "\(node) should stay in f32")
            #expect(written.graph?.nodes.contains { $0.name == node + "_output_QuantizeLinear" } == false, "\(node) should have no output pair")
        }
        try expectClassifierAgrees(python, q)
    }

    @Test("MiniLM (opset 17, MatMul initializers) INT8: valid; Kiln matches onnxruntime on it; pooled output close to FP32")
    func minilm() throws {
        let python = try TestEnvironment.python
        let folder = try TestEnvironment.sharedModel("paraphrase-MiniLM-L3-v2-onnx")
        let inputs = try GraphCheck.miniLMInputs(python, folder: folder, into: dir)
        let model = try GraphCheck.read(folder + "/model.onnx")
        let report = try GraphQuantizer.quantize(model, calibration: try GraphInputs(npz: inputs, graph: try #require(model.graph)),
                                                 options: GraphQuantizer.Options())
        #expect(report.quantizedNodes.count == 18)
        let output = dir.file("minilm.q.onnx")
        try TestEnvironment.plugins.writer(named: "onnx", for: output).write(model, to: output, context: KilnContext())
        #expect(try check(python, output)["opset"]?.intValue == 17)
        GraphCheck.expectCosine(try GraphCheck.compare(python, model: output, inputs: inputs, dir: dir), atLeast: 0.9999)
        let fp32 = try GraphCheck.compare(python, model: output, reference: folder + "/model.onnx", inputs: inputs, dir: dir)
        #expect((fp32["461"]?["cosine"]?.doubleValue ?? 0) >= 0.99, "\(fp32)")
    }

    @Test("range methods: max ≥ mse and percentile ranges; all positive")
    func rangeMethods() {
        var stats = RangeStatistics()
        let values: [Float] = (0..<10_000).map { i in Float(i % 1000) / 1000 } + [50]
        values.withUnsafeBufferPointer { stats.observeMax($0.baseAddress!, $0.count) }
        values.withUnsafeBufferPointer { stats.observeHistogram($0.baseAddress!, $0.count) }
        var ranges: [RangeMethod: Float] = [:]
        for m in RangeMethod.allCases { ranges[m] = stats.range(m, percentile: 99.9, levels: 127, fp8: false) }
        #expect(ranges[.max] == 50)
        #expect(ranges[.percentile]! < 50 && ranges[.percentile]! > 0.9)
        #expect(ranges[.mse]! < 50 && ranges[.mse]! > 0)
    }

    @Test("calibration inputs missing a graph input are refused, naming the file and the member")
    func missingInput() throws {
        let graph = Graph(inputs: [ValueInfo(name: "x", dtype: .f32, dims: [.unknown])], outputs: [ValueInfo(name: "x")])
        let path = dir.file("wrong.npz")
        try NPZWriter.write([GraphValue(shape: [1], floats: [1]).tensor(name: "y")], to: path)
        do {
            _ = try GraphInputs(npz: path, graph: graph)
            Issue.record("accepted")
        } catch let e as KilnError {
            #expect(e.file == path && "\(e)".contains("member \"x.npy\""), "\(e)")
        }
    }
}
