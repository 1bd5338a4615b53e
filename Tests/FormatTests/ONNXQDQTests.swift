import Foundation
import KilnCore
import KilnHost
import KilnTestKit
import Testing

/// Q/DQ export of quantized IR tensors (TensorRT explicit quantization) and the fold back on import.
@Suite struct ONNXQDQTests {
    /// (format, static activation scales, Q/DQ format name for onnx_check.py, onnxruntime level)
    static let variants: [(name: String, format: QuantSpec.Format, activations: Bool, check: String, opt: String)] = [
        ("int8 W8A8", .int8, true, "int8", "all"),
        ("fp8 W8A8", .fp8e4m3, true, "fp8", "basic"),
        ("int4 W4A16", .int4, false, "int4", "all"),
        ("int4 W4A8", .int4, true, "int4", "basic"),
    ]

    /// The float model with every quantized weight replaced by `QuantSpec.dequantize` (the reference).
    func dequantized(_ model: Model) throws -> Model {
        let copy = try QDQTestModel.float()
        for t in model.tensors where t.quant != nil { copy.set(try t.quant!.dequantize(t)) }
        return copy
    }

    @Test(.requires { try TestEnvironment.python }, arguments: variants.map(\.name))
    func exportRunsInOnnxruntimeAndMatchesTheReference(_ name: String) throws {
        let python = try TestEnvironment.python
        let v = Self.variants.first { $0.name == name }!
        let dir = TemporaryDirectory()
        let model = try QDQTestModel.quantized(v.format, activations: v.activations)
        let q = dir.file("q.onnx"), f = dir.file("f.onnx")
        try ONNXTest.write(model, q)
        try ONNXTest.write(try dequantized(model), f)
        try ONNXTest.check(python, ["check", q])

        let layers = v.format == .int4 ? 2 : 3
        let structure = try ONNXTest.check(python, ["qdq-structure", q, v.check])
        #expect(structure?["weight_dq"]?.intValue == Int64(layers))
        #expect(structure?["quantized_ops"]?.intValue == Int64(layers))
        #expect(structure?["activation_pairs"]?.intValue == Int64(v.activations ? layers : 0))
        #expect(structure?["opset"]?.intValue == (v.format == .int8 ? 17 : v.format == .fp8e4m3 ? 19 : 21))

        // Every weight DequantizeLinear output == QuantSpec.dequantize, bit for bit (ORT_DISABLE_ALL).
        let refs = dir.file("ref")
        try FileManager.default.createDirectory(atPath: refs, withIntermediateDirectories: false)
        for t in model.tensors where t.quant != nil {
            let values = try t.quant!.dequantize(t).floats()
            try values.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: refs + "/" + t.name + ".f32")) }
        }
        let exact = try ONNXTest.check(python, ["dq-values", q, refs])
        #expect(exact?["checked"]?.intValue == Int64(layers))

        // The whole model against the fake-quant float model.
        let level = v.activations ? v.opt : "disable"
        let options = v.activations ? ["--min-cosine", "0.999"] : ["--tol", "0"]
        let result = try ONNXTest.check(python, ["compare", f, q, "--opt", level] + options)
        print("onnx q/dq \(name) vs dequantized float model (\(level)): \(result?["outputs"]?.serialized() ?? "-")")
        if v.format == .fp8e4m3 {
            try ONNXTest.check(python, ["compare", f, q, "--opt", "disable", "--min-cosine", "0.999"])
        }
    }

    @Test(arguments: variants.map(\.name))
    func importFoldsQDQAndReexportsTheSameBytes(_ name: String) throws {
        let v = Self.variants.first { $0.name == name }!
        let dir = TemporaryDirectory()
        let model = try QDQTestModel.quantized(v.format, activations: v.activations)
        try ONNXTest.write(model, dir.file("a.onnx"))
        let back = try ONNXTest.read(dir.file("a.onnx"))
        for t in model.tensors {
            let b = try #require(back[t.name], "\(t.name) missing after import")
            #expect(b.dtype == t.dtype && b.shape == t.shape)
            #expect(try b.withBytes { Array($0) } == t.withBytes { Array($0) })
            guard let spec = t.quant else { #expect(b.quant == nil); continue }
            let folded = try #require(b.quant, "\(t.name) lost its QuantSpec")
            #expect(folded.format == spec.format)
            #expect("\(folded.granularity)" == "\(spec.granularity)")
            #expect(try folded.scale.floats() == spec.scale.floats())
            #expect((folded.inputScale != nil) == (spec.inputScale != nil))
            if let s = spec.inputScale { #expect(try folded.inputScale!.floats() == s.floats()) }
        }
        #expect(back.graph?.nodes.map(\.opType) == model.graph?.nodes.map(\.opType))
        #expect(back.tensorNames == model.tensorNames)
        try ONNXTest.write(back, dir.file("b.onnx"))
        #expect(try FileSystem.readBytes(dir.file("a.onnx")) == FileSystem.readBytes(dir.file("b.onnx")))
    }

    @Test func onnxruntimeQuantizedModelFoldsAndRoundTrips() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory()
        try ONNXTest.check(python, ["make", "qdq-float", dir.file("float.onnx")])
        try ONNXTest.check(python, ["quantize-ort", dir.file("float.onnx"), dir.file("ort.onnx")])
        let model = try ONNXTest.read(dir.file("ort.onnx"))
        // onnxruntime quantizes the weights, the Add bias b1 (int8, per tensor) and the Conv/Gemm biases
        // (int32, which stay DequantizeLinear nodes); activation pairs in front of Conv/MatMul/Gemm fold.
        let quantized = model.tensors.filter { $0.quant != nil }
        #expect(quantized.map(\.name).sorted() == ["b1", "cw", "w1", "w2"].map { $0 + "_DequantizeLinear_Output" })
        for t in quantized where t.name != "b1_DequantizeLinear_Output" {
            #expect(t.quant?.format == .int8)
            #expect(t.quant?.inputScale != nil, "\(t.name): activation Q/DQ not folded")
            if case .perChannel = t.quant!.granularity {} else { Issue.record("\(t.name) is not per channel") }
        }
        try ONNXTest.write(model, dir.file("kiln.onnx"))
        try ONNXTest.check(python, ["check", dir.file("kiln.onnx")])
        try ONNXTest.check(python, ["same-structure", dir.file("ort.onnx"), dir.file("kiln.onnx")])
        for level in ["disable", "all"] {
            let diffs = ONNXTest.maxAbs(try ONNXTest.check(python, ["compare", dir.file("ort.onnx"), dir.file("kiln.onnx"), "--opt", level]))
            print("onnx ORT-quantized model re-exported by kiln (\(level)): max |diff| \(diffs)")
            #expect(diffs["y"] == 0)
        }
    }

    @Test func raisingTheOpsetRewritesReduceAxes() throws {
        let python = try TestEnvironment.python
        let model = try QDQTestModel.quantized(.int4, activations: false)
        model.opsetImports = ["": 13]
        var graph = model.graph!
        graph.nodes.append(Node(name: "pool", opType: "ReduceMean", inputs: ["y"], outputs: ["m"],
                                attributes: [("axes", .ints([1])), ("keepdims", .int(1))]))
        graph.outputs.append(ValueInfo(name: "m", dtype: .f32, dims: [.symbolic("batch"), .fixed(1)]))
        model.graph = graph
        let dir = TemporaryDirectory()
        try ONNXTest.write(model, dir.file("q.onnx"))
        try ONNXTest.check(python, ["check", dir.file("q.onnx")])
        let back = try ONNXTest.read(dir.file("q.onnx"))
        #expect(back.opsetImports == ["": 21])
        let reduce = try #require(back.graph?.nodes.first { $0.opType == "ReduceMean" })
        #expect(reduce.inputs.count == 2 && reduce.attribute("axes") == nil)
        #expect(try back[reduce.inputs[1]]?.withBytes { Array($0) } == [1, 0, 0, 0, 0, 0, 0, 0])
        let float = try dequantized(model)
        float.graph = graph
        try ONNXTest.write(float, dir.file("f.onnx"))
        try ONNXTest.check(python, ["compare", dir.file("f.onnx"), dir.file("q.onnx"), "--opt", "disable", "--tol", "0"])
    }

    @Test func opsetBelow11IsRefused() throws {
        let model = try QDQTestModel.quantized(.int8, activations: false)
        model.opsetImports = ["": 10]
        let dir = TemporaryDirectory()
        do {
            try ONNXTest.write(model, dir.file("q.onnx"))
            Issue.record("accepted")
        } catch let error as KilnError {
            #expect(error.kind == .unsupported)
            #expect(error.description.contains("opset_import: the model uses ONNX opset 10; quantized export needs opset 13"))
        }
        #expect(dir.contents.isEmpty)
    }
}
