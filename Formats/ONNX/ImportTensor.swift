import Foundation
import KilnCore
import SwiftProtobuf

/// Turns a decoded `TensorProto` into a Kiln ``Tensor``, whatever payload encoding it uses
/// (raw_data in the file — mapped, not copied —, the typed fields, external data), after checking
/// the element type, the dims and that the payload holds exactly dims × dtype.
struct TensorDecoder {
    /// The .onnx file, mapped; raw_data regions found by the wire walk point into it.
    let file: MappedFile
    let external: ExternalDataReader

    /// What decoding a TensorProto produced.
    enum Result {
        case tensor(Tensor)
        /// A valid ONNX element type without a Kiln DType (string, complex, FNUZ floats, ...):
        /// the caller keeps the proto verbatim.
        case foreign(Onnx_TensorProto)
    }

    /// Decode `t`, named `name`, found at `path` (for error messages).
    /// - Throws: `KilnError(.invalidInput)` naming the file, the tensor and the field for unknown data
    ///   types, bad dims, a payload of the wrong size, and bad external data.
    func decode(_ t: Onnx_TensorProto, name: String, path: [String]) throws -> Result {
        let modelPath = file.path
        guard !t.hasSegment else {
            throw KilnError(.unsupported, file: modelPath, path: path + ["segment"], "segmented tensors are not supported")
        }
        let dtype: DType
        if let d = DType(onnx: Int(t.dataType)), t.dataType != 0 {
            dtype = d
        } else if t.dataType != 0, Onnx_TensorProto.DataType(rawValue: Int(t.dataType)) != nil {
            return .foreign(TensorDecoder.restoringInlineData(t, file: file))
        } else {
            let found = t.dataType == 0 ? (t.hasDataType ? "0 (UNDEFINED)" : "nothing") : String(t.dataType)
            throw KilnError.mismatch(file: modelPath, path: path + ["data_type"],
                                     expected: "a TensorProto.DataType (1 FLOAT ... 23 FLOAT4E2M1)", found: found,
                                     note: "unknown data type")
        }
        guard t.dims.count <= Limits.maxRank else {
            throw KilnError.mismatch(file: modelPath, path: path + ["dims"], expected: "at most \(Limits.maxRank) dimensions",
                                     found: "\(t.dims.count)")
        }
        for (i, d) in t.dims.enumerated() where d < 0 {
            throw KilnError.mismatch(file: modelPath, path: path + ["dims", "[\(i)]"], expected: "a non-negative size", found: "\(d)")
        }
        let shape = Shape(t.dims.map { Int(truncatingIfNeeded: $0) })
        guard t.dims.allSatisfy({ $0 <= Int64(Int.max) }), let count = shape.elementCount, let bytes = dtype.byteCount(elements: count) else {
            throw KilnError(.invalidInput, file: modelPath, path: path + ["dims"], "element count of \(t.dims) overflows")
        }
        let describe = "\(count) × \(dtype) of shape \(shape)"
        func wrongSize(_ field: String, _ found: String) -> KilnError {
            KilnError.mismatch(file: modelPath, path: path + [field], expected: "\(bytes) bytes (\(describe))", found: found,
                               note: "initializer size does not match its dims")
        }
        let storage: TensorStorage
        if t.dataLocation.rawValue == Layout.externalLocation || !t.externalData.isEmpty {
            storage = try external.storage(t.externalData, expectedBytes: bytes, describe: describe, path: path)
        } else if let inline = Skeleton.inlineRange(unknownFields: [UInt8](t.unknownFields.data)) {
            guard inline.length == bytes else { throw wrongSize("raw_data", "\(inline.length) bytes") }
            guard inline.offset >= 0, inline.offset <= file.count - inline.length else {
                throw KilnError(.internal, file: modelPath, path: path + ["raw_data"], "inline range outside the file")
            }
            storage = .mapped(file, offset: inline.offset)
        } else if t.hasRawData {
            guard t.rawData.count == bytes else { throw wrongSize("raw_data", "\(t.rawData.count) bytes") }
            storage = .owned(t.rawData.withUnsafeBytes { TensorBuffer(copying: $0) })
        } else {
            storage = .owned(try typedPayload(t, dtype: dtype, count: count, bytes: bytes, wrongSize: wrongSize))
        }
        return .tensor(Tensor(name: name, dtype: dtype, shape: shape, storage: storage))
    }

    /// The payload of a tensor stored in its typed fields (float_data, int32_data, ...).
    private func typedPayload(_ t: Onnx_TensorProto, dtype: DType, count: Int, bytes: Int,
                              wrongSize: (String, String) -> KilnError) throws -> TensorBuffer {
        // The field's length is checked before the buffer is allocated: dims may claim more than any memory holds.
        let (field, n, expected): (String, Int, Int)
        switch dtype {
        case .f32: (field, n, expected) = ("float_data", t.floatData.count, count)
        case .f64: (field, n, expected) = ("double_data", t.doubleData.count, count)
        case .i64: (field, n, expected) = ("int64_data", t.int64Data.count, count)
        case .u64, .u32: (field, n, expected) = ("uint64_data", t.uint64Data.count, count)
        case .i4, .u4, .fp4e2m1: (field, n, expected) = ("int32_data", t.int32Data.count, bytes)
        default: (field, n, expected) = ("int32_data", t.int32Data.count, count)
        }
        guard n == expected else {
            let others = otherFields(t).filter { $0 != field }
            throw wrongSize(field, "\(n) values" + (others.isEmpty ? "" : " (data is in \(others.joined(separator: ", ")))"))
        }
        let out = TensorBuffer(count: bytes)
        switch dtype {
        case .f32: copy(t.floatData, into: out)
        case .f64: copy(t.doubleData, into: out)
        case .i64: copy(t.int64Data, into: out)
        case .u64: copy(t.uint64Data, into: out)
        case .u32:
            for (i, v) in t.uint64Data.enumerated() {
                out.pointer.storeBytes(of: UInt32(truncatingIfNeeded: v), toByteOffset: i * 4, as: UInt32.self)
            }
        case .i4, .u4, .fp4e2m1:
            // One packed byte (two elements, first in the low nibble) per int32_data entry.
            for (i, v) in t.int32Data.enumerated() {
                out.pointer.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: i, as: UInt8.self)
            }
        case .i32, .i16, .i8, .u16, .u8, .bool, .f16, .bf16, .f8e4m3fn, .f8e5m2:
            // One element per entry: the value, or the bit pattern of a 16/8-bit float, in the low bits.
            let width = dtype.bits / 8
            for (i, v) in t.int32Data.enumerated() {
                withUnsafeBytes(of: v.littleEndian) { src in
                    out.pointer.advanced(by: i * width).copyMemory(from: src.baseAddress!, byteCount: width)
                }
            }
        @unknown default:
            throw KilnError(.unsupported, file: file.path, path: [], "\(dtype) has no typed-field encoding in this reader")
        }
        return out
    }

    private func copy<T>(_ values: [T], into out: TensorBuffer) {
        values.withUnsafeBytes { src in
            if let base = src.baseAddress, src.count > 0 { out.pointer.copyMemory(from: base, byteCount: min(src.count, out.count)) }
        }
    }

    /// Names of the payload fields that hold something, for error messages.
    private func otherFields(_ t: Onnx_TensorProto) -> [String] {
        var names: [String] = []
        if !t.floatData.isEmpty { names.append("float_data") }
        if !t.int32Data.isEmpty { names.append("int32_data") }
        if !t.int64Data.isEmpty { names.append("int64_data") }
        if !t.doubleData.isEmpty { names.append("double_data") }
        if !t.uint64Data.isEmpty { names.append("uint64_data") }
        if !t.stringData.isEmpty { names.append("string_data") }
        return names
    }

    /// `t` with the raw_data the wire walk lifted out put back (for protos kept verbatim).
    static func restoringInlineData(_ t: Onnx_TensorProto, file: MappedFile) -> Onnx_TensorProto {
        guard let inline = Skeleton.inlineRange(unknownFields: [UInt8](t.unknownFields.data)),
              inline.offset >= 0, inline.length >= 0, inline.offset <= file.count - inline.length else { return t }
        var copy = t
        copy.unknownFields = SwiftProtobuf.UnknownStorage()
        copy.rawData = Data(file.bytes(offset: inline.offset, count: inline.length))
        return copy
    }

    /// The same for every tensor inside an attribute (and the graphs it holds).
    static func restoringInlineData(_ a: Onnx_AttributeProto, file: MappedFile) -> Onnx_AttributeProto {
        var copy = a
        if a.hasT { copy.t = restoringInlineData(a.t, file: file) }
        copy.tensors = a.tensors.map { restoringInlineData($0, file: file) }
        if a.hasG { copy.g = restoringInlineData(a.g, file: file) }
        copy.graphs = a.graphs.map { restoringInlineData($0, file: file) }
        return copy
    }

    static func restoringInlineData(_ g: Onnx_GraphProto, file: MappedFile) -> Onnx_GraphProto {
        var copy = g
        copy.initializer = g.initializer.map { restoringInlineData($0, file: file) }
        copy.node = g.node.map { n in
            var m = n
            m.attribute = n.attribute.map { restoringInlineData($0, file: file) }
            return m
        }
        return copy
    }
}
