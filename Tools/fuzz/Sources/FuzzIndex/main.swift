// model.safetensors.index.json of a sharded checkpoint folder holding valid shards a, b, sub/c,
// a link leading out of the folder, and config.json; the input is the index.
import FuzzSupport
import KilnCore
import KilnFormatSafetensors

private let reader = Fuzz.reader(kilnPluginDescriptor())

private let checkpoint: String = {
    func shard(_ name: String, _ tensor: String, _ values: [Float]) {
        let t = Tensor(name: tensor, dtype: .f32, shape: [values.count], values: values)
        try! SafetensorsFile.write([t], to: Fuzz.path(name))
    }
    shard("ckpt/a.safetensors", "a", [1, 2, 3, 4])
    shard("ckpt/b.safetensors", "b", [5, 6])
    shard("ckpt/sub/c.safetensors", "c", [7])
    shard("outside.safetensors", "d", [8])
    Fuzz.link("ckpt/link.safetensors", to: "../outside.safetensors")
    Fuzz.write(#"{"architectures": ["LlamaForCausalLM"]}"#, to: "ckpt/config.json")
    return Fuzz.folder + "/ckpt"
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIndex(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let folder = checkpoint
    Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), to: "ckpt/model.safetensors.index.json")
    Fuzz.refusalsOnly {
        try Fuzz.touch(try reader.read(path: folder, context: KilnContext()))
    }
    return 0
}
