import KilnCore

/// Reads protobuf wire format from a byte range (see Layout.swift).
struct WireReader {
    let bytes: UnsafeRawBufferPointer
    /// Position relative to `bytes`.
    var at: Int
    let end: Int
    /// Offset of `bytes[0]` in the file, for error messages.
    let base: Int

    init(_ bytes: UnsafeRawBufferPointer, from start: Int = 0, to end: Int? = nil, base: Int = 0) {
        self.bytes = bytes
        self.at = start
        self.end = end ?? bytes.count
        self.base = base
    }

    var isAtEnd: Bool { at >= end }

    /// The error for a message that stops early.
    func truncated(_ what: String) -> KilnError {
        KilnError(.invalidInput, offset: base + at, "invalid protobuf: \(what) runs past the end of its message (truncated file?)")
    }

    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard at < end else { throw truncated("a varint") }
            let byte = bytes[at]
            at += 1
            if shift == 63 && byte > 1 {
                throw KilnError(.invalidInput, offset: base + at - 1, "invalid protobuf: varint longer than 64 bits")
            }
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
    }

    /// The next field's number and wire type.
    mutating func tag() throws -> (field: Int, wireType: Int) {
        let start = at
        let t = try varint()
        let field = t >> 3
        guard field >= 1, field <= 536_870_911 else {
            throw KilnError(.invalidInput, offset: base + start,
                            "invalid protobuf: field number \(field) out of range (not a protobuf file?)")
        }
        return (Int(field), Int(t & 7))
    }

    /// Skip a field's value; for wire type 2 return the payload range.
    /// - Throws: on truncation, and for groups (wire types 3 and 4: deprecated, never used by ONNX)
    ///   and wire types protobuf does not define.
    @discardableResult
    mutating func skip(wireType: Int) throws -> Range<Int>? {
        switch wireType {
        case 0:
            _ = try varint()
        case 1, 5:
            let n = wireType == 1 ? 8 : 4
            guard end - at >= n else { throw truncated("a fixed-size value") }
            at += n
        case 2:
            let n = try varint()
            guard n <= UInt64(end - at) else { throw truncated("a length-delimited field of \(n) bytes") }
            let range = at..<(at + Int(n))
            at += Int(n)
            return range
        case 3, 4:
            throw KilnError(.invalidInput, offset: base + at, "invalid protobuf: group wire type \(wireType) (not an ONNX file?)")
        default:
            throw KilnError(.invalidInput, offset: base + at, "invalid protobuf: wire type \(wireType) (not a protobuf file?)")
        }
        return nil
    }
}

/// Appends protobuf wire format.
struct WireWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: Int, _ wireType: Int) { varint(UInt64(field) << 3 | UInt64(wireType)) }

    /// A length-delimited field holding `payload`.
    mutating func field(_ field: Int, payload: [UInt8]) {
        tag(field, 2)
        varint(UInt64(payload.count))
        bytes += payload
    }

    /// Bytes of a varint (for size computations).
    static func varintSize(_ value: UInt64) -> Int {
        var n = 1, v = value
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }
}

/// The ModelProto of a file with every TensorProto.raw_data that sits in a graph initializer or a
/// node attribute replaced by two varint fields holding its offset and length in the file
/// (Layout.inlineOffsetField / inlineLengthField), so decoding copies no tensor bytes and tensors
/// can map the file directly. Everything else is copied verbatim.
///
/// - Complexity: O(file size) to walk, O(size without tensor bytes) memory.
struct Skeleton {
    let file: UnsafeRawBufferPointer
    var depth = 0

    init(_ file: UnsafeRawBufferPointer) { self.file = file }

    private enum Kind { case model, graph, function, node, attribute, tensor }

    /// Field names for error paths.
    private func fieldName(of kind: Kind, field: Int) -> String {
        switch (kind, field) {
        case (.model, Layout.Model.graph): return "graph"
        case (.model, Layout.Model.functions): return "functions"
        case (.graph, Layout.Graph.node), (.function, Layout.Function.node): return "node"
        case (.graph, Layout.Graph.initializer): return "initializer"
        case (.node, Layout.Node.attribute): return "attribute"
        case (.attribute, Layout.Attribute.t): return "t"
        case (.attribute, Layout.Attribute.tensors): return "tensors"
        case (.attribute, Layout.Attribute.g): return "g"
        case (.attribute, Layout.Attribute.graphs): return "graphs"
        default: return "field \(field)"
        }
    }

    /// The rewritten ModelProto.
    /// - Throws: `KilnError(.invalidInput)` with the file offset and the field path for malformed
    ///   wire format.
    mutating func model() throws -> [UInt8] {
        try rewrite(.model, 0..<file.count)
    }

    /// The sub-message kind stored in `field` of a message of kind `kind`, if the walk descends into it.
    private func child(of kind: Kind, field: Int) -> Kind? {
        switch (kind, field) {
        case (.model, Layout.Model.graph): return .graph
        case (.model, Layout.Model.functions): return .function
        case (.graph, Layout.Graph.node), (.function, Layout.Function.node): return .node
        case (.graph, Layout.Graph.initializer): return .tensor
        case (.node, Layout.Node.attribute): return .attribute
        case (.attribute, Layout.Attribute.t), (.attribute, Layout.Attribute.tensors): return .tensor
        case (.attribute, Layout.Attribute.g), (.attribute, Layout.Attribute.graphs): return .graph
        default: return nil
        }
    }

    private mutating func rewrite(_ kind: Kind, _ range: Range<Int>) throws -> [UInt8] {
        if kind == .graph {
            depth += 1
            guard depth <= Limits.maxGraphNesting else {
                throw KilnError(.invalidInput, offset: range.lowerBound,
                                "graphs nested more than \(Limits.maxGraphNesting) deep (If / Loop / Scan bodies)")
            }
        }
        defer { if kind == .graph { depth -= 1 } }
        var reader = WireReader(file, from: range.lowerBound, to: range.upperBound)
        var out = WireWriter()
        out.bytes.reserveCapacity(kind == .tensor ? 64 : range.count)
        var inline: (offset: Int, length: Int)?
        var counts: [Int: Int] = [:]
        while !reader.isAtEnd {
            let start = reader.at
            let (field, wireType) = try reader.tag()
            let payload: Range<Int>?
            do {
                payload = try reader.skip(wireType: wireType)
            } catch let error as KilnError {
                throw error.adding(context: fieldName(of: kind, field: field))
            }
            if kind == .tensor, field == Layout.inlineOffsetField || field == Layout.inlineLengthField {
                continue
            }
            if kind == .tensor, field == Layout.Tensor.rawData, let payload, wireType == 2 {
                inline = (payload.lowerBound, payload.count)
                continue
            }
            if let payload, wireType == 2, let sub = child(of: kind, field: field) {
                let index = counts[field, default: 0]
                counts[field] = index + 1
                do {
                    out.field(field, payload: try rewrite(sub, payload))
                } catch let error as KilnError {
                    let name = fieldName(of: kind, field: field)
                    let single = ["graph", "t", "g"].contains(name)
                    throw error.adding(context: single ? name : "\(name)[\(index)]")
                }
            } else {
                out.bytes += UnsafeRawBufferPointer(rebasing: file[start..<reader.at])
            }
        }
        if let inline {
            out.tag(Layout.inlineOffsetField, 0)
            out.varint(UInt64(inline.offset))
            out.tag(Layout.inlineLengthField, 0)
            out.varint(UInt64(inline.length))
        }
        return out.bytes
    }

    /// The (offset, length) marker the walk left in a decoded tensor's unknown fields, if any.
    static func inlineRange(unknownFields data: [UInt8]) -> (offset: Int, length: Int)? {
        guard !data.isEmpty else { return nil }
        return data.withUnsafeBytes { raw -> (Int, Int)? in
            var r = WireReader(raw)
            var offset: Int?, length: Int?
            while !r.isAtEnd {
                guard let (field, wireType) = try? r.tag() else { return nil }
                if wireType == 0, field == Layout.inlineOffsetField || field == Layout.inlineLengthField {
                    guard let v = try? r.varint() else { return nil }
                    if field == Layout.inlineOffsetField { offset = Int(v) } else { length = Int(v) }
                } else if (try? r.skip(wireType: wireType)) == nil {
                    return nil
                }
            }
            guard let offset, let length else { return nil }
            return (offset, length)
        }
    }

    /// The varint value of `field` in encoded unknown fields (e.g. a proto2 enum value the
    /// generated code did not recognise), if present.
    static func varintField(_ field: Int, in data: [UInt8]) -> UInt64? {
        data.withUnsafeBytes { raw -> UInt64? in
            var r = WireReader(raw)
            while !r.isAtEnd {
                guard let (f, wireType) = try? r.tag() else { return nil }
                if f == field, wireType == 0 { return try? r.varint() }
                if (try? r.skip(wireType: wireType)) == nil { return nil }
            }
            return nil
        }
    }
}
