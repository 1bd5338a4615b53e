/// Named bounds the reader and writer enforce.
enum Limits {
    /// Largest config.json accepted.
    static let maxConfigBytes = 10_000_000
    /// Largest tensor-parallel size accepted (TensorRT-LLM runs tp 1...8 per node; 64 is generous).
    static let maxTP = 64
    /// Largest layer count accepted from a config (before anything is allocated per layer).
    static let maxLayers = 10_000
}
