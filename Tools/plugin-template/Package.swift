// swift-tools-version:6.0
// A third-party Kiln plugin, built as its own package: a format reader for numpy .npz archives.
//
// Copy this folder anywhere, point the KilnCore dependency at your Kiln checkout (or a
// tagged release of it), and `swift build`: the product is one shared library,
// libKilnNPZ.so, that `kiln` loads at run time (see README.md).
import PackageDescription

let package = Package(
    name: "KilnNPZ",
    products: [
        // The plugin: exactly one `.dynamic` library. Its name is free; kiln finds it by
        // path ($KILN_PLUGIN_PATH, --plugin) and by the `kiln_plugin_descriptor` symbol.
        .library(name: "KilnNPZ", type: .dynamic, targets: ["KilnNPZ"]),
    ],
    dependencies: [
        // The SDK: the IR (Model, Tensor, DType ...), the provider protocols and the C ABI
        // header. It MUST be the `KilnCore` package product (a shared libKilnCore.so), never
        // a copy of its sources: the host and every plugin have to share one copy of the
        // IR types, or casts between them fail.
        .package(path: "../../Sources/KilnCore"),
    ],
    targets: [
        // zlib, for the deflated members np.savez_compressed writes (Debian: zlib1g-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "KilnNPZ",
            dependencies: [.product(name: "KilnCore", package: "KilnCore"), "CZlib"],
            path: "Sources/KilnNPZ"
        ),
    ],
    swiftLanguageModes: [.v5]
)
