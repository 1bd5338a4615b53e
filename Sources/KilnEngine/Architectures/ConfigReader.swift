import KilnCore

/// Typed reads of config.json fields that fail with the field's path and what was found.
///
/// `null` counts as absent (transformers writes `"rope_scaling": null`). Errors look like
/// `config.json: hidden_size: expected a positive integer, found "64"`.
public struct ConfigReader {
    /// The parsed config.
    public let config: JSONValue
    /// The file name errors name.
    public let file: String

    /// - Parameters:
    ///   - config: the parsed config.json.
    ///   - file: the name used in errors (default `config.json`).
    public init(_ config: JSONValue, file: String = "config.json") {
        self.config = config
        self.file = file
    }

    /// The value at `path` (object keys), or nil when absent or `null`.
    public func value(_ path: [String]) -> JSONValue? {
        var v: JSONValue? = config
        for key in path { v = v?[key] }
        if let v, v.isNull { return nil }
        return v
    }

    /// A required integer ≥ `minimum`.
    /// - Throws: `KilnError(.invalidInput)` naming the field when absent, not an integer or too small.
    public func int(_ path: String..., minimum: Int = 1) throws -> Int {
        guard let v = value(path) else { throw mismatch(path, expected: describe(minimum), found: "no value") }
        return try checkedInt(v, path, minimum: minimum)
    }

    /// An optional integer ≥ `minimum` (nil when absent or null).
    /// - Throws: `KilnError(.invalidInput)` when present but not an integer or too small.
    public func optionalInt(_ path: String..., minimum: Int = 1) throws -> Int? {
        guard let v = value(path) else { return nil }
        return try checkedInt(v, path, minimum: minimum)
    }

    /// An optional positive finite number (nil when absent or null).
    /// - Throws: `KilnError(.invalidInput)` when present but not a positive number.
    public func optionalPositiveDouble(_ path: String...) throws -> Double? {
        guard let v = value(path) else { return nil }
        guard let d = v.doubleValue, d > 0, d.isFinite else {
            throw mismatch(path, expected: "a positive number", found: v.description)
        }
        return d
    }

    /// An optional boolean (nil when absent or null).
    /// - Throws: `KilnError(.invalidInput)` when present but not a boolean.
    public func optionalBool(_ path: String...) throws -> Bool? {
        guard let v = value(path) else { return nil }
        guard let b = v.boolValue else { throw mismatch(path, expected: "true or false", found: v.description) }
        return b
    }

    /// An optional string (nil when absent or null).
    /// - Throws: `KilnError(.invalidInput)` when present but not a string.
    public func optionalString(_ path: String...) throws -> String? {
        guard let v = value(path) else { return nil }
        guard let s = v.stringValue else { throw mismatch(path, expected: "a string", found: v.description) }
        return s
    }

    /// An input error at `path`: "expected …, found …".
    public func mismatch(_ path: [String], expected: String, found: String) -> KilnError {
        KilnError.mismatch(file: file, path: path, expected: expected, found: found)
    }

    private func checkedInt(_ v: JSONValue, _ path: [String], minimum: Int) throws -> Int {
        guard let i = v.intValue, i >= Int64(minimum), i <= Int64(Int32.max) else {
            throw mismatch(path, expected: describe(minimum), found: v.description)
        }
        return Int(i)
    }

    private func describe(_ minimum: Int) -> String {
        switch minimum {
        case 1: return "a positive integer"
        case 0: return "a non-negative integer"
        default: return "an integer ≥ \(minimum)"
        }
    }
}
