// The plugin preflight that runs before dlopen: ELF header, KILN-ABI-STAMP, and the dynamic symbol
// table walk looking for the entry symbol; also the stamp parser on its own.
@testable import KilnHost
import FuzzSupport
import KilnCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPlugin(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let path = Fuzz.write(bytes, to: "libfuzz.so")
    Fuzz.refusalsOnly { Fuzz.blackHole(try Preflight.stamp(of: path, shownAs: path)) }
    Fuzz.blackHole(ELFSymbols.definesDynamic(KILN_PLUGIN_SYMBOL, in: bytes))
    Fuzz.blackHole(PluginStamp(parsing: String(decoding: bytes, as: UTF8.self)))
    return 0
}
