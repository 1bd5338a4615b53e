// An .onnx file imported by the ONNX reader and then executed by Kiln's graph interpreter
// (`kiln run`, ONNX calibration, `kiln eval` on ONNX language models): every operator's attribute
// and shape checks, broadcasting, Q/DQ, Constant folding and value release. Each graph input is fed
// a small deterministic tensor of its declared type (symbolic or unknown dims: 2); an input of more
// than 4096 elements skips the run. Values are capped at 2²² elements (instead of the CLI's 2³¹) so
// that a graph asking for a huge tensor is refused inside libFuzzer's memory limit, as the CLI
// refuses one past its own limit.
import FuzzSupport
import KilnCore
import KilnEngine
import KilnFormatONNX

private let reader = Fuzz.reader(kilnPluginDescriptor())
private let path = Fuzz.folder + "/graph/model.onnx"
private let capped: Void = { GraphLimits.maxElements = 1 << 22 }()

/// A deterministic feed for `input`, or nil when its shape is too large or not a tensor.
private func feed(_ input: ValueInfo) -> GraphValue? {
    let shape = (input.dims ?? []).map { dim -> Int in
        if case .fixed(let n) = dim { return n }
        return 2
    }
    guard shape.allSatisfy({ (0...4096).contains($0) }), shape.count <= 8 else { return nil }
    let count = shape.reduce(1, *)
    guard count <= 4096 else { return nil }
    let type = input.dtype ?? .f32
    if type.isFloat {
        return GraphValue(shape: shape, floats: (0..<count).map { Float($0 % 7 - 3) * 0.5 }, dtype: type)
    }
    return GraphValue(shape: shape, ints: (0..<count).map { Int64($0 % 3) }, dtype: type)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGraphRun(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = capped
    Fuzz.write(UnsafeRawBufferPointer(start: data, count: size), to: "graph/model.onnx")
    Fuzz.refusalsOnly {
        let model = try reader.read(path: path, context: KilnContext())
        let interpreter = try GraphInterpreter(model: model)
        var inputs: [String: GraphValue] = [:]
        for input in interpreter.graph.inputs where model[input.name] == nil {
            guard let value = feed(input) else { return }
            inputs[input.name] = value
        }
        let outputs = try interpreter.run(inputs)
        for (_, value) in outputs where value.isFloat { _ = value.floats.reduce(0, +) }
    }
    return 0
}
