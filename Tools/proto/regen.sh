#!/usr/bin/env bash
# Regenerate Formats/ONNX/Generated/onnx.pb.swift from Tools/proto/onnx.proto.
#
# The generated file is committed; the build never runs protoc. Run this only when
# onnx.proto is updated (and note the new ONNX version in Tools/proto/VERSION).
#
#   Tools/proto/regen.sh                  regenerate from the committed onnx.proto
#   Tools/proto/regen.sh --fetch PYTHON   first copy onnx/onnx.proto from the `onnx` wheel
#                                         installed for PYTHON (pip install onnx==X.Y.Z)
#
# Needs: protoc (Debian protobuf-compiler) and a Swift toolchain. protoc-gen-swift is
# built from swift-protobuf at exactly the version the package depends on (the
# generated code must match the SwiftProtobuf runtime version), in a throwaway package.
set -euo pipefail

SWIFT_PROTOBUF_VERSION=1.39.0
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/Formats/ONNX/Generated"
work="${KILN_PROTOC_GEN_SWIFT_DIR:-${TMPDIR:-/tmp}/kiln-protoc-gen-swift-$SWIFT_PROTOBUF_VERSION}"

if [[ "${1:-}" == "--fetch" ]]; then
    python="${2:?usage: regen.sh --fetch PYTHON}"
    src="$("$python" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))')"
    version="$("$python" -c 'import onnx; print(onnx.__version__)')"
    cp "$src" "$here/onnx.proto"
    echo "onnx $version (PyPI wheel, onnx/onnx.proto)" > "$here/VERSION"
    echo "copied onnx.proto of onnx $version"
fi

command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }

# 1. protoc-gen-swift, built once per version.
plugin="$work/.build/release/protoc-gen-swift"
if [[ ! -x "$plugin" ]]; then
    mkdir -p "$work/Sources/Placeholder"
    cat > "$work/Package.swift" <<EOF
// swift-tools-version:5.9
import PackageDescription
let package = Package(
    name: "KilnProtocGen",
    dependencies: [.package(url: "https://github.com/apple/swift-protobuf", exact: "$SWIFT_PROTOBUF_VERSION")],
    targets: [.target(name: "Placeholder", path: "Sources/Placeholder")]
)
EOF
    echo "// placeholder so the package has a target" > "$work/Sources/Placeholder/Placeholder.swift"
    (cd "$work" && swift build -c release --product protoc-gen-swift)
fi
echo "protoc-gen-swift: $("$plugin" --version)"

# 2. Generate. Types stay internal to the plugin target (Onnx_ModelProto, ...).
mkdir -p "$out"
protoc --plugin=protoc-gen-swift="$plugin" \
    --proto_path="$here" \
    --swift_opt=Visibility=Internal \
    --swift_opt=FileNaming=DropPath \
    --swift_out="$out" \
    "$here/onnx.proto"
echo "wrote $out/onnx.pb.swift ($(wc -l < "$out/onnx.pb.swift") lines) from $(cat "$here/VERSION")"
