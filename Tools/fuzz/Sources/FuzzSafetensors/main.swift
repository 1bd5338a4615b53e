// A single .safetensors file through the safetensors reader (header validation), then every
// tensor read and converted as `kiln convert` would.
import FuzzSupport
import KilnCore
import KilnFormatSafetensors

private let reader = Fuzz.reader(kilnPluginDescriptor())

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), to: "model.safetensors")
    Fuzz.refusalsOnly {
        try Fuzz.touch(try reader.read(path: path, context: KilnContext()))
    }
    return 0
}
