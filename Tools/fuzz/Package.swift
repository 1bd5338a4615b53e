// swift-tools-version:5.3
// libFuzzer targets for every reader of untrusted input (issue 10). Built and run by `make fuzz`
// (Tools/fuzz/run.sh), never by the normal build:
//
//   swift build -c debug --scratch-path ../../.build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
//
// Why a package of its own, with the sources as symlinks (Sources/KilnHost -> ../../../Sources/KilnHost, ...):
// the root package exports only `kiln` and the plugin dylibs, so a package depending on it cannot reach
// KilnHost, KilnEngine or a format's reader; these targets compile the same files, instrumented, into
// one executable per reader. Tools version 5.3 on purpose: from 5.5 SwiftPM links executables with
// `--defsym main=<module>_main`, which collides with libFuzzer's own `main`.
import PackageDescription

let core: Target.Dependency = .product(name: "KilnCore", package: "KilnCore")

/// A fuzz target: `Sources/<name>/main.swift` defining `LLVMFuzzerTestOneInput`.
func fuzzer(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .target(name: name, dependencies: ["FuzzSupport", core] + dependencies, path: "Sources/\(name)")
}

let package = Package(
    name: "KilnFuzz",
    dependencies: [
        .package(name: "KilnCore", path: "../../Sources/KilnCore"),
        .package(name: "SwiftProtobuf", url: "https://github.com/apple/swift-protobuf", .exact("1.39.0")),
    ],
    targets: [
        // The sources under test (symlinks into the repository).
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas"),
        .target(name: "KilnHost", dependencies: [core], path: "Sources/KilnHost"),
        .target(name: "KilnEngine", dependencies: [core, "CZstd", "COpenBLAS", "KilnNumpy"], path: "Sources/KilnEngine"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "KilnNumpy", dependencies: [core, "CZlib"], path: "Sources/KilnNumpy", exclude: ["Plugin.swift"]),
        .target(name: "KilnFormatSafetensors", dependencies: [core], path: "Sources/KilnFormatSafetensors"),
        .target(name: "KilnFormatONNX", dependencies: [core, .product(name: "SwiftProtobuf", package: "SwiftProtobuf")],
                path: "Sources/KilnFormatONNX"),
        .target(name: "KilnFormatTensorRTLLM", dependencies: [core], path: "Sources/KilnFormatTensorRTLLM"),
        .target(name: "KilnFormatHFQuant", dependencies: [core], path: "Sources/KilnFormatHFQuant"),
        // Shared harness code.
        .target(name: "FuzzSupport", dependencies: [core], path: "Sources/FuzzSupport"),
        // One executable per reader.
        fuzzer("FuzzSafetensors", ["KilnFormatSafetensors"]),
        fuzzer("FuzzIndex", ["KilnFormatSafetensors"]),
        fuzzer("FuzzONNX", ["KilnFormatONNX"]),
        fuzzer("FuzzJSON", ["KilnEngine"]),
        fuzzer("FuzzTokenizer", ["KilnEngine"]),
        fuzzer("FuzzTRTLLM", ["KilnFormatTensorRTLLM"]),
        fuzzer("FuzzHFQuant", ["KilnFormatHFQuant"]),
        fuzzer("FuzzCalibCache", ["KilnEngine"]),
        fuzzer("FuzzPlugin", ["KilnHost"]),
        fuzzer("FuzzNPZ", ["KilnNumpy"]),
        fuzzer("FuzzGraphRun", ["KilnFormatONNX", "KilnEngine"]),
    ]
)
