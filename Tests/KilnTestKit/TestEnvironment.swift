import Foundation
import KilnCore
import KilnHost

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

    /// A model folder in ../shared/models, or nil (with a printed reason) when absent.
    public static func sharedModel(_ name: String) -> String? {
        let path = shared + "/models/" + name
        if FileSystem.exists(path + "/config.json") || FileSystem.isDirectory(path) { return path }
        print("skipping: \(path) is absent")
        return nil
    }

    /// The build folder holding the test executable, the kiln CLI and the plugin libraries.
    public static var buildDirectory: String { PluginRegistry.executableDirectory()! }

    /// The kiln executable built beside the tests.
    public static var kiln: String { buildDirectory + "/kiln" }

    /// A python with numpy, ml_dtypes and safetensors (the venv `make test` creates), or nil with a printed reason.
    public static var python: String? {
        if let p = ProcessInfo.processInfo.environment["KILN_TEST_PYTHON"], FileSystem.exists(p) { return p }
        print("skipping: KILN_TEST_PYTHON is not set (make test creates the venv and sets it)")
        return nil
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
