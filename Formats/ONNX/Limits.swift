/// Named bounds the ONNX reader and writer enforce before they trust a file.
enum Limits {
    /// Largest .onnx file accepted: protobuf messages are limited to 2 GB (2^31 − 1 bytes);
    /// larger models keep their tensors in external data.
    static let maxProtoBytes = Int(Int32.max)
    /// A model whose inline encoding would exceed this is written with external data
    /// (the protobuf limit with room for the graph). Writer option `max-inline-bytes` overrides it.
    static let maxInlineBytes = 2_000_000_000
    /// Tensors of fewer bytes stay inside the .onnx file when external data is written
    /// (onnx's `convert_model_to_external_data` default `size_threshold`).
    static let externalThreshold = 1024
    /// External data offsets of tensors at least this large are aligned to `externalPageAlignment`
    /// so readers can map them (onnx's `align_threshold`); smaller ones to `externalAlignment`.
    static let externalPageThreshold = 1 << 20
    static let externalPageAlignment = 4096
    static let externalAlignment = 64
    /// Deepest nesting of subgraphs (If / Loop / Scan bodies inside bodies) accepted.
    static let maxGraphNesting = 64
    /// Deepest protobuf message nesting SwiftProtobuf decodes (its own default is 100).
    static let maxMessageDepth = 256
    /// Largest tensor rank accepted.
    static let maxRank = 64
    /// Highest IR version understood (Tools/proto/onnx.proto's `IR_VERSION`).
    static let maxIRVersion = 14
}
