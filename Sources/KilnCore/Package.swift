// swift-tools-version:6.0
// KilnCore is its own package so that libKilnCore.so is linked dynamically by the
// host and by every plugin (one copy of the IR types; see docs/ARCHITECTURE.md).
import PackageDescription

let package = Package(
    name: "KilnCore",
    products: [
        .library(name: "KilnCore", type: .dynamic, targets: ["KilnCore"]),
    ],
    targets: [
        .target(name: "CKilnABI", path: "Sources/CKilnABI"),
        .target(
            name: "KilnCore",
            dependencies: ["CKilnABI"],
            path: "Sources/KilnCore",
            swiftSettings: [
                .unsafeFlags(["-enable-library-evolution", "-no-verify-emitted-module-interface"]),
            ]
        ),
    ],
    swiftLanguageModes: [.v5]
)
