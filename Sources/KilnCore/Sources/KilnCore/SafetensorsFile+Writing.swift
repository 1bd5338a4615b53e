extension SafetensorsFile {
    /// Write one safetensors file: the header (padded with spaces to 8 bytes, as the reference
    /// writer does), then each tensor streamed chunk by chunk in the given order.
    ///
    /// Peak memory is one chunk per mapped or converted tensor, one tensor for deferred ones.
    /// The caller owns atomicity (write into an ``AtomicOutput`` work path).
    ///
    /// - Parameters:
    ///   - tensors: written in this order; each needs a safetensors dtype (checked first).
    ///   - metadata: the `__metadata__` object (keys sorted; omitted when empty).
    ///   - path: the file to create or truncate.
    ///   - progress: told "writing" bytes done / total.
    /// - Throws: `KilnError(.unsupported)` for a dtype safetensors cannot name (before writing);
    ///   whatever producing a tensor throws, with the tensor name added as context;
    ///   `KilnError(.io)` when writing fails.
    /// - Complexity: O(total bytes).
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to path: String,
                             progress: ProgressSink? = nil) throws {
        for t in tensors where t.dtype.traits.safetensors == nil {
            throw KilnError(.unsupported, path: ["tensor \"\(t.name)\""],
                            "dtype \(t.dtype) has no safetensors name; pack it first (a quantized format writer does)")
        }
        var header = JSONObject()
        if !metadata.isEmpty {
            header[Layout.metadataKey] = .object(JSONObject(metadata.keys.sorted().map { ($0, .string(metadata[$0]!)) }))
        }
        var offset = 0
        for t in tensors {
            header[t.name] = .object(JSONObject([
                ("dtype", .string(t.dtype.safetensorsName)),
                ("shape", .array(t.shape.dims.map { .int(Int64($0)) })),
                ("data_offsets", .array([.int(Int64(offset)), .int(Int64(offset + t.byteCount))])),
            ]))
            offset += t.byteCount
        }
        var text = Array(JSONValue.object(header).serialized().utf8)
        while text.count % Layout.headerAlignment != 0 { text.append(Layout.headerPadding) }
        let sink = try FileSink(path: path)
        var length = UInt64(text.count).littleEndian
        try withUnsafeBytes(of: &length) { try sink.write($0) }
        try sink.write(text)
        let total = offset
        var written = 0
        for t in tensors {
            let start = sink.offset
            do {
                try t.streamBytes { chunk in
                    try sink.write(chunk)
                    written += chunk.count
                    progress?.update(label: "writing", done: written, total: total)
                }
            } catch let error as KilnError {
                throw error.adding(context: "tensor \"\(t.name)\"")
            }
            guard sink.offset - start == t.byteCount else {
                throw KilnError(.internal, file: path, path: ["tensor \"\(t.name)\""],
                                "wrote \(sink.offset - start) bytes, expected \(t.byteCount)")
            }
        }
        try sink.finish()
    }
}
