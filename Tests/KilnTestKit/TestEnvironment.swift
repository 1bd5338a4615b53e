import Foundation
import KilnCore
import KilnHost
import Testing

/// Where things are when a test runs: the repository, ../shared, the build folder.
public enum TestEnvironment {
    /// The repository root (found from this file's path).
    public static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `../shared` beside the repository.
    public static var shared: String { AtomicOutput.parent(of: repoRoot) + "/shared" }

    /// `../shared/RELATIVE` (e.g. `data/tinystories_valid_calib.txt`).
    /// - Throws: cancels the current test (see ``skip(_:)``) when it is absent.
    public static func sharedFile(_ relative: String) throws -> String {
        let path = shared + "/" + relative
        guard FileSystem.exists(path) else { try skip("\(path) is absent") }
        return path
    }

    /// A model folder or file in ../shared/models (`stories260K`, `stories260K/onnx/model.onnx`).
    /// - Throws: cancels the current test (see ``skip(_:)``) when it is absent.
    public static func sharedModel(_ relative: String) throws -> String {
        try sharedFile("models/" + relative)
    }

    /// The build folder holding the test executable, the kiln CLI and the plugin libraries.
    public static var buildDirectory: String { PluginRegistry.executableDirectory()! }

    /// The kiln executable built beside the tests.
    public static var kiln: String { buildDirectory + "/kiln" }

    /// A python with numpy, ml_dtypes and safetensors (the venv `make test` creates, named by KILN_TEST_PYTHON).
    /// - Throws: cancels the current test (see ``skip(_:)``) when KILN_TEST_PYTHON is unset or names nothing.
    public static var python: String {
        get throws {
            guard let p = pythonIfPresent else { try skip("KILN_TEST_PYTHON is not set (make test creates the venv and sets it)") }
            return p
        }
    }

    /// KILN_TEST_PYTHON when it names a file, else nil: for a test that uses the reference when it is there and
    /// another check otherwise (the perplexity test's ids); every other test uses ``python``, which skips.
    public static var pythonIfPresent: String? {
        guard let p = ProcessInfo.processInfo.environment["KILN_TEST_PYTHON"], FileSystem.exists(p) else { return nil }
        return p
    }

    /// The SmolLM2-135M checkpoint `make smollm2` builds, named by KILN_SMOLLM2_DIR.
    /// - Throws: cancels the current test (see ``skip(_:)``) when KILN_SMOLLM2_DIR is unset or has no model.safetensors.
    public static var smolLM2: String {
        get throws {
            guard let dir = ProcessInfo.processInfo.environment["KILN_SMOLLM2_DIR"], FileSystem.exists(dir + "/model.safetensors") else {
                try skip("KILN_SMOLLM2_DIR is not set or has no model.safetensors (make smollm2 builds it)")
            }
            return dir
        }
    }

    /// Ends the current test as skipped because something it needs is absent: swift-testing reports it as
    /// `➜ Test … was cancelled: REASON`, not as passed.
    ///
    /// A cancelled case of a parameterized test is reported as passed (swift-testing 6.3.1), so there a
    /// missing prerequisite is recorded as an issue: check it before the cases run, with ``Testing/Trait/requires(_:)``.
    /// - Throws: always (the cancellation).
    public static func skip(_ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Never {
        if Test.Case.current?.isParameterized == true {
            Issue.record("\(reason) (a parameterized test checks this in a .requires trait: a cancelled test case reads as passed)",
                         sourceLocation: sourceLocation)
        }
        try Test.cancel(Comment(rawValue: reason), sourceLocation: sourceLocation)
    }

    /// Registry with every plugin built beside the tests, loaded once per process.
    public static let plugins: PluginRegistry = {
        do {
            return try PluginRegistry.discover(explicit: [], environment: nil, executableDirectory: buildDirectory)
        } catch {
            fatalError("cannot load the built-in plugins from \(buildDirectory): \(error)")
        }
    }()
}

extension Trait where Self == ConditionTrait {
    /// Skips the whole test, with the reason it gives, when `prerequisite` cancels (a ``TestEnvironment``
    /// helper finding something absent); for parameterized tests, whose cancelled cases would read as passed.
    ///
    /// ```swift
    /// @Test(.requires { try TestEnvironment.python }, arguments: models) func matchesReference(model: String) throws
    /// ```
    public static func requires(_ prerequisite: @escaping @Sendable () throws -> Any,
                                sourceLocation: SourceLocation = #_sourceLocation) -> Self {
        .enabled(sourceLocation: sourceLocation) {
            _ = try prerequisite()
            return true
        }
    }
}

/// A fresh temporary folder, removed when the value is released.
public final class TemporaryDirectory {
    public let path: String

    public init(_ label: String = "kiln-test") {
        let base = NSTemporaryDirectory() + "\(label)-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        path = base
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// `path + "/" + name`
    public func file(_ name: String) -> String { path + "/" + name }

    /// Names in the folder (sorted), for "nothing left behind" checks.
    public var contents: [String] { FileSystem.list(path) ?? [] }
}

/// What a finished subprocess returned.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    /// True when the process ended through a signal (a crash) rather than exit().
    public let signalled: Bool
}

/// Run a program and collect its output.
public func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                       directory: String? = nil) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    process.environment = env
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes concurrently so a full pipe cannot block the child.
    var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return ProcessResult(
        status: process.terminationStatus,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self),
        signalled: process.terminationReason == .uncaughtSignal)
}

/// Run the kiln CLI built beside the tests.
public func runKiln(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
    try runProcess(TestEnvironment.kiln, arguments, environment: environment)
}

/// Run a python script from Tools/verify with the test venv's python.
public func runVerifyScript(_ python: String, _ script: String, _ arguments: [String]) throws -> ProcessResult {
    try runProcess(python, [TestEnvironment.repoRoot + "/Tools/verify/" + script] + arguments)
}
