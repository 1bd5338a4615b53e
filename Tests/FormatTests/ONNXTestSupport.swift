import Foundation
import KilnCore
import KilnHost
import KilnTestKit
import Testing

/// Shared helpers of the ONNX tests: plugin access, Tools/verify/onnx_check.py, and a small IR
/// model quantized with DESIGN §4's formulas.
enum ONNXTest {
    static var plugins: PluginRegistry { TestEnvironment.plugins }

    static func read(_ path: String, _ options: [String: String] = [:]) throws -> Model {
        try plugins.reader(for: path, named: "onnx").read(path: path, context: KilnContext(options: options))
    }

    static func write(_ model: Model, _ path: String, _ options: [String: String] = [:]) throws {
        try plugins.writer(named: "onnx", for: path).write(model, to: path, context: KilnContext(options: options))
    }

    /// Run `onnx_check.py ARGS`; the JSON line it printed, and whether it succeeded.
    @discardableResult
    static func check(_ python: String, _ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> JSONValue? {
        let result = try runVerifyScript(python, "onnx_check.py", args)
        #expect(result.status == 0, "onnx_check.py \(args.joined(separator: " ")): \(result.stdout)\(result.stderr)",
                sourceLocation: sourceLocation)
        let line = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        return try? JSONValue.parse(Array(line.utf8))
    }

    /// The real ONNX models in ../shared/models with the onnx_check.py options that give them valid inputs.
    static let realModels: [(path: String, options: [String])] = [
        ("stories260K/onnx/model.onnx", ["--int-high", "512", "--dim", "seq=7"]),
        ("paraphrase-MiniLM-L3-v2-onnx/model.onnx", ["--int-high", "30522", "--dim", "sequence_length=9"]),
        ("ppocr-v4-onnx/ch_PP-OCRv4_det_infer.onnx", ["--shape", "x=1,3,64,96"]),
        ("ppocr-v4-onnx/ch_PP-OCRv4_rec_infer.onnx", ["--shape", "x=1,3,48,160"]),
        ("ppocr-v4-onnx/ch_ppocr_mobile_v2.0_cls_infer.onnx", ["--shape", "x=2,3,48,192"]),
    ]

    /// Max |a − b| of every output, from a `compare` result.
    static func maxAbs(_ json: JSONValue?) -> [String: Double] {
        var result: [String: Double] = [:]
        for (name, v) in json?["outputs"]?.objectValue ?? JSONObject() {
            result[name] = v["max_abs"]?.doubleValue
        }
        return result
    }
}

/// A deterministic pseudo-random stream for test weights.
struct TestRandom {
    var state: UInt64

    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
    }

    mutating func values(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
}

/// Quantizers with exactly the formulas of DESIGN §4 / ``QuantSpec`` (reference implementations).
enum TestQuantizer {
    /// INT8 symmetric per channel along `axis`: s_c = amax_c / 127, q = clamp(round_half_even(w / s_c), −128, 127).
    static func int8PerChannel(_ name: String, _ w: [Float], shape: [Int], axis: Int) -> Tensor {
        let inner = shape[(axis + 1)...].reduce(1, *), size = shape[axis]
        var amax = [Float](repeating: 0, count: size)
        for (i, v) in w.enumerated() { amax[(i / inner) % size] = max(amax[(i / inner) % size], abs(v)) }
        let s = amax.map { $0 / 127 }
        let q = w.enumerated().map { i, v in Int8(max(-128, min(127, (v / s[(i / inner) % size]).rounded(.toNearestOrEven)))) }
        var t = Tensor(name: name, dtype: .i8, shape: Shape(shape), values: q)
        t.quant = QuantSpec(format: .int8, granularity: .perChannel(axis: axis),
                            scale: Tensor(name: name + "_scale", dtype: .f32, shape: [size], values: s))
        return t
    }

    /// FP8 per tensor: s = amax / 448, q = fp8e4m3(w / s).
    static func fp8PerTensor(_ name: String, _ w: [Float], shape: [Int]) throws -> Tensor {
        let s = (w.map(abs).max() ?? 1) / 448
        let scaled = w.map { $0 / s }
        var q = [UInt8](repeating: 0, count: w.count)
        try scaled.withUnsafeBytes { src in
            try q.withUnsafeMutableBytes { dst in try DType.convert(w.count, from: .f32, src.baseAddress!, to: .f8e4m3fn, dst.baseAddress!) }
        }
        var t = Tensor(name: name, dtype: .f8e4m3fn, shape: Shape(shape), values: q)
        t.quant = QuantSpec(format: .fp8e4m3, granularity: .perTensor, scale: Tensor(name: name + "_scale", dtype: .f32, shape: [1], values: [s]))
        return t
    }

    /// INT4 blocks of `block` along `axis`: s_b = amax_b / 7, q = clamp(round_half_even(w / s_b), −8, 7),
    /// two per byte, first element in the low nibble.
    static func int4Blocked(_ name: String, _ w: [Float], shape: [Int], axis: Int, block: Int) -> Tensor {
        let inner = shape[(axis + 1)...].reduce(1, *), size = shape[axis], blocks = (size + block - 1) / block
        var scaleShape = shape
        scaleShape[axis] = blocks
        func group(_ i: Int) -> Int {
            let outer = i / (inner * size), a = (i / inner) % size, rest = i % inner
            return (outer * blocks + a / block) * inner + rest
        }
        var amax = [Float](repeating: 0, count: scaleShape.reduce(1, *))
        for (i, v) in w.enumerated() { amax[group(i)] = max(amax[group(i)], abs(v)) }
        let s = amax.map { $0 > 0 ? $0 / 7 : 1 }
        var packed = [UInt8](repeating: 0, count: (w.count + 1) / 2)
        for (i, v) in w.enumerated() {
            let q = Int8(max(-8, min(7, (v / s[group(i)]).rounded(.toNearestOrEven))))
            let nibble = UInt8(bitPattern: q) & 0x0F
            packed[i / 2] |= i % 2 == 0 ? nibble : nibble << 4
        }
        var t = Tensor(name: name, dtype: .i4, shape: Shape(shape), values: packed)
        t.quant = QuantSpec(format: .int4, granularity: .perBlock(axis: axis, size: block),
                            scale: Tensor(name: name + "_scale", dtype: .f32, shape: Shape(scaleShape), values: s))
        return t
    }

    /// A static activation scale: amax / 127 (int8) or / 448 (fp8).
    static func inputScale(_ name: String, amax: Float, format: QuantSpec.Format) -> Tensor {
        Tensor(name: name, dtype: .f32, shape: [], values: [amax / (format == .int8 ? 127 : 448)])
    }
}

/// A small IR model: a residual MLP (MatMul, Add residual, Relu, Gemm with transB) and a Conv
/// branch, float32, with symbolic batch.
enum QDQTestModel {
    static func float(seed: UInt64 = 42) throws -> Model {
        var rng = TestRandom(state: seed)
        let tensors = [
            Tensor(name: "w1", dtype: .f32, shape: [32, 32], values: rng.values(32 * 32, scale: 0.2)),
            Tensor(name: "b1", dtype: .f32, shape: [32], values: rng.values(32, scale: 0.1)),
            Tensor(name: "w2", dtype: .f32, shape: [8, 32], values: rng.values(8 * 32, scale: 0.2)),
            Tensor(name: "cw", dtype: .f32, shape: [4, 2, 3, 3], values: rng.values(4 * 2 * 9, scale: 0.3)),
            Tensor(name: "cb", dtype: .f32, shape: [4], values: rng.values(4, scale: 0.1)),
        ]
        let graph = Graph(
            name: "qdq_test",
            inputs: [ValueInfo(name: "x", dtype: .f32, dims: [.symbolic("batch"), .fixed(32)]),
                     ValueInfo(name: "img", dtype: .f32, dims: [.symbolic("batch"), .fixed(2), .fixed(5), .fixed(5)])],
            outputs: [ValueInfo(name: "y", dtype: .f32, dims: [.symbolic("batch"), .fixed(8)]),
                      ValueInfo(name: "feat", dtype: .f32, dims: [.symbolic("batch"), .fixed(4), .fixed(5), .fixed(5)])],
            nodes: [
                Node(name: "mm1", opType: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
                Node(name: "bias1", opType: "Add", inputs: ["h", "b1"], outputs: ["hb"]),
                Node(name: "residual", opType: "Add", inputs: ["hb", "x"], outputs: ["res"]),
                Node(name: "act", opType: "Relu", inputs: ["res"], outputs: ["r"]),
                Node(name: "fc", opType: "Gemm", inputs: ["r", "w2"], outputs: ["y"], attributes: [("transB", .int(1))]),
                Node(name: "conv", opType: "Conv", inputs: ["img", "cw", "cb"], outputs: ["c"],
                     attributes: [("pads", .ints([1, 1, 1, 1]))]),
                Node(name: "conv_act", opType: "Relu", inputs: ["c"], outputs: ["feat"]),
            ],
            initializerNames: tensors.map(\.name))
        return try Model(tensors: tensors, graph: graph)
    }

    /// The same model with its weights quantized in `format` (int8: per channel; fp8: per tensor;
    /// int4: blocks of 16 along the input dim, MatMul/Gemm only) and, when `activations`, static
    /// input scales on every quantized layer.
    static func quantized(_ format: QuantSpec.Format, activations: Bool) throws -> Model {
        let model = try float()
        let specs: [(name: String, outputAxis: Int, inputAxis: Int)] = [("w1", 1, 0), ("w2", 0, 1), ("cw", 0, 1)]
        for (name, outputAxis, inputAxis) in specs {
            let t = model[name]!
            let w = try t.floats()
            var q: Tensor
            switch format {
            case .int8: q = TestQuantizer.int8PerChannel(name, w, shape: t.shape.dims, axis: outputAxis)
            case .fp8e4m3: q = try TestQuantizer.fp8PerTensor(name, w, shape: t.shape.dims)
            case .int4:
                if name == "cw" { continue }
                q = TestQuantizer.int4Blocked(name, w, shape: t.shape.dims, axis: inputAxis, block: 16)
            default: fatalError("not used")
            }
            if activations {
                q.quant!.inputScale = TestQuantizer.inputScale(name + "_input_scale", amax: name == "w2" ? 3 : 2.5,
                                                               format: format == .int8 ? .int8 : .fp8e4m3)
            }
            model.set(q)
        }
        return model
    }
}
