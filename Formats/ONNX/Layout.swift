// ONNX file layout (https://github.com/onnx/onnx/blob/main/docs/IR.md, onnx/onnx.proto;
// the copy Kiln is generated from is Tools/proto/onnx.proto, version in Tools/proto/VERSION).
//
// An .onnx file is one protobuf message `ModelProto` (proto2, little-endian wire format,
// https://protobuf.dev/programming-guides/encoding/). Each field is a varint tag
// `(field_number << 3) | wire_type` followed by its value:
//   wire type 0  varint            ints, enums, bools
//   wire type 1  8 bytes           fixed64 / double
//   wire type 2  varint length N, then N bytes: strings, bytes, sub-messages, packed repeated
//   wire type 5  4 bytes           fixed32 / float
// A message is the concatenation of its fields in any order; a repeated field is its
// elements one after another. The whole file must stay under 2 GB (protobuf's limit):
// bigger models keep tensor bytes in external files.
//
// The fields Kiln walks itself (to find tensor bytes without copying them) — numbers from onnx.proto:
//   1. ModelProto        7 graph: GraphProto           25 functions: FunctionProto
//   2. GraphProto        1 node: NodeProto              5 initializer: TensorProto
//   3. FunctionProto     7 node: NodeProto
//   4. NodeProto         5 attribute: AttributeProto
//   5. AttributeProto    5 t: TensorProto   6 g: GraphProto   10 tensors   11 graphs
//   6. TensorProto       1 dims  2 data_type  4 float_data  5 int32_data  7 int64_data  8 name
//                        9 raw_data  10 double_data  11 uint64_data  13 external_data  14 data_location
//
// TensorProto payload encodings (exactly one is used):
//   raw_data        fixed-width little-endian elements; 4-bit types two per byte, first element
//                   in the low nibble; bool one byte per element
//   float_data      FLOAT (and COMPLEX64 pairs)
//   int32_data      INT32 INT16 INT8 UINT16 UINT8 BOOL one element per entry; FLOAT16 / BFLOAT16 /
//                   FLOAT8* as their bit patterns; INT4 / UINT4 / FLOAT4E2M1: one packed byte
//                   (two elements) per entry
//   int64_data      INT64
//   double_data     DOUBLE (and COMPLEX128 pairs)
//   uint64_data     UINT32 UINT64
//   string_data     STRING
//   external_data   {location, offset, length, checksum} strings; data_location = EXTERNAL (1);
//                   location is a relative POSIX path from the model's folder
//
// Q/DQ (https://onnx.ai/onnx/operators/onnx__DequantizeLinear.html):
//   y = (x − x_zero_point) · x_scale, scale scalar (per tensor), 1-D along `axis` (per channel),
//   or same rank with dim[axis] = ceil(x.dim[axis] / block_size) (blocked, opset 21).
//   QuantizeLinear's output type is the type of its zero point (uint8 when absent).

import KilnCore

/// Field numbers and names used by the wire-level walk and the writer.
enum Layout {
    enum Model { static let graph = 7, functions = 25 }
    enum Graph { static let node = 1, initializer = 5 }
    enum Function { static let node = 7 }
    enum Node { static let attribute = 5 }
    enum Attribute { static let t = 5, g = 6, tensors = 10, graphs = 11 }
    enum Tensor { static let rawData = 9 }

    /// Fields the wire walk appends to a TensorProto in place of its raw_data: the file offset and
    /// length of the bytes. Numbers at the top of protobuf's range, unused by onnx.proto; any such
    /// field already in a file is dropped, so a file cannot forge them.
    static let inlineOffsetField = 536_870_901
    static let inlineLengthField = 536_870_902

    /// `TensorProto.DataLocation.EXTERNAL`.
    static let externalLocation = 1

    /// Default-domain opset a model without opset imports is written with.
    static let defaultOpset = 17
    /// Lowest default-domain opset whose ops Kiln rewrites when it has to raise the opset.
    static let lowestUpgradableOpset = 11

    /// Smallest IR version able to carry each default-domain opset (onnx.helper.VERSION_TABLE).
    static func irVersion(forOpset opset: Int) -> Int {
        switch opset {
        case ..<9: return 3
        case 9: return 4
        case 10: return 5
        case 11: return 6
        case 12...13: return 7
        case 14...18: return 8
        case 19...20: return 9
        case 21...22: return 10
        case 23: return 11
        case 24: return 12
        case 25...27: return 13
        default: return 14
        }
    }

    /// Smallest IR version able to carry an element type (FLOAT8 in 9, INT4/UINT4 in 10, FLOAT4E2M1 in 11).
    static func irVersion(for dtype: DType) -> Int {
        switch dtype {
        case .f8e4m3fn, .f8e5m2: return 9
        case .i4, .u4: return 10
        case .fp4e2m1: return 11
        default: return 3
        }
    }

    /// Name of the external data file written beside `model.onnx`: `model.onnx.data`.
    static func externalDataName(forModel fileName: String) -> String { fileName + ".data" }

    /// The domain names that mean the default ONNX operator set.
    static func isDefaultDomain(_ domain: String) -> Bool { domain.isEmpty || domain == "ai.onnx" }
}
