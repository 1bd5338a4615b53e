import Foundation
import KilnCore
import KilnHost
import KilnTestKit
import Testing

/// ONNX import → export round trips: real models and fixtures built with `onnx.helper`, checked by
/// onnx.checker (full_check), a structural comparison, protobuf canonical form, and onnxruntime
/// outputs on random inputs.
@Suite struct ONNXRoundTripTests {
    /// Import and export `source` with Kiln, then run every python check. Returns max |diff| per output.
    @discardableResult
    func roundTrip(_ python: String, _ source: String, compareOptions: [String]?, options: [String: String] = [:],
                   sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Double] {
        let dir = TemporaryDirectory()
        let out = dir.file("out.onnx")
        try ONNXTest.write(try ONNXTest.read(source), out, options)
        try ONNXTest.check(python, ["check", out], sourceLocation: sourceLocation)
        try ONNXTest.check(python, ["same-graph", source, out], sourceLocation: sourceLocation)
        if options["external-data"] == nil { try ONNXTest.check(python, ["canonical", out], sourceLocation: sourceLocation) }
        guard let compareOptions else { return [:] }
        let diffs = ONNXTest.maxAbs(try ONNXTest.check(python, ["compare", source, out] + compareOptions, sourceLocation: sourceLocation))
        #expect(!diffs.isEmpty, sourceLocation: sourceLocation)
        return diffs
    }

    @Test(.requires { try TestEnvironment.python }, .requires { try ONNXTest.realModels.map { try TestEnvironment.sharedModel($0.path) } },
          arguments: ONNXTest.realModels.map(\.path))
    func realModelRoundTripGivesTheSameOutputs(_ relative: String) throws {
        let python = try TestEnvironment.python
        let source = try TestEnvironment.sharedModel(relative)
        let options = ONNXTest.realModels.first { $0.path == relative }!.options
        let diffs = try roundTrip(python, source, compareOptions: options)
        print("onnx round trip \(relative): max |diff| \(diffs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
        #expect(diffs.values.allSatisfy { $0 == 0 }, "\(diffs)")
    }

    @Test(.requires { try TestEnvironment.python },
          arguments: ["encodings", "subgraphs", "functions", "symbolic", "unknown-domain"])
    func fixtureRoundTrip(_ kind: String) throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory()
        try ONNXTest.check(python, ["make", kind, dir.file("m.onnx")])
        let diffs = try roundTrip(python, dir.file("m.onnx"), compareOptions: kind == "unknown-domain" ? nil : [])
        #expect(diffs.values.allSatisfy { $0 == 0 }, "\(diffs)")
    }

    @Test func readsExternalDataAndWritesItInline() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory()
        try ONNXTest.check(python, ["make", "external", dir.file("m.onnx")])
        let model = try ONNXTest.read(dir.file("m.onnx"))
        guard case .mapped(let file, _)? = model["w2"]?.storage else { Issue.record("w2 is not mapped"); return }
        #expect(file.path.hasSuffix("/weights/w2"))
        try roundTrip(python, dir.file("m.onnx"), compareOptions: [])
    }

    @Test func writesExternalDataOnRequest() throws {
        let python = try TestEnvironment.python
        let source = try TestEnvironment.sharedModel("stories260K/onnx/model.onnx")
        let dir = TemporaryDirectory()
        let out = dir.file("model.onnx")
        try ONNXTest.write(try ONNXTest.read(source), out, ["external-data": "true"])
        #expect(dir.contents == ["model.onnx", "model.onnx.data"])
        // Every initializer of 1 KB or more moved: 1,036,800 bytes of weights plus alignment padding.
        let dataSize = try FileSystem.readBytes(out + ".data").count
        #expect(dataSize >= 1_036_800 && dataSize < 1_040_000, "\(dataSize) bytes of external data")
        try ONNXTest.check(python, ["check", out])
        try ONNXTest.check(python, ["same-graph", source, out])
        let diffs = ONNXTest.maxAbs(try ONNXTest.check(python, ["compare", source, out, "--int-high", "512"]))
        #expect(diffs["logits"] == 0)
        // Read back: tensors map the data file; big ones start on a page boundary.
        let back = try ONNXTest.read(out)
        guard case .mapped(let file, let offset)? = back["m.lm_head.weight"]?.storage else {
            Issue.record("embedding is not mapped from the data file"); return
        }
        #expect(file.path.hasSuffix("model.onnx.data"))
        #expect(offset % 64 == 0)
    }

    @Test func switchesToExternalDataPastTheInlineLimit() throws {
        let python = try TestEnvironment.python
        let source = try TestEnvironment.sharedModel("stories260K/onnx/model.onnx")
        let dir = TemporaryDirectory()
        let out = dir.file("big.onnx")
        try ONNXTest.write(try ONNXTest.read(source), dir.file("small.onnx"), ["max-inline-bytes": "1500000"])
        try ONNXTest.write(try ONNXTest.read(source), out, ["max-inline-bytes": "1000000"])
        #expect(dir.contents == ["big.onnx", "big.onnx.data", "small.onnx"])
        try ONNXTest.check(python, ["check", out])
        try ONNXTest.check(python, ["compare", source, out, "--int-high", "512"])
    }

    @Test func sameInputSameBytes() throws {
        let source = try TestEnvironment.sharedModel("stories260K/onnx/model.onnx")
        let dir = TemporaryDirectory()
        for (name, options) in [("a", [:]), ("b", [:]), ("c", ["external-data": "true"]), ("d", ["external-data": "true"])] {
            try ONNXTest.write(try ONNXTest.read(source), dir.file(name + ".onnx"), options)
        }
        #expect(try FileSystem.readBytes(dir.file("a.onnx")) == FileSystem.readBytes(dir.file("b.onnx")))
        #expect(try FileSystem.readBytes(dir.file("c.onnx.data")) == FileSystem.readBytes(dir.file("d.onnx.data")))
        // Only the data file name inside differs.
        #expect(try FileSystem.readBytes(dir.file("c.onnx")).count == FileSystem.readBytes(dir.file("d.onnx")).count)
    }

    @Test func importKeepsTheGraph() throws {
        let source = try TestEnvironment.sharedModel("stories260K/onnx/model.onnx")
        let model = try ONNXTest.read(source)
        #expect(model.opsetImports == ["": 18])
        let graph = try #require(model.graph)
        #expect(graph.inputs.map(\.name) == ["input_ids"])
        #expect(graph.inputs[0].dtype == .i64)
        #expect(graph.inputs[0].dims == [.symbolic("batch"), .symbolic("seq")])
        #expect(graph.nodes.count == 371)
        #expect(graph.initializerNames == model.tensorNames)
        // raw_data initializers stay in the mapped file (zero copy).
        for t in model.tensors where t.byteCount > 0 {
            guard case .mapped = t.storage else { Issue.record("\(t.name) was copied"); break }
        }
    }

    @Test func constantNodesStayNodes() throws {
        let source = try TestEnvironment.sharedModel("ppocr-v4-onnx/ch_ppocr_mobile_v2.0_cls_infer.onnx")
        let model = try ONNXTest.read(source)
        let graph = try #require(model.graph)
        let constants = graph.nodes.filter { $0.opType == "Constant" }
        #expect(constants.count == 308)
        #expect(model.tensors.isEmpty)
        guard case .tensor(let t)? = constants[0].attribute("value") else { Issue.record("no tensor value"); return }
        #expect(t.elementCount > 0)
        #expect(graph.inputs[0].dims == [.fixed(-1), .fixed(3), .symbolic("?"), .symbolic("?")])
    }

    @Test func everyTypedEncodingDecodesLikeRawData() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory()
        try ONNXTest.check(python, ["make", "encodings", dir.file("m.onnx")])
        let model = try ONNXTest.read(dir.file("m.onnx"))
        let pairs = [("f32_float_data", "f32_raw"), ("f64_double_data", "f64_raw"), ("f16_int32_data", "f16_raw"),
                     ("bf16_int32_data", "bf16_raw"), ("e4m3_int32_data", "e4m3_raw"), ("e5m2_int32_data", "e5m2_raw"),
                     ("i4_int32_data", "i4_raw"), ("u4_int32_data", "u4_raw"), ("i32_int32_data", "i32_raw"),
                     ("bool_int32_data", "bool_raw"), ("i64_int64_data", "i64_raw"), ("u64_uint64_data", "u64_raw")]
        for (typed, raw) in pairs {
            let a = try #require(model[typed]), b = try #require(model[raw])
            #expect(a.dtype == b.dtype && a.shape == b.shape, "\(typed)")
            #expect(try a.withBytes { Array($0) } == b.withBytes { Array($0) }, "\(typed) vs \(raw)")
        }
        #expect(model["u16_int32_data"]?.dtype == .u16)
        #expect(model["u32_uint64_data"]?.dtype == .u32)
        #expect(try model["i4_raw"]!.withBytes { Array($0) } == [0x21, 0x03, 0x21])
    }

    @Test func functionsAndSubgraphsAreKept() throws {
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory()
        try ONNXTest.check(python, ["make", "functions", dir.file("f.onnx")])
        try ONNXTest.check(python, ["make", "subgraphs", dir.file("s.onnx")])
        let f = try ONNXTest.read(dir.file("f.onnx"))
        #expect(f.functions.map(\.name) == ["ScaledTanh"])
        #expect(f.functions[0].attributeNames == ["alpha"])
        #expect(f.opsetImports == ["": 18, "kiln.test": 1])
        guard case .opaque? = f.functions[0].nodes[1].attribute("value_float") else {
            Issue.record("a ref_attr_name attribute should stay opaque"); return
        }
        let s = try ONNXTest.read(dir.file("s.onnx"))
        let ifNode = try #require(s.graph?.nodes.first { $0.opType == "If" })
        guard case .graph(let then)? = ifNode.attribute("then_branch") else { Issue.record("no then_branch"); return }
        #expect(then.initializerNames == ["then_c"])
        #expect(s["then_c"] != nil)
    }
}
