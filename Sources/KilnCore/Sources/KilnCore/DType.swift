/// Element types Kiln can hold, with their names in every file format.
///
/// One table (``DType/traits``) is the single place a type is described; tests
/// loop over it, so a new entry is tested the day it is added. Raw values are
/// on-disk/ABI identifiers: never reuse one.
public enum DType: UInt8, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case f64 = 1
    case f32 = 2
    case f16 = 3
    case bf16 = 4
    case f8e4m3fn = 5
    case f8e5m2 = 6
    case i64 = 7
    case i32 = 8
    case i16 = 9
    case i8 = 10
    case u8 = 11
    case i4 = 12
    case u4 = 13
    case bool = 14
    /// Reserved for NVFP4 / MXFP4 payloads (e2m1, two per byte); not yet readable.
    case fp4e2m1 = 15
    /// Unsigned integers (ONNX UINT16/UINT32/UINT64, safetensors U16/U32/U64); carried, not converted.
    case u16 = 16
    case u32 = 17
    case u64 = 18

    /// Static description of one element type.
    public struct Traits: Sendable {
        /// Kiln's own name (`f32`, `bf16`, `f8e4m3fn`, ...).
        public let name: String
        /// Bits per element (4 for packed types).
        public let bits: Int
        /// Is it a floating-point type?
        public let isFloat: Bool
        /// Name in a safetensors header (nil: not representable there).
        public let safetensors: String?
        /// `TensorProto.DataType` enum value in onnx.proto.
        public let onnx: Int
        /// numpy / ml_dtypes name.
        public let numpy: String
        /// Name in a TensorRT-LLM checkpoint `config.json` (`dtype` field).
        public let trtllm: String?
    }

    /// The table. Order follows the raw values.
    public static let table: [DType: Traits] = [
        .f64: Traits(name: "f64", bits: 64, isFloat: true, safetensors: "F64", onnx: 11, numpy: "float64", trtllm: "float64"),
        .f32: Traits(name: "f32", bits: 32, isFloat: true, safetensors: "F32", onnx: 1, numpy: "float32", trtllm: "float32"),
        .f16: Traits(name: "f16", bits: 16, isFloat: true, safetensors: "F16", onnx: 10, numpy: "float16", trtllm: "float16"),
        .bf16: Traits(name: "bf16", bits: 16, isFloat: true, safetensors: "BF16", onnx: 16, numpy: "bfloat16", trtllm: "bfloat16"),
        .f8e4m3fn: Traits(name: "f8e4m3fn", bits: 8, isFloat: true, safetensors: "F8_E4M3", onnx: 17, numpy: "float8_e4m3fn", trtllm: "fp8"),
        .f8e5m2: Traits(name: "f8e5m2", bits: 8, isFloat: true, safetensors: "F8_E5M2", onnx: 19, numpy: "float8_e5m2", trtllm: nil),
        .i64: Traits(name: "i64", bits: 64, isFloat: false, safetensors: "I64", onnx: 7, numpy: "int64", trtllm: "int64"),
        .i32: Traits(name: "i32", bits: 32, isFloat: false, safetensors: "I32", onnx: 6, numpy: "int32", trtllm: "int32"),
        .i16: Traits(name: "i16", bits: 16, isFloat: false, safetensors: "I16", onnx: 5, numpy: "int16", trtllm: nil),
        .i8: Traits(name: "i8", bits: 8, isFloat: false, safetensors: "I8", onnx: 3, numpy: "int8", trtllm: "int8"),
        .u8: Traits(name: "u8", bits: 8, isFloat: false, safetensors: "U8", onnx: 2, numpy: "uint8", trtllm: "uint8"),
        .i4: Traits(name: "i4", bits: 4, isFloat: false, safetensors: nil, onnx: 22, numpy: "int4", trtllm: "int4"),
        .u4: Traits(name: "u4", bits: 4, isFloat: false, safetensors: nil, onnx: 21, numpy: "uint4", trtllm: nil),
        .bool: Traits(name: "bool", bits: 8, isFloat: false, safetensors: "BOOL", onnx: 9, numpy: "bool", trtllm: "bool"),
        .fp4e2m1: Traits(name: "fp4e2m1", bits: 4, isFloat: true, safetensors: nil, onnx: 23, numpy: "float4_e2m1fn", trtllm: nil),
        .u16: Traits(name: "u16", bits: 16, isFloat: false, safetensors: "U16", onnx: 4, numpy: "uint16", trtllm: nil),
        .u32: Traits(name: "u32", bits: 32, isFloat: false, safetensors: "U32", onnx: 12, numpy: "uint32", trtllm: nil),
        .u64: Traits(name: "u64", bits: 64, isFloat: false, safetensors: "U64", onnx: 13, numpy: "uint64", trtllm: nil),
    ]

    /// This type's row of the table.
    public var traits: Traits { DType.table[self]! }
    public var name: String { traits.name }
    public var bits: Int { traits.bits }
    public var isFloat: Bool { traits.isFloat }
    public var description: String { traits.name }

    /// Is the type stored two elements per byte?
    public var isPacked: Bool { traits.bits == 4 }

    /// Bytes needed for `count` elements (packed types round up to whole bytes).
    /// - Returns: nil on overflow.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0 else { return nil }
        if isPacked { return count / 2 + count % 2 }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: traits.bits / 8)
        return overflow ? nil : bytes
    }

    /// Look up a type by its safetensors header name (`F32`, `BF16`, `F8_E4M3`, ...).
    public init?(safetensorsName: String) {
        guard let hit = DType.table.first(where: { $0.value.safetensors == safetensorsName }) else { return nil }
        self = hit.key
    }

    /// Look up a type by Kiln's name or a common alias (`float32`, `bfloat16`, `fp16`, ...).
    public init?(name: String) {
        let aliases: [String: DType] = [
            "float32": .f32, "fp32": .f32, "float": .f32, "float16": .f16, "fp16": .f16, "half": .f16,
            "bfloat16": .bf16, "float64": .f64, "double": .f64, "fp8": .f8e4m3fn, "float8_e4m3fn": .f8e4m3fn,
            "float8_e5m2": .f8e5m2, "int8": .i8, "uint8": .u8, "int32": .i32, "int64": .i64, "int16": .i16,
        ]
        if let hit = DType.table.first(where: { $0.value.name == name }) {
            self = hit.key
        } else if let alias = aliases[name.lowercased()] {
            self = alias
        } else {
            return nil
        }
    }

    /// Look up a type by its ONNX `TensorProto.DataType` value.
    public init?(onnx: Int) {
        guard let hit = DType.table.first(where: { $0.value.onnx == onnx }) else { return nil }
        self = hit.key
    }

    /// The safetensors names Kiln understands, for error messages.
    public static var safetensorsNames: [String] {
        DType.allCases.compactMap { $0.traits.safetensors }
    }
}
