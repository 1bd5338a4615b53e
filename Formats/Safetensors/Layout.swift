// safetensors byte layout (https://github.com/huggingface/safetensors, "Format"):
//
//   1. 8 bytes    N: unsigned little-endian 64-bit length of the header
//   2. N bytes    header: UTF-8 JSON object
//                   { "__metadata__": { str: str, ... },            (optional)
//                     "<tensor name>": { "dtype": "F32" | "BF16" | "F8_E4M3" | ...,
//                                        "shape": [d0, d1, ...],
//                                        "data_offsets": [begin, end] }, ... }
//                 padded with spaces (0x20) to a multiple of 8 by the reference writer
//   3. data       tensor bytes, row-major little-endian; offsets are relative to the
//                 start of this section; together the tensors cover it exactly,
//                 without overlaps or gaps.
//
// Sharded checkpoints (Hugging Face): `model.safetensors.index.json`
//   { "metadata": { "total_size": bytes }, "weight_map": { "<tensor>": "<shard file>" } }
//   with shard files `model-00001-of-00003.safetensors` beside it.

/// Names used in the header and index.
enum Layout {
    static let lengthBytes = 8
    static let metadataKey = "__metadata__"
    static let indexFile = "model.safetensors.index.json"
    static let singleFile = "model.safetensors"
    static let headerPadding: UInt8 = 0x20
    static let headerAlignment = 8

    /// `model-00001-of-00003.safetensors`
    static func shardName(_ i: Int, of n: Int) -> String {
        func pad(_ v: Int) -> String { String(repeating: "0", count: max(0, 5 - String(v).count)) + String(v) }
        return "model-\(pad(i))-of-\(pad(n)).safetensors"
    }
}
