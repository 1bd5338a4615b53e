// swift-tools-version:6.0
// Kiln: the CLI, the plugin host, the engine, and every built-in format / pass plugin.
// KilnCore is a separate package (Sources/KilnCore) so libKilnCore.so is shared by
// the host and every plugin; see docs/ARCHITECTURE.md.
import PackageDescription

let core: Target.Dependency = .product(name: "KilnCore", package: "KilnCore")

/// A built-in plugin: an ordinary target with its own `.dynamic` product (libNAME.so).
func plugin(_ name: String, path: String, dependencies: [Target.Dependency] = []) -> (Product, Target) {
    (.library(name: name, type: .dynamic, targets: [name]),
     .target(name: name, dependencies: [core] + dependencies, path: path))
}

let plugins = [
    plugin("KilnFormatSafetensors", path: "Formats/Safetensors"),
    plugin("KilnFormatONNX", path: "Formats/ONNX",
           dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
    plugin("KilnFormatTensorRTLLM", path: "Formats/TensorRTLLM"),
    plugin("KilnFormatHFQuant", path: "Formats/HFQuant"),
    plugin("KilnPassFP8", path: "Plugins/FP8"),
    plugin("KilnPassSmoothQuant", path: "Plugins/SmoothQuant"),
    plugin("KilnPassAWQ", path: "Plugins/AWQ", dependencies: ["CKilnAWQKernels"]),
    plugin("KilnPassSparsity", path: "Plugins/Sparsity"),
]

let package = Package(
    name: "Kiln",
    products: [
        .executable(name: "kiln", targets: ["kiln"]),
    ] + plugins.map(\.0),
    dependencies: [
        .package(path: "Sources/KilnCore"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "KilnHost", dependencies: [core], path: "Sources/KilnHost"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "KilnEngine", dependencies: [core, "CZstd", "COpenBLAS", "KilnNumpy"], path: "Sources/KilnEngine"),
        // The .npz reader of Tools/plugin-template, reused (not copied) for `kiln run` and ONNX calibration
        // inputs; its own module name keeps its symbols apart from the template plugin when kiln loads that.
        .systemLibrary(name: "CZlib", path: "Tools/plugin-template/Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "KilnNumpy", dependencies: [core, "CZlib"], path: "Tools/plugin-template/Sources/KilnNPZ",
                exclude: ["Plugin.swift"]),
        // AVX2 + FMA kernels of the AWQ pass, linked statically into libKilnPassAWQ.so (runtime CPU check).
        .target(name: "CKilnAWQKernels", path: "Plugins/AWQKernels"),
        .executableTarget(
            name: "kiln",
            dependencies: ["KilnHost", "KilnEngine", "KilnNumpy", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/kiln"
        ),
        // `make bench`'s engine measurements (GEMM, prefill): not part of the user CLI.
        .executableTarget(
            name: "kiln-bench",
            dependencies: [core, "KilnHost", "KilnEngine", "COpenBLAS"],
            path: "Tools/bench/kiln-bench"
        ),
        .target(name: "KilnTestKit", dependencies: [core, "KilnHost", "KilnEngine"], path: "Tests/KilnTestKit"),
        .testTarget(name: "KilnCoreTests", dependencies: [core, "KilnTestKit"], path: "Tests/KilnCoreTests"),
        .testTarget(name: "HostTests", dependencies: [core, "KilnHost", "KilnTestKit"], path: "Tests/HostTests"),
        .testTarget(name: "FormatTests", dependencies: [core, "KilnHost", "KilnEngine", "KilnTestKit"], path: "Tests/FormatTests"),
        .testTarget(name: "EngineTests", dependencies: [core, "KilnEngine", "KilnNumpy", "KilnTestKit"], path: "Tests/EngineTests"),
        .testTarget(name: "CLITests", dependencies: ["KilnTestKit"], path: "Tests/CLITests"),
        .testTarget(name: "PluginTests", dependencies: [core, "KilnHost", "KilnEngine", "KilnTestKit"], path: "Tests/PluginTests"),
    ] + plugins.map(\.1),
    swiftLanguageModes: [.v5]
)
