/// Named bounds the reader enforces before it trusts a file.
enum Limits {
    /// Largest header accepted (the reference implementation's MAX_HEADER_SIZE).
    static let maxHeaderBytes = 100_000_000
    /// Largest index.json accepted.
    static let maxIndexBytes = 100_000_000
    /// Deepest JSON nesting accepted in a header (real headers use 3 levels).
    static let maxJSONDepth = 16
    /// Largest rank accepted for a tensor.
    static let maxRank = 64
}
