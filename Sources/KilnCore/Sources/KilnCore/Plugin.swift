#if canImport(Glibc)
import Glibc
#endif
@_exported import CKilnABI

/// What a provider does; shown by `kiln plugins`. Raw values are stable.
public enum ProviderKind: String, Sendable, CaseIterable {
    case reader
    case writer
    case pass
    case architecture
}

/// Receives progress of long work (the CLI draws a bar on a TTY; tests ignore it).
public protocol ProgressSink: AnyObject {
    /// `done` of `total` units of `label` are finished.
    func update(label: String, done: Int, total: Int)
}

/// What the host hands a provider for one job: options as strings, a progress sink, and
/// engine services (calibration) that plugins cannot link directly.
public final class KilnContext: @unchecked Sendable {
    /// Options by kebab-case name (`max-shard-size`, `dtype`, ...). Providers document the ones they read.
    public var options: [String: String]
    public var progress: ProgressSink?
    /// Runs the model on calibration data (set by the host for passes that need it).
    public var calibration: (any CalibrationService)?
    /// Fast matrix products (set by the host; passes fall back to their own loops without it).
    public var matrix: (any MatrixService)?

    public init(options: [String: String] = [:], progress: ProgressSink? = nil, calibration: (any CalibrationService)? = nil,
                matrix: (any MatrixService)? = nil) {
        self.options = options
        self.progress = progress
        self.calibration = calibration
        self.matrix = matrix
    }
}

/// Something a plugin provides: a reader, a writer, a pass, an architecture.
public protocol KilnProvider: AnyObject {
    /// Unique name (`safetensors`, `onnx`, `fp8`, ...). Duplicates across plugins: first found wins.
    var name: String { get }
    var kind: ProviderKind { get }
    /// Short capability words shown by `kiln plugins` (dtypes, quant formats, "graph", "sharded" ...).
    var capabilities: [String] { get }
    /// One-line description.
    var summary: String { get }
}

/// Reads a file or folder into a ``Model``.
public protocol FormatReader: KilnProvider {
    /// How sure the reader is that it can read `path`: 0 (no) ... 100 (certain). Must not throw; cheap.
    func probe(path: String) -> Int
    /// Read `path`. Tensors should stay lazy (mapped) where the format allows.
    /// - Throws: `KilnError` naming the file, the place and what was expected.
    func read(path: String, context: KilnContext) throws -> Model
}

/// Writes a ``Model`` to a file or folder. Output must be complete or absent (write to a
/// temporary name, then rename; see ``AtomicOutput``).
public protocol FormatWriter: KilnProvider {
    /// File extensions this writer produces (`safetensors`), used to pick a writer from an output path.
    var fileExtensions: [String] { get }
    func write(_ model: Model, to path: String, context: KilnContext) throws
}

/// An optimization pass over a model (quantization, sparsity, ...).
public protocol ModelPass: KilnProvider {
    func run(_ model: Model, context: KilnContext) throws -> Model
}

public extension FormatReader { var kind: ProviderKind { .reader } }
public extension FormatWriter { var kind: ProviderKind { .writer } }
public extension ModelPass { var kind: ProviderKind { .pass } }

/// The object a plugin's `create` function returns: a list of providers.
public protocol KilnPluginEntry: AnyObject {
    var providers: [any KilnProvider] { get }
}

/// Builds the C descriptor a plugin exports as `kiln_plugin_descriptor`.
///
/// Every function here is emitted into the plugin itself, so the stamp, ABI
/// version, SDK version and compiler identity are those of the plugin's build.
///
/// ```swift
/// @_cdecl("kiln_plugin_descriptor")
/// public func kilnPluginDescriptor() -> UnsafeRawPointer {
///     KilnPluginDescriptor.make(name: "npz", version: "1.0.0") { KilnPluginDescriptor.retained(NPZPlugin()) }
/// }
/// ```
public enum KilnPluginDescriptor {
    /// The Swift compiler that built the caller ("6.3", ...).
    @_alwaysEmitIntoClient
    public static var swiftCompiler: String {
        #if compiler(>=6.5)
        return "6.5+"
        #elseif compiler(>=6.4)
        return "6.4"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #elseif compiler(>=6.0)
        return "6.0"
        #else
        return "5.x"
        #endif
    }

    /// A descriptor for a plugin called `name`. Call once per process (the host does).
    @_alwaysEmitIntoClient
    public static func make(
        name: String, version: String, create: @convention(c) () -> UnsafeMutableRawPointer?
    ) -> UnsafeRawPointer {
        let d = UnsafeMutablePointer<kiln_plugin_descriptor>.allocate(capacity: 1)
        d.initialize(to: kiln_plugin_descriptor(
            magic: KILN_PLUGIN_MAGIC,
            abi_version: kiln_abi_version(),
            abi_stamp: kiln_abi_stamp(),
            sdk_version: kiln_sdk_version(),
            toolchain: kiln_toolchain(),
            swift_compiler: strdup(swiftCompiler),
            plugin_name: strdup(name),
            plugin_version: strdup(version),
            create: create))
        return UnsafeRawPointer(d)
    }

    /// Hand an entry object to the host (+1 retained; the host takes ownership).
    @_alwaysEmitIntoClient
    public static func retained(_ entry: any KilnPluginEntry) -> UnsafeMutableRawPointer {
        Unmanaged.passRetained(entry as AnyObject).toOpaque()
    }
}
