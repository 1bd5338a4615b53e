/// The one error type every Kiln component throws for bad input or failed I/O.
///
/// Rendered on one line for the CLI:
/// `model.safetensors@0x1F8: data_offsets: expected 256, found 512 (tensor "w")`.
/// Callers add context on the way up with ``adding(context:)`` instead of re-wording.
public struct KilnError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is; decides the CLI exit code.
    public enum Kind: String, Sendable {
        /// The input (file, flag, config) is wrong: exit code 1.
        case invalidInput
        /// The input is valid but asks for something not supported: exit code 1.
        case unsupported
        /// Reading or writing the file system failed: exit code 1.
        case io
        /// A plugin could not be loaded or was refused: exit code 1.
        case plugin
        /// A bug in Kiln: exit code 2.
        case `internal`
    }

    public var kind: Kind
    /// The file the problem is in, if any.
    public var file: String?
    /// A byte offset inside `file`, when known (never invented).
    public var offset: Int?
    /// A path inside the structure: `header › tensor "w" › data_offsets`.
    public var path: [String]
    /// What is wrong, in words.
    public var message: String
    /// The underlying error, if this wraps one.
    public var cause: (any Error & Sendable)?

    public init(
        _ kind: Kind, file: String? = nil, offset: Int? = nil, path: [String] = [],
        _ message: String, cause: (any Error & Sendable)? = nil
    ) {
        self.kind = kind
        self.file = file
        self.offset = offset
        self.path = path
        self.message = message
        self.cause = cause
    }

    /// An input error of the form "FIELD: expected X, found Y".
    public static func mismatch(
        file: String?, offset: Int? = nil, path: [String] = [], expected: String, found: String,
        note: String? = nil
    ) -> KilnError {
        var text = "expected \(expected), found \(found)"
        if let note { text += " (\(note))" }
        return KilnError(.invalidInput, file: file, offset: offset, path: path, text)
    }

    /// The same error with an outer path component prepended (context added by a caller).
    public func adding(context: String) -> KilnError {
        var copy = self
        copy.path.insert(context, at: 0)
        return copy
    }

    /// The same error, attributed to `file` if it names none yet.
    public func inFile(_ name: String) -> KilnError {
        var copy = self
        if copy.file == nil { copy.file = name }
        return copy
    }

    /// One line: `file@0xOFF: path › path: message`.
    public var description: String {
        var head = ""
        if let file {
            head = file
            if let offset { head += "@0x" + String(offset, radix: 16, uppercase: true) }
        }
        let where_ = path.joined(separator: " › ")
        var parts: [String] = []
        if !head.isEmpty { parts.append(head) }
        if !where_.isEmpty { parts.append(where_) }
        parts.append(message)
        var text = parts.joined(separator: ": ")
        if let cause { text += " [cause: \(cause)]" }
        return text
    }
}
