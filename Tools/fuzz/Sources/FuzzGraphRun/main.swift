// An .onnx file imported by the ONNX reader and then executed by Kiln's graph interpreter
// (`kiln run`, ONNX calibration, `kiln eval` on ONNX language models): every operator's attribute
// and shape checks, broadcasting, Q/DQ, Constant folding and value release. Each graph input is fed
// a small deterministic tensor of its declared type (symbolic or unknown dims: 2); an input of more
// than 4096 elements skips the run. Values are capped at 2²⁰ elements (instead of the CLI's 2³¹) so
// that a graph asking for a huge tensor is refused inside libFuzzer's memory and time limits, as the
// CLI refuses one past its own limit (at 2²², a 2.2M-element Resize run five times over — run,
// calibration, sensitivity, re-run — took 21 s in this unoptimized ASan build, 0.03 s in release).
//
// A graph that ran is then quantized as `kiln quantize MODEL.onnx --calib X.npz --to onnx` would
// (GraphQuantizer, the run's feed as calibration data; INT8 or FP8, with or without output pairs
// and a sensitivity search, chosen by the input's size), written by the ONNX writer, and run again.
import FuzzSupport
import KilnCore
import KilnEngine
import KilnFormatONNX

private let reader = Fuzz.reader(kilnPluginDescriptor())
private let writer = Fuzz.writer(kilnPluginDescriptor())
private let path = Fuzz.folder + "/graph/model.onnx"
private let quantized = Fuzz.folder + "/graph/quantized.onnx"
private let capped: Void = { GraphLimits.maxElements = 1 << 20 }()

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
    Fuzz.remove("graph/quantized.onnx")
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

        var options = GraphQuantizer.Options()
        options.algorithm = size & 1 == 0 ? .int8 : .fp8
        options.outputQDQ = size & 2 != 0
        options.excludeSensitive = size & 4 != 0 ? 1 : 0
        options.samples = 4
        options.batch = 2
        _ = try GraphQuantizer.quantize(model, calibration: GraphInputs(values: inputs, source: "fuzz feed"), options: options)
        try writer.write(model, to: quantized, context: KilnContext())
        _ = try GraphInterpreter(model: model).run(inputs)
    }
    return 0
}
