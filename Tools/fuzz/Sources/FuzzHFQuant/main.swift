// A unified HF quantized checkpoint through the hf-quant reader: hf_quant_config.json and
// model.safetensors both from the input, then every quantized tensor unpacked.
// Input: u16 LE length L, L bytes of hf_quant_config.json (none when L = 0xFFFF), the rest model.safetensors.
import FuzzSupport
import KilnCore
import KilnFormatHFQuant

private let reader = Fuzz.reader(kilnPluginDescriptor())

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHFQuant(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size >= 2 else { return 0 }
    let length = Int(data[0]) | Int(data[1]) << 8
    _ = Fuzz.path("hfq/model.safetensors")
    if length == 0xFFFF {
        Fuzz.remove("hfq/hf_quant_config.json")
    } else {
        guard length <= size - 2 else { return 0 }
        Fuzz.write(UnsafeRawBufferPointer(start: data + 2, count: length), to: "hfq/hf_quant_config.json")
    }
    let used = length == 0xFFFF ? 2 : 2 + length
    Fuzz.write(UnsafeRawBufferPointer(start: data + used, count: size - used), to: "hfq/model.safetensors")
    Fuzz.refusalsOnly {
        try Fuzz.touch(try reader.read(path: Fuzz.folder + "/hfq", context: KilnContext()))
    }
    return 0
}
