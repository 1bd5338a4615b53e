import Foundation
import KilnCore
import SwiftProtobuf

/// Writes a model with a graph as one `.onnx` file, or `.onnx` + `.onnx.data` external data
/// (automatically when the file would pass 2 GB, or on request). Quantized tensors become Q/DQ
/// (``QDQExport``). Output is deterministic (fields in field-number order, as protobuf's C++
/// serializer writes them; sorted opset imports and metadata) and atomic (temporary names,
/// renamed when complete: the data file first, then the model).
///
/// Main-graph initializer bytes are streamed from their (mapped) source straight into the file,
/// so peak memory is the graph structure plus one chunk, not the model.
///
/// Options read from the context:
/// - `external-data`: `true` writes every initializer of at least 1 KB to `NAME.onnx.data`
///   (page-aligned from 1 MB, as onnx aligns them).
/// - `max-inline-bytes`: size above which external data is used automatically (default 2 GB;
///   for tests).
/// - `overwrite`: replace an existing output file or non-empty folder (`--overwrite`); refused otherwise.
final class ONNXWriter: FormatWriter {
    let name = "onnx"
    let summary = "ONNX model (.onnx, optional external data; quantized tensors as Q/DQ for TensorRT)"
    let fileExtensions = ["onnx"]
    var capabilities: [String] {
        ["graph", "functions", "subgraphs", "external-data", "qdq", "int8", "fp8", "int4", "uint4"]
    }

    func write(_ model: Model, to path: String, context: KilnContext) throws {
        let forced = ["true", "1", "yes", ""].contains(context.options["external-data"]?.lowercased() ?? "no")
        var maxInline = Limits.maxInlineBytes
        if let text = context.options["max-inline-bytes"] {
            guard let v = Int(text), v >= 0 else {
                throw KilnError.mismatch(file: nil, path: ["max-inline-bytes"], expected: "a byte count", found: "\"\(text)\"")
            }
            maxInline = v
        }
        let overwrite = AtomicOutput.overwriteRequested(context.options)
        let output = try AtomicOutput(path: path, directory: false, overwrite: overwrite)
        let progress = Progress(sink: context.progress, total: model.byteCount)
        if !forced {
            let exporter = Exporter(model: model, placement: .streamed)
            let layout = try StreamedModel(try exporter.build(), streamed: exporter.streamed)
            if layout.total <= maxInline {
                try layout.write(to: output.workPath, progress: progress)
                try output.commit()
                return
            }
        }
        let fileName = path.split(separator: "/").last.map(String.init) ?? path
        let dataName = Layout.externalDataName(forModel: fileName)
        let dataOutput = try AtomicOutput(path: AtomicOutput.parent(of: path) + "/" + dataName, directory: false,
                                          overwrite: overwrite)
        let data = try ExternalDataWriter(location: dataName, path: dataOutput.workPath)
        let exporter = Exporter(model: model, placement: .external(data, threshold: Limits.externalThreshold),
                                progress: { progress.advance($0) })
        let proto = try exporter.build()
        try data.sink.finish()
        let bytes: [UInt8]
        do {
            bytes = try proto.serializedBytes()
        } catch {
            throw KilnError(.unsupported, file: path, "the graph alone exceeds protobuf's 2 GB limit", cause: error)
        }
        let sink = try FileSink(path: output.workPath)
        try sink.write(bytes)
        try sink.finish()
        if data.tensorCount > 0 { try dataOutput.commit() }
        try output.commit()
    }
}

/// Progress of a write in bytes, forwarded to the context's sink.
final class Progress {
    let sink: ProgressSink?
    let total: Int
    private var done = 0

    init(sink: ProgressSink?, total: Int) {
        self.sink = sink
        self.total = total
    }

    func advance(_ bytes: Int) {
        done += bytes
        sink?.update(label: "writing", done: done, total: max(total, done))
    }
}

/// A ModelProto split so its main-graph initializer payloads can be streamed:
/// `[model fields 1–6] [7: graph = [1: nodes, 2: name] [5: initializers…] [10–16: the rest]] [8–26: the rest]`,
/// which is the order protobuf's serializers use (ascending field numbers).
struct StreamedModel {
    let head: [UInt8]
    let graphHead: [UInt8]
    /// Each initializer's encoded fields; `tensor` set when its raw_data is to be appended.
    let initializers: [(fields: [UInt8], tensor: Tensor?)]
    let graphTail: [UInt8]
    let tail: [UInt8]
    let graphLength: Int
    /// Bytes of the whole file.
    let total: Int

    init(_ proto: Onnx_ModelProto, streamed: [Int: Tensor]) throws {
        var head = Onnx_ModelProto()
        if proto.hasIrVersion { head.irVersion = proto.irVersion }
        if proto.hasProducerName { head.producerName = proto.producerName }
        if proto.hasProducerVersion { head.producerVersion = proto.producerVersion }
        if proto.hasDomain { head.domain = proto.domain }
        if proto.hasModelVersion { head.modelVersion = proto.modelVersion }
        if proto.hasDocString { head.docString = proto.docString }
        var tail = proto
        tail.clearIrVersion(); tail.clearProducerName(); tail.clearProducerVersion()
        tail.clearDomain(); tail.clearModelVersion(); tail.clearDocString(); tail.clearGraph()
        let g = proto.graph
        var graphHead = Onnx_GraphProto()
        graphHead.node = g.node
        if g.hasName { graphHead.name = g.name }
        var graphTail = g
        graphTail.node = []
        graphTail.clearName()
        graphTail.initializer = []
        self.head = try head.serializedBytes()
        self.graphHead = try graphHead.serializedBytes()
        self.graphTail = try graphTail.serializedBytes()
        self.tail = try tail.serializedBytes()
        initializers = try g.initializer.enumerated().map { i, t in (try t.serializedBytes(), streamed[i]) }
        var length = self.graphHead.count + self.graphTail.count
        for (fields, tensor) in initializers {
            let n = StreamedModel.encodedLength(fields: fields.count, payload: tensor?.byteCount)
            length += 1 + WireWriter.varintSize(UInt64(n)) + n
        }
        graphLength = length
        total = self.head.count + 1 + WireWriter.varintSize(UInt64(length)) + length + self.tail.count
    }

    /// Length of a TensorProto made of `fields` plus, when streamed, a raw_data field of `payload` bytes.
    static func encodedLength(fields: Int, payload: Int?) -> Int {
        guard let payload else { return fields }
        return fields + 1 + WireWriter.varintSize(UInt64(payload)) + payload
    }

    func write(to path: String, progress: Progress) throws {
        let sink = try FileSink(path: path)
        func prefix(_ field: Int, _ length: Int) throws {
            var w = WireWriter()
            w.tag(field, 2)
            w.varint(UInt64(length))
            try sink.write(w.bytes)
        }
        try sink.write(head)
        try prefix(Layout.Model.graph, graphLength)
        try sink.write(graphHead)
        for (fields, tensor) in initializers {
            try prefix(Layout.Graph.initializer, StreamedModel.encodedLength(fields: fields.count, payload: tensor?.byteCount))
            try sink.write(fields)
            guard let tensor else { continue }
            try prefix(Layout.Tensor.rawData, tensor.byteCount)
            let start = sink.offset
            do {
                try tensor.streamBytes { chunk in
                    try sink.write(chunk)
                    progress.advance(chunk.count)
                }
            } catch let error as KilnError {
                throw error.adding(context: "tensor \"\(tensor.name)\"")
            }
            guard sink.offset - start == tensor.byteCount else {
                throw KilnError(.internal, file: path, path: ["tensor \"\(tensor.name)\""],
                                "wrote \(sink.offset - start) bytes, expected \(tensor.byteCount)")
            }
        }
        try sink.write(graphTail)
        try sink.write(tail)
        try sink.finish()
        guard sink.offset == total else {
            throw KilnError(.internal, file: path, "wrote \(sink.offset) bytes, planned \(total)")
        }
    }
}
