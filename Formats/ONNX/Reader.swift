import Foundation
import KilnCore
import SwiftProtobuf

/// Reads `.onnx` models (IR 3–14, any opset) into the IR. Tensor bytes stay in the mapped file:
/// a wire-level walk lifts every initializer's and Constant's raw_data out before SwiftProtobuf
/// decodes the rest, so peak memory is the graph structure, not the weights (typed-field payloads,
/// rare in practice, are copied once). Quantized weights (initializer → DequantizeLinear) come
/// back as tensors with a ``QuantSpec``; see ``QDQImport``.
///
/// Options read from the context:
/// - `onnx-fold-qdq`: `false` keeps Q/DQ nodes as they are (default: fold them into QuantSpecs).
final class ONNXReader: FormatReader {
    let name = "onnx"
    let summary = "ONNX models (IR 3–14, any opset; external data; Q/DQ folded into quantized tensors)"
    var capabilities: [String] { ["graph", "functions", "subgraphs", "external-data", "qdq", "fp8", "int4"] }

    /// Files beside a model that travel with it (tokenizers of exported transformers).
    static let sideFiles = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                            "vocab.txt", "merges.txt", "vocab.json", "tokenizer.model", "generation_config.json"]

    func probe(path: String) -> Int {
        if FileSystem.isDirectory(path) {
            return FileSystem.exists(path + "/model.onnx") && !FileSystem.exists(path + "/model.safetensors") ? 70 : 0
        }
        return path.lowercased().hasSuffix(".onnx") ? 100 : 0
    }

    func read(path: String, context: KilnContext) throws -> Model {
        let file = FileSystem.isDirectory(path) ? path + "/model.onnx" : path
        do {
            let model = try readFile(file)
            if context.options["onnx-fold-qdq"] != "false" { try QDQImport.fold(model) }
            return model
        } catch let error as KilnError {
            throw error.inFile(file)
        }
    }

    func readFile(_ path: String) throws -> Model {
        let file = try MappedFile(path: path)
        guard file.count <= Limits.maxProtoBytes else {
            throw KilnError.mismatch(file: path,
                                     expected: "at most \(Limits.maxProtoBytes) bytes (protobuf's 2 GB limit; larger models use external data)",
                                     found: "\(file.count) bytes")
        }
        guard file.count > 0 else {
            throw KilnError(.invalidInput, file: path, "empty file: not an ONNX model")
        }
        let whole = file.bytes(offset: 0, count: file.count)
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = Limits.maxMessageDepth
        let proto: Onnx_ModelProto
        do {
            var skeleton = Skeleton(whole)
            let bytes = try skeleton.model()
            proto = try Onnx_ModelProto(serializedBytes: bytes, options: options)
        } catch let error as KilnError {
            throw error.inFile(path)
        } catch {
            throw KilnError(.invalidInput, file: path, "invalid protobuf: not an ONNX model (\(error))", cause: error)
        }
        let importer = try Importer(path: path, decoder: TensorDecoder(file: file, external: ExternalDataReader(modelPath: path)))
        let model = try importer.importModel(proto)
        let folder = AtomicOutput.parent(of: path)
        model.attachments = try FileSystem.sideFiles(ONNXReader.sideFiles, in: folder)
        return model
    }
}
