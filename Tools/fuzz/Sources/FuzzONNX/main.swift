// An .onnx file through the ONNX reader (wire walk, protobuf decode, import, Q/DQ folding) in a
// folder holding external data files w.bin, sub/x.bin and a link leading out of the folder.
import FuzzSupport
import KilnCore
import KilnFormatONNX

private let reader = Fuzz.reader(kilnPluginDescriptor())

private let model: String = {
    let floats = (0..<16).map { Float($0) }
    Fuzz.write(floats.withUnsafeBytes { Array($0) }, to: "onnx/w.bin")
    Fuzz.write([UInt8](repeating: 0x3F, count: 64), to: "onnx/sub/x.bin")
    Fuzz.write([UInt8](repeating: 1, count: 64), to: "outside.bin")
    Fuzz.link("onnx/link.bin", to: "../outside.bin")
    return Fuzz.folder + "/onnx/model.onnx"
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = model
    Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), to: "onnx/model.onnx")
    Fuzz.refusalsOnly {
        try Fuzz.touch(try reader.read(path: path, context: KilnContext()))
    }
    return 0
}
