// config.json of a TensorRT-LLM checkpoint through the trtllm reader, which plans the ranks from it
// and checks the rank files against the plan; every tensor is then assembled (merging ranks,
// splitting fused linears). Input: 1 byte choosing the rank files (tiny Llama: tp 1 float,
// tp 2 float, tp 1 INT8 SmoothQuant), then config.json.
import FuzzSupport
import KilnCore
import KilnFormatTensorRTLLM

private let reader = Fuzz.reader(kilnPluginDescriptor())

/// Rank `rank` of a tp-`tp` checkpoint of a Llama with hidden 8, 2 heads, 1 KV head, intermediate 16, vocab 16.
private func rankTensors(tp: Int, rank: Int, int8: Bool) -> [Tensor] {
    let (h, i, v, hd, heads, kv) = (8, 16, 16, 4, 2, 1)
    var seed = rank * 7919 + 1
    func values(_ n: Int) -> [Float] {
        (0..<n).map { _ in
            seed = (seed &* 1103515245 &+ 12345) & 0x7FFF_FFFF
            return Float(seed % 2001 - 1000) / 4000
        }
    }
    func f32(_ name: String, _ shape: [Int]) -> Tensor {
        Tensor(name: name, dtype: .f32, shape: Shape(shape), values: values(shape.reduce(1, *)))
    }
    func ones(_ name: String, _ n: Int) -> Tensor { Tensor(name: name, dtype: .f32, shape: [n], values: [Float](repeating: 1, count: n)) }
    let l = "transformer.layers.0."
    var out = [f32("transformer.vocab_embedding.weight", [v, h]), ones(l + "input_layernorm.weight", h),
               ones(l + "post_layernorm.weight", h), ones("transformer.ln_f.weight", h), f32("lm_head.weight", [v / tp, h])]
    let linears: [(String, [Int], Int)] = [  // module, weight shape, rows of a per-channel scale
        ("attention.qkv", [heads * hd / tp + 2 * kv * hd, h], heads * hd / tp + 2 * kv * hd),
        ("attention.dense", [h, heads * hd / tp], h),
        ("mlp.fc", [i / tp, h], i / tp), ("mlp.gate", [i / tp, h], i / tp), ("mlp.proj", [h, i / tp], h),
    ]
    for (module, shape, rows) in linears {
        let name = l + module
        guard int8 else {
            out.append(f32(name + ".weight", shape))
            continue
        }
        let q = values(shape.reduce(1, *)).map { Int8(clamping: Int(($0 * 400).rounded())) }
        out.append(Tensor(name: name + ".weight", dtype: .i8, shape: Shape(shape), values: q))
        out.append(Tensor(name: name + ".weights_scaling_factor", dtype: .f32, shape: [rows], values: [Float](repeating: 0.0025, count: rows)))
        out.append(Tensor(name: name + ".activation_scaling_factor", dtype: .f32, shape: [1], values: [Float(0.1)]))
    }
    return out.sorted { $0.name < $1.name }
}

private let folders: [String] = {
    let layouts = [(tp: 1, int8: false), (tp: 2, int8: false), (tp: 1, int8: true)]
    return layouts.enumerated().map { k, layout in
        for r in 0..<layout.tp {
            try! SafetensorsFile.write(rankTensors(tp: layout.tp, rank: r, int8: layout.int8), to: Fuzz.path("trt\(k)/rank\(r).safetensors"))
        }
        return Fuzz.folder + "/trt\(k)"
    }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTRTLLM(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size >= 1 else { return 0 }
    let k = Int(data[0]) % folders.count
    let folder = folders[k]
    Fuzz.write(UnsafeRawBufferPointer(start: data + 1, count: size - 1), to: "trt\(k)/config.json")
    Fuzz.refusalsOnly {
        try Fuzz.touch(try reader.read(path: folder, context: KilnContext()))
    }
    return 0
}
