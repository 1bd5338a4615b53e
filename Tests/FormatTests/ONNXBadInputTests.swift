import Foundation
import KilnCore
import KilnHost
import KilnTestKit
import Testing

/// The ONNX reader's refusals: one bad file per error, each a clear `KilnError` naming the file,
/// the place and what was expected (never a crash).
@Suite struct ONNXBadInputTests {
    /// Read `path`; the error text with the temporary folder removed, or nil if it was accepted.
    func refusal(_ path: String, folder: String) -> String? {
        do {
            _ = try ONNXTest.read(path)
            return nil
        } catch let error as KilnError {
            #expect(error.kind == .invalidInput, "\(error)")
            return error.description.replacingOccurrences(of: folder + "/", with: "")
        } catch {
            Issue.record("not a KilnError: \(error)")
            return "\(error)"
        }
    }

    static let cases: [(kind: String, message: String)] = [
        ("external-absolute", #"bad.onnx: graph › initializer "w" › external_data › location: absolute path "/etc/hostname" refused: external data must be inside the model's folder"#),
        ("external-dotdot", #"bad.onnx: graph › initializer "w" › external_data › location: path "../outside.bin" refused: ".." leads outside the model's folder"#),
        ("external-symlink", #"bad.onnx: graph › initializer "w" › external_data › location: "link.bin" leads outside the model's folder (symbolic link) and is refused"#),
        ("external-past-eof", #"bad.onnx: graph › initializer "w" › external_data › length: range [0, 16) runs past the end of "w.bin" (12 bytes)"#),
        ("external-offset-past-eof", #"bad.onnx: graph › initializer "w" › external_data › offset: offset 64 is past the end of "w.bin" (16 bytes)"#),
        ("unknown-dtype", #"bad.onnx: graph › initializer "w" › data_type: expected a TensorProto.DataType (1 FLOAT ... 23 FLOAT4E2M1), found 99 (unknown data type)"#),
        ("size-mismatch", #"bad.onnx: graph › initializer "w" › raw_data: expected 16 bytes (4 × f32 of shape [2, 2]), found 12 bytes (initializer size does not match its dims)"#),
        ("typed-size-mismatch", #"bad.onnx: graph › initializer "w" › float_data: expected 16 bytes (4 × f32 of shape [2, 2]), found 3 values (initializer size does not match its dims)"#),
        ("dangling-input", #"bad.onnx: graph › node "add" (Add) › input 1: "nowhere" names no value (not a graph input, an initializer or the output of an earlier node)"#),
        ("cycle", #"bad.onnx: graph › node "first" (Add) › input 1: "b" is produced by a later node "second" (a cycle, or nodes not in topological order)"#),
    ]

    @Test(.requires { try TestEnvironment.python }, arguments: cases.map(\.kind))
    func badModelIsRefused(_ kind: String) throws {
        let python = try TestEnvironment.python
        let parent = TemporaryDirectory()
        let dir = parent.file("model")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        try ONNXTest.check(python, ["make-bad", kind, dir])
        let expected = Self.cases.first { $0.kind == kind }!.message
        #expect(refusal(dir + "/bad.onnx", folder: dir) == expected)
    }

    @Test("export: a legacy Softmax without an output, upgraded past opset 13, is refused naming the node")
    func legacySoftmaxWithoutOutput() throws {
        // Per-channel INT8 needs opset 13, so the opset-11 Softmax (axis 1, rank unknown) is rewritten.
        let graph = Graph(inputs: [ValueInfo(name: "x", dtype: .f32)], outputs: [ValueInfo(name: "h")],
                          nodes: [Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["h"]),
                                  Node(name: "legacy_softmax", opType: "Softmax", inputs: ["h"], outputs: [], attributes: [("axis", .int(1))])],
                          initializerNames: ["w"])
        let model = try Model(tensors: [TestQuantizer.int8PerChannel("w", [0.5, -1, 0.25, 2], shape: [2, 2], axis: 1)], graph: graph)
        model.opsetImports = ["": 11]
        let dir = TemporaryDirectory()
        do {
            try ONNXTest.write(model, dir.file("softmax.onnx"))
            Issue.record("accepted")
        } catch let e as KilnError {
            #expect("\(e)".contains("node \"legacy_softmax\" (Softmax)") && "\(e)".contains("1 input and 1 output"), "\(e)")
        }
    }

    @Test func truncatedProtobufNamesTheOffsetAndField() throws {
        let source = try TestEnvironment.sharedModel("stories260K/onnx/model.onnx")
        let dir = TemporaryDirectory()
        try Data(try FileSystem.readBytes(source).prefix(5000)).write(to: URL(fileURLWithPath: dir.file("cut.onnx")))
        #expect(refusal(dir.file("cut.onnx"), folder: dir.path)
            == "cut.onnx@0x1F: graph: invalid protobuf: a length-delimited field of 1424195 bytes runs past the end of its message (truncated file?)")
    }

    @Test func truncationInsideATensorIsFound() throws {
        // A ModelProto whose graph holds an initializer whose raw_data claims more bytes than remain.
        var w = WireBytes()
        w.varintField(1, 8)                            // ir_version 8
        var tensor = WireBytes()
        tensor.varintField(1, 4)                       // dims [4]
        tensor.varintField(2, 1)                       // FLOAT
        tensor.bytesField(8, Array("w".utf8))          // name
        tensor.bytes += [0x4A, 16, 0, 0, 0]            // raw_data: 16 bytes announced, 3 present
        var graph = WireBytes()
        graph.bytesField(5, tensor.bytes)
        w.bytesField(7, graph.bytes)
        let dir = TemporaryDirectory()
        try Data(w.bytes).write(to: URL(fileURLWithPath: dir.file("t.onnx")))
        #expect(refusal(dir.file("t.onnx"), folder: dir.path)
            == "t.onnx@0xF: graph › initializer[0] › field 9: invalid protobuf: a length-delimited field of 16 bytes runs past the end of its message (truncated file?)")
    }

    @Test func notAProtobufIsRefused() throws {
        let dir = TemporaryDirectory()
        try Data("this is not a protobuf at all\n".utf8).write(to: URL(fileURLWithPath: dir.file("text.onnx")))
        #expect(refusal(dir.file("text.onnx"), folder: dir.path) == "text.onnx@0x1: field 14: invalid protobuf: group wire type 4 (not an ONNX file?)")
        try Data().write(to: URL(fileURLWithPath: dir.file("empty.onnx")))
        #expect(refusal(dir.file("empty.onnx"), folder: dir.path) == "empty.onnx: empty file: not an ONNX model")
        // A valid protobuf that is no ModelProto (field 1 missing).
        var w = WireBytes()
        w.bytesField(2, Array("hello".utf8))
        try Data(w.bytes).write(to: URL(fileURLWithPath: dir.file("other.onnx")))
        #expect(refusal(dir.file("other.onnx"), folder: dir.path) == "other.onnx: ir_version: missing: this protobuf is not an ONNX model")
    }

    @Test func randomBytesNeverCrash() throws {
        let dir = TemporaryDirectory()
        var rng = TestRandom(state: 99)
        for i in 0..<200 {
            let bytes = (0..<(1 + i * 7)).map { _ in UInt8(truncatingIfNeeded: Int((rng.next() + 1) * 1000)) }
            try Data(bytes).write(to: URL(fileURLWithPath: dir.file("r.onnx")))
            _ = try? ONNXTest.read(dir.file("r.onnx"))
        }
    }

    @Test func newerIRVersionIsRefusedClearly() throws {
        var w = WireBytes()
        w.varintField(1, 99)
        let dir = TemporaryDirectory()
        try Data(w.bytes).write(to: URL(fileURLWithPath: dir.file("new.onnx")))
        do {
            _ = try ONNXTest.read(dir.file("new.onnx"))
            Issue.record("accepted")
        } catch let error as KilnError {
            #expect(error.kind == .unsupported)
            #expect(error.description.hasSuffix("new.onnx: ir_version: IR version 99 is newer than the newest Kiln reads (14); update Tools/proto/onnx.proto"))
        }
    }
}

/// Hand-made protobuf bytes.
struct WireBytes {
    var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func varintField(_ field: Int, _ value: UInt64) {
        varint(UInt64(field) << 3)
        varint(value)
    }

    mutating func bytesField(_ field: Int, _ payload: [UInt8]) {
        varint(UInt64(field) << 3 | 2)
        varint(UInt64(payload.count))
        bytes += payload
    }
}
