import Foundation
import KilnCore

/// Resolves `TensorProto.external_data` entries to mapped regions of files beside the model.
///
/// Refused (each a `KilnError` naming the model file, the tensor and the field): absolute
/// locations, `..` components, links leading outside the model's folder, missing files,
/// offsets or lengths that are not non-negative integers, ranges past the end of the file, and
/// lengths that disagree with dims × dtype.
final class ExternalDataReader {
    /// The .onnx file (for error messages).
    let modelPath: String
    /// The folder locations are relative to.
    let folder: String
    private var files: [String: MappedFile] = [:]

    init(modelPath: String) {
        self.modelPath = modelPath
        folder = AtomicOutput.parent(of: modelPath)
    }

    /// The storage of a tensor whose data lives in an external file.
    /// - Parameters:
    ///   - entries: the tensor's `external_data` key/value pairs.
    ///   - expectedBytes: numel × element size of the tensor.
    ///   - path: where the tensor sits (`graph › initializer "w"`).
    func storage(_ entries: [Onnx_StringStringEntryProto], expectedBytes: Int, describe: String,
                 path: [String]) throws -> TensorStorage {
        var values: [String: String] = [:]
        for e in entries { values[e.key] = e.value }
        let here = path + ["external_data"]
        func refuse(_ key: String, _ message: String) -> KilnError {
            KilnError(.invalidInput, file: modelPath, path: here + [key], message)
        }
        guard let location = values["location"], !location.isEmpty else {
            throw refuse("location", "missing: external data needs a file name relative to the model's folder")
        }
        let parts = location.split(separator: "/", omittingEmptySubsequences: false)
        if location.hasPrefix("/") {
            throw refuse("location", "absolute path \"\(location)\" refused: external data must be inside the model's folder")
        }
        if parts.contains("..") {
            throw refuse("location", "path \"\(location)\" refused: \"..\" leads outside the model's folder")
        }
        if location.utf8.contains(0) || location.hasPrefix("~") {
            throw refuse("location", "path \"\(location)\" refused: not a plain relative file name")
        }
        let full = folder + "/" + location
        guard FileSystem.exists(full) else {
            throw refuse("location", "file \"\(location)\" does not exist in \(folder)")
        }
        guard FileSystem.isInside(full, folder: folder) else {
            throw refuse("location", "\"\(location)\" leads outside the model's folder (symbolic link) and is refused")
        }
        let offset = try integer(values["offset"], key: "offset", default: 0, refuse: refuse)
        let file = try mapped(full, location: location, refuse: refuse)
        guard offset <= file.count else {
            throw refuse("offset", "offset \(offset) is past the end of \"\(location)\" (\(file.count) bytes)")
        }
        let length = try integer(values["length"], key: "length", default: file.count - offset, refuse: refuse)
        guard length <= file.count - offset else {
            throw refuse("length", "range [\(offset), \(offset + length)) runs past the end of \"\(location)\" (\(file.count) bytes)")
        }
        guard length == expectedBytes else {
            throw KilnError.mismatch(file: modelPath, path: here + ["length"], expected: "\(expectedBytes) bytes (\(describe))",
                                     found: "\(length) bytes")
        }
        return .mapped(file, offset: offset)
    }

    private func integer(_ text: String?, key: String, default value: Int,
                         refuse: (String, String) -> KilnError) throws -> Int {
        guard let text else { return value }
        guard let v = Int(text), v >= 0 else {
            throw refuse(key, "expected a non-negative integer, found \"\(text)\"")
        }
        return v
    }

    private func mapped(_ full: String, location: String, refuse: (String, String) -> KilnError) throws -> MappedFile {
        if let f = files[location] { return f }
        do {
            let f = try MappedFile(path: full)
            files[location] = f
            return f
        } catch let error as KilnError {
            throw refuse("location", "cannot read \"\(location)\": \(error.message)")
        }
    }
}

/// Appends tensor bytes to the external data file of a model being written, aligned as onnx
/// aligns them (pages for tensors of 1 MB and more), and returns the entries to reference them.
final class ExternalDataWriter {
    /// The file name written into `location` (relative to the model's folder).
    let location: String
    let sink: FileSink
    private(set) var tensorCount = 0

    init(location: String, path: String) throws {
        self.location = location
        sink = try FileSink(path: path)
    }

    /// Write `tensor`'s bytes and return the `external_data` entries that point at them.
    func append(_ tensor: Tensor, progress: (Int) -> Void) throws -> [Onnx_StringStringEntryProto] {
        let align = tensor.byteCount >= Limits.externalPageThreshold ? Limits.externalPageAlignment : Limits.externalAlignment
        let pad = (align - sink.offset % align) % align
        if pad > 0 { try sink.write([UInt8](repeating: 0, count: pad)) }
        let start = sink.offset
        do {
            try tensor.streamBytes { chunk in
                try sink.write(chunk)
                progress(chunk.count)
            }
        } catch let error as KilnError {
            throw error.adding(context: "tensor \"\(tensor.name)\"")
        }
        guard sink.offset - start == tensor.byteCount else {
            throw KilnError(.internal, file: sink.path, path: ["tensor \"\(tensor.name)\""],
                            "wrote \(sink.offset - start) bytes, expected \(tensor.byteCount)")
        }
        tensorCount += 1
        return [entry("location", location), entry("offset", String(start)), entry("length", String(tensor.byteCount))]
    }

    private func entry(_ key: String, _ value: String) -> Onnx_StringStringEntryProto {
        var e = Onnx_StringStringEntryProto()
        e.key = key
        e.value = value
        return e
    }
}
