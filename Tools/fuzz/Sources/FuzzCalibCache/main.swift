// The calibration statistics cache (KILNCAL1 + zstd frame + header JSON + floats) and the zstd
// decompressor under it. Input: 1 mode byte, then
//   mode 0: the cache file as is;
//   mode 1: the decompressed payload (the harness compresses it, so the parser behind zstd is reached);
//   mode 2: a zstd frame for Zstd.decompress.
@testable import KilnEngine
import FuzzSupport
import KilnCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCalibCache(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size >= 1 else { return 0 }
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 3 {
    case 0:
        let path = Fuzz.write(rest, to: "cache.kcal")
        Fuzz.refusalsOnly { Fuzz.blackHole(try CalibrationCache.read(path)) }
    case 1:
        let path = Fuzz.write(CalibrationCache.magic + (try! Zstd.compress(rest, level: 1)), to: "cache.kcal")
        Fuzz.refusalsOnly { Fuzz.blackHole(try CalibrationCache.read(path)) }
    default:
        Fuzz.refusalsOnly { Fuzz.blackHole(try Zstd.decompress(rest, file: "frame.zst")) }
    }
    return 0
}
