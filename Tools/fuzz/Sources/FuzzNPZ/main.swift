// A numpy .npz archive (zip, deflate, zip64, .npy headers) through the reader behind
// `kiln run --inputs` and ONNX calibration (`kiln quantize MODEL.onnx --calib X.npz`), then every
// tensor read.
import FuzzSupport
import KilnCore
import KilnNumpy

private let reader = NPZReader()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPZ(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), to: "inputs.npz")
    Fuzz.refusalsOnly {
        try Fuzz.touch(try reader.read(path: path, context: KilnContext()))
    }
    return 0
}
