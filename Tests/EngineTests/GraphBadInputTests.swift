import Foundation
import KilnCore
@testable import KilnEngine
import KilnNumpy
import KilnTestKit
import Testing

/// Malformed graphs and inputs the interpreter and the graph quantizer refuse with a `KilnError`
/// naming the node (or value) and what was expected, instead of trapping. Hand-made tiny graphs,
/// no python needed.
@Suite("Graph interpreter and quantizer: bad input is a KilnError, never a crash")
struct GraphBadInputTests {
    let dir = TemporaryDirectory("kiln-graph-bad")

    /// Run `nodes` with every key of `feed` as a graph input; the error text, or nil when it ran.
    func refusal(_ nodes: [Node], _ feed: [String: GraphValue], outputs: [String]? = nil, opset: Int = 17) throws -> String? {
        let graph = Graph(inputs: feed.keys.sorted().map { ValueInfo(name: $0) },
                          outputs: (outputs ?? nodes.last!.outputs).map { ValueInfo(name: $0) }, nodes: nodes)
        let model = try Model(graph: graph)
        model.opsetImports = ["": opset]
        do {
            _ = try GraphInterpreter(model: model).run(feed)
            return nil
        } catch let e as KilnError {
            return "\(e)"
        }
    }

    func floats(_ shape: [Int], _ value: Float = 1) -> GraphValue {
        GraphValue(shape: shape, floats: Array(repeating: value, count: shape.reduce(1, *)))
    }

    @Test("An ONNX language model with inputs eval cannot feed, or logits of the wrong rank, is refused")
    func languageModelGraphs() throws {
        func model(inputs: [String], logitsFrom node: Node) throws -> Model {
            let m = try Model(graph: Graph(inputs: inputs.map { ValueInfo(name: $0) }, outputs: [ValueInfo(name: "logits")], nodes: [node]))
            m.opsetImports = ["": 17]
            return m
        }
        let cast = Node(name: "scores", opType: "Cast", inputs: ["input_ids"], outputs: ["logits"], attributes: [("to", .int(1))])
        let extra = try model(inputs: ["input_ids", "token_type_ids"], logitsFrom: cast)
        #expect(GraphLanguageModel.accepts(extra))
        let e1 = EngineFixtures.errorText { _ = try GraphLanguageModel(model: extra) }
        #expect(e1.contains("graph › inputs") && e1.contains("found also token_type_ids"), "\(e1)")
        // Cast keeps [1, n]: not the [1, n, vocab] scores perplexity needs.
        let flat = try GraphLanguageModel(model: try model(inputs: ["input_ids"], logitsFrom: cast))
        let e2 = EngineFixtures.errorText { _ = try flat.logits([[1, 2, 3]]) }
        #expect(e2.contains("output \"logits\"") && e2.contains("expected f32 logits [1, 3, vocab] for 3 tokens"), "\(e2)")
    }

    @Test("ConvTranspose whose kernel_shape disagrees with the weight is refused (it would read past the weight)")
    func convTransposeKernelShape() throws {
        let node = Node(name: "deconv", opType: "ConvTranspose", inputs: ["x", "w"], outputs: ["y"],
                        attributes: [("kernel_shape", .ints([5, 5]))])
        let e = try #require(try refusal([node], ["x": floats([1, 1, 3, 3]), "w": floats([1, 1, 2, 2])]))
        #expect(e.contains("node \"deconv\"") && e.contains("kernel_shape") && e.contains("[1, 1, 2, 2]"), "\(e)")
    }

    @Test("Where with a float condition, or a float and an integer branch, is refused")
    func whereTypes() throws {
        let node = Node(name: "pick", opType: "Where", inputs: ["c", "a", "b"], outputs: ["y"])
        let floatCondition = try #require(try refusal([node], ["c": floats([2]), "a": floats([2]), "b": floats([2])]))
        #expect(floatCondition.contains("node \"pick\"") && floatCondition.contains("input 0") && floatCondition.contains("bool"), "\(floatCondition)")
        let mixed = try #require(try refusal([node], ["c": GraphValue(shape: [2], ints: [1, 0], dtype: .bool), "a": floats([2]),
                                                      "b": GraphValue(shape: [2], ints: [3, 4])]))
        #expect(mixed.contains("node \"pick\"") && mixed.contains("both floating-point or both integer"), "\(mixed)")
    }

    @Test("Unsqueeze with a repeated axis is refused")
    func unsqueezeDuplicateAxes() throws {
        let node = Node(name: "unsq", opType: "Unsqueeze", inputs: ["x", "axes"], outputs: ["y"])
        let e = try #require(try refusal([node], ["x": floats([2]), "axes": GraphValue(shape: [2], ints: [0, -3])]))
        #expect(e.contains("node \"unsq\"") && e.contains("unique"), "\(e)")
    }

    @Test("axis ops and MatMul on a scalar (rank 0) are refused", arguments: ["Concat", "Softmax", "Gather", "MatMul"])
    func scalarOperands(_ op: String) throws {
        let node = Node(name: "on_scalar", opType: op, inputs: op == "Concat" || op == "Softmax" ? ["x"] : ["x", "x"], outputs: ["y"],
                        attributes: op == "MatMul" ? [] : [("axis", .int(0))])
        let e = try #require(try refusal([node], ["x": floats([])]))
        #expect(e.contains("node \"on_scalar\"") && e.contains("rank ≥ 1"), "\(e)")
    }

    @Test("QuantizeLinear / DequantizeLinear with a zero point that is neither 1 value nor one per scale are refused",
          arguments: ["QuantizeLinear", "DequantizeLinear"])
    func zeroPointLength(_ op: String) throws {
        let node = Node(name: "q", opType: op, inputs: ["x", "s", "z"], outputs: ["y"], attributes: [("axis", .int(1))])
        let x = op == "QuantizeLinear" ? floats([2, 3]) : GraphValue(shape: [2, 3], ints: Array(repeating: 1, count: 6), dtype: .i8)
        let e = try #require(try refusal([node], ["x": x, "s": floats([3], 0.5), "z": GraphValue(shape: [2], ints: [0, 0], dtype: .i8)]))
        #expect(e.contains("node \"q\"") && e.contains("zero point") && e.contains("1 or 3 values"), "\(e)")
    }

    @Test("integer Div of Int64.min by -1 (overflow) and by zero are refused")
    func integerDivision() throws {
        let node = Node(name: "div", opType: "Div", inputs: ["a", "b"], outputs: ["y"])
        let overflow = try #require(try refusal([node], ["a": GraphValue(shape: [1], ints: [.min]), "b": GraphValue(shape: [1], ints: [-1])]))
        #expect(overflow.contains("node \"div\"") && overflow.contains("overflows"), "\(overflow)")
        let zero = try #require(try refusal([node], ["a": GraphValue(shape: [1], ints: [7]), "b": GraphValue(shape: [1], ints: [0])]))
        #expect(zero.contains("node \"div\"") && zero.contains("division by zero"), "\(zero)")
    }

    @Test("a graph output its node did not produce (a second output of Identity) fails naming the output and the node")
    func unproducedOutput() throws {
        let node = Node(name: "copy", opType: "Identity", inputs: ["x"], outputs: ["y", "extra"])
        let e = try #require(try refusal([node], ["x": floats([1, 1, 2, 2])], outputs: ["y", "extra"]))
        #expect(e.contains("output \"extra\"") && e.contains("not produced") && e.contains("node \"copy\""), "\(e)")
    }

    @Test("MaxPool's Indices output is refused as unsupported, naming the node (graph_diff.py: it was silently missing)")
    func maxPoolIndices() throws {
        let node = Node(name: "pool", opType: "MaxPool", inputs: ["x"], outputs: ["y", "indices"], attributes: [("kernel_shape", .ints([2, 2]))])
        let e = try #require(try refusal([node], ["x": floats([1, 1, 2, 2])], outputs: ["y", "indices"]))
        #expect(e.contains("node \"pool\" (MaxPool)") && e.contains("Indices") && e.contains("not supported"), "\(e)")
    }

    @Test("float → integer conversions of NaN / Inf / out-of-range values are refused (Reshape shape, Gather indices, Clip bound)")
    func nonFiniteIntegers() throws {
        let reshape = Node(name: "reshape", opType: "Reshape", inputs: ["x", "shape"], outputs: ["y"])
        let e1 = try #require(try refusal([reshape], ["x": floats([2]), "shape": GraphValue(shape: [1], floats: [.nan])]))
        #expect(e1.contains("node \"reshape\"") && e1.contains("input 1") && e1.contains("finite value within the Int64 range"), "\(e1)")
        let gather = Node(name: "gather", opType: "Gather", inputs: ["x", "i"], outputs: ["y"])
        let e2 = try #require(try refusal([gather], ["x": floats([2]), "i": GraphValue(shape: [1], floats: [.infinity])]))
        #expect(e2.contains("node \"gather\"") && e2.contains("indices") && e2.contains("inf"), "\(e2)")
        let clip = Node(name: "clip", opType: "Clip", inputs: ["x", "lo"], outputs: ["y"])
        let e3 = try #require(try refusal([clip], ["x": GraphValue(shape: [1], ints: [5]), "lo": GraphValue(shape: [], floats: [.nan])]))
        #expect(e3.contains("node \"clip\"") && e3.contains("min") && e3.contains("nan"), "\(e3)")
        #expect(try refusal([clip], ["x": GraphValue(shape: [2], ints: [.max, -3]), "lo": GraphValue(shape: [], ints: [0])]) == nil)
    }

    @Test("integer Pow whose result leaves Int64 is refused")
    func integerPowOverflow() throws {
        let pow = Node(name: "pow", opType: "Pow", inputs: ["a", "b"], outputs: ["y"])
        let e = try #require(try refusal([pow], ["a": GraphValue(shape: [1], ints: [10]), "b": GraphValue(shape: [1], ints: [40])]))
        #expect(e.contains("node \"pow\"") && e.contains("Int64 range"), "\(e)")
    }

    @Test("sizes read from the model are checked before storage is made: negative, overflowing or too many elements")
    func sizesFromTheFile() throws {
        let constant = Node(name: "fill", opType: "ConstantOfShape", inputs: ["shape"], outputs: ["y"])
        let e1 = try #require(try refusal([constant], ["shape": GraphValue(shape: [2], ints: [3, -2])]))
        #expect(e1.contains("node \"fill\"") && e1.contains("input 0 (shape)") && e1.contains("dims ≥ 0"), "\(e1)")
        let e2 = try #require(try refusal([constant], ["shape": GraphValue(shape: [3], ints: [1 << 40, 1 << 40, 1 << 40])]))
        #expect(e2.contains("node \"fill\"") && e2.contains("at most \(GraphLimits.maxElements) elements"), "\(e2)")
        let reshape = Node(name: "reshape", opType: "Reshape", inputs: ["x", "shape"], outputs: ["y"])
        let e3 = try #require(try refusal([reshape], ["x": floats([4]), "shape": GraphValue(shape: [3], ints: [1 << 40, 1 << 40, -1])]))
        #expect(e3.contains("node \"reshape\"") && e3.contains("cannot reshape"), "\(e3)")
        let expand = Node(name: "expand", opType: "Expand", inputs: ["x", "shape"], outputs: ["y"])
        let e4 = try #require(try refusal([expand], ["x": floats([1]), "shape": GraphValue(shape: [1], ints: [-4])]))
        #expect(e4.contains("node \"expand\"") && e4.contains("dims ≥ 0"), "\(e4)")
        let resize = Node(name: "resize", opType: "Resize", inputs: ["x", "", "scales"], outputs: ["y"])
        let e5 = try #require(try refusal([resize], ["x": floats([1, 1, 2, 2]), "scales": GraphValue(shape: [4], floats: [1, 1, .nan, 2])]))
        #expect(e5.contains("node \"resize\"") && e5.contains("finite values > 0"), "\(e5)")
        let sized = Node(name: "resize", opType: "Resize", inputs: ["x", "", "", "sizes"], outputs: ["y"])
        let e6 = try #require(try refusal([sized], ["x": floats([1, 1, 2, 2]), "sizes": GraphValue(shape: [4], ints: [1, 1, -3, 2])]))
        #expect(e6.contains("node \"resize\"") && e6.contains("input 3 (sizes)"), "\(e6)")
    }

    @Test("Split into no outputs or negative parts, and window ops with huge dilations or output_shape, are refused")
    func splitAndWindows() throws {
        let none = Node(name: "split0", opType: "Split", inputs: ["x"], outputs: [])
        let e1 = try #require(try refusal([none], ["x": floats([4])], outputs: ["x"]))
        #expect(e1.contains("node \"split0\"") && e1.contains("at least one output"), "\(e1)")
        let negative = Node(name: "split", opType: "Split", inputs: ["x", "sizes"], outputs: ["a", "b"])
        let e2 = try #require(try refusal([negative], ["x": floats([4]), "sizes": GraphValue(shape: [2], ints: [6, -2])]))
        #expect(e2.contains("node \"split\"") && e2.contains("do not add up to 4"), "\(e2)")
        let pool = Node(name: "pool", opType: "MaxPool", inputs: ["x"], outputs: ["y"],
                        attributes: [("kernel_shape", .ints([2, 2])), ("dilations", .ints([1 << 62, 1]))])
        let e3 = try #require(try refusal([pool], ["x": floats([1, 1, 2, 2])]))
        #expect(e3.contains("node \"pool\"") && e3.contains("dilations"), "\(e3)")
        let deconv = Node(name: "deconv", opType: "ConvTranspose", inputs: ["x", "w"], outputs: ["y"],
                          attributes: [("output_shape", .ints([Int64.max, 4]))])
        let e4 = try #require(try refusal([deconv], ["x": floats([1, 1, 2, 2]), "w": floats([1, 1, 2, 2])]))
        #expect(e4.contains("node \"deconv\"") && e4.contains("output_shape"), "\(e4)")
    }

    @Test("calibration statistics skip NaN and ±Inf, counting them")
    func nonFiniteStatistics() {
        var stats = RangeStatistics()
        let values: [Float] = [.nan, .infinity, -.infinity, 1, -2, 0.5]
        values.withUnsafeBufferPointer { stats.observeMax($0.baseAddress!, $0.count) }
        values.withUnsafeBufferPointer { stats.observeHistogram($0.baseAddress!, $0.count) }
        #expect(stats.amax == 2 && stats.finite == 3 && stats.nonFinite == 3)
        #expect(stats.histogram.reduce(0, +) == 3)
        #expect(stats.range(.percentile, percentile: 100, levels: 127, fp8: false) == 2)
    }

    /// x[n, 2] · w (two MatMuls "b_mm" then "a_mm" on identical weights when `twin`), as a quantizable model.
    func matMulModel(twin: Bool = false) throws -> Model {
        let names = twin ? ["b", "a"] : ["a"]
        let graph = Graph(inputs: [ValueInfo(name: "x", dtype: .f32, dims: [.unknown, .fixed(2)])],
                          outputs: names.map { ValueInfo(name: "y_" + $0) },
                          nodes: names.map { Node(name: $0 + "_mm", opType: "MatMul", inputs: ["x", "w_" + $0], outputs: ["y_" + $0]) },
                          initializerNames: names.map { "w_" + $0 })
        let model = try Model(tensors: names.map { Tensor(name: "w_" + $0, dtype: .f32, shape: [2, 2], values: [Float(0.31), -1.7, 2.9, 0.05]) },
                              graph: graph)
        model.opsetImports = ["": 13]
        return model
    }

    func calibration(_ x: [Float], samples: Int, graph: Graph) throws -> (GraphInputs, String) {
        let path = dir.file("calib-\(samples)-\(x.first.map { "\($0)" } ?? "empty").npz")
        try NPZWriter.write([GraphValue(shape: [samples, 2], floats: x).tensor(name: "x")], to: path, overwrite: true)
        return (try GraphInputs(npz: path, graph: graph), path)
    }

    @Test("an activation that is NaN / Inf in every calibration sample is refused, naming it")
    func allNonFiniteActivation() throws {
        let model = try matMulModel()
        let (inputs, _) = try calibration([.nan, .infinity, .nan, -.infinity], samples: 2, graph: try #require(model.graph))
        do {
            _ = try GraphQuantizer.quantize(model, calibration: inputs, options: GraphQuantizer.Options())
            Issue.record("accepted")
        } catch let e as KilnError {
            #expect("\(e)".contains("value \"x\"") && "\(e)".contains("NaN or infinite"), "\(e)")
        }
    }

    @Test("calibration data with no samples (first dimension 0) is refused, naming the file")
    func emptyCalibration() throws {
        let model = try matMulModel()
        let (inputs, path) = try calibration([], samples: 0, graph: try #require(model.graph))
        do {
            _ = try GraphQuantizer.quantize(model, calibration: inputs, options: GraphQuantizer.Options())
            Issue.record("accepted")
        } catch let e as KilnError {
            #expect(e.file == path && "\(e)".contains("no calibration samples in \(path)"), "\(e)")
        }
    }

    @Test("exclude-sensitive: equally sensitive nodes are ranked by name, not by graph order")
    func sensitivityTieBreak() throws {
        let model = try matMulModel(twin: true)
        let (inputs, _) = try calibration([0.3, -1.1, 0.7, 2.2], samples: 2, graph: try #require(model.graph))
        var options = GraphQuantizer.Options()
        options.excludeSensitive = 1
        let report = try GraphQuantizer.quantize(model, calibration: inputs, options: options)
        #expect(report.sensitiveNodes.map(\.node) == ["a_mm"] && report.quantizedNodes == ["b_mm"], "\(report.sensitiveNodes)")
    }

    /// FuzzGraphRun finding (arithmetic overflow trap in ShapeOps.viewOffsets): a Slice step of Int64.max
    /// overflowed `step · stride` and `end - start + step - 1`. A step longer than the axis takes one element,
    /// as the ONNX spec's clamping gives (onnxruntime agrees: x[1::huge] = [1], x[-1::-huge] = [5]).
    @Test("Slice with a step of Int64.max or Int64.min takes one element instead of trapping")
    func sliceHugeSteps() throws {
        let x = GraphValue(shape: [2, 6], floats: (0..<12).map(Float.init))
        func sliced(_ start: Int64, _ end: Int64, _ step: Int64) throws -> GraphValue {
            let node = Node(name: "slice", opType: "Slice", inputs: ["x", "s", "e", "a", "t"], outputs: ["y"])
            let graph = Graph(inputs: ["x", "s", "e", "a", "t"].map { ValueInfo(name: $0) }, outputs: [ValueInfo(name: "y")],
                              nodes: [node])
            let model = try Model(graph: graph)
            model.opsetImports = ["": 17]
            let one = { (v: Int64) in GraphValue(shape: [1], ints: [v]) }
            return try #require(try GraphInterpreter(model: model).run(["x": x, "s": one(start), "e": one(end), "a": one(1),
                                                                         "t": one(step)])["y"])
        }
        let forward = try sliced(1, 6, .max)
        #expect(forward.shape == [2, 1] && forward.floats == [1, 7])
        let backward = try sliced(-1, .min, .min)
        #expect(backward.shape == [2, 1] && backward.floats == [5, 11])
        let beyond = try sliced(.max, .max, .max)
        #expect(beyond.shape == [2, 0])
    }

    @Test("Conv and MaxPool whose window is longer than the padded input are refused (onnxruntime refuses; Kiln gave an empty output)",
          arguments: ["Conv", "MaxPool"])
    func windowLongerThanInput(_ op: String) throws {
        let node = Node(name: "window", opType: op, inputs: op == "Conv" ? ["x", "w"] : ["x"], outputs: ["y"],
                        attributes: [("kernel_shape", .ints([3, 3])), ("pads", .ints([0, 1, 0, 0]))])
        let feed = op == "Conv" ? ["x": floats([1, 1, 2, 4]), "w": floats([1, 1, 3, 3])] : ["x": floats([1, 1, 2, 4])]
        let e = try #require(try refusal([node], feed))
        #expect(e.contains("node \"window\" (\(op))") && e.contains("longer than the padded input (2, 4)"), "\(e)")
        // In ceil mode a window that starts inside the input gives one output row: that runs.
        if op == "MaxPool" {
            let ceil = Node(name: "window", opType: op, inputs: ["x"], outputs: ["y"],
                            attributes: [("kernel_shape", .ints([3, 3])), ("strides", .ints([3, 3])), ("ceil_mode", .int(1))])
            #expect(try refusal([ceil], feed) == nil)
        }
    }

    @Test("Resize attributes of opset 18 that change the result (antialias, axes, keep_aspect_ratio_policy) are refused, not ignored")
    func resizeOpset18Attributes() throws {
        let sizes = GraphValue(shape: [4], ints: [1, 1, 2, 3])
        let cases: [([(String, AttributeValue)], String)] = [
            ([("mode", .string(Array("linear".utf8))), ("antialias", .int(1))], "antialiased linear Resize"),
            ([("axes", .ints([2, 3]))], "axes attribute"),
            ([("keep_aspect_ratio_policy", .string(Array("not_larger".utf8)))], "keep_aspect_ratio_policy \"not_larger\""),
        ]
        for (attributes, message) in cases {
            let node = Node(name: "down", opType: "Resize", inputs: ["x", "", "", "sizes"], outputs: ["y"], attributes: attributes)
            let e = try #require(try refusal([node], ["x": floats([1, 1, 4, 6]), "sizes": sizes], opset: 18))
            #expect(e.contains("node \"down\" (Resize)") && e.contains(message) && e.contains("not supported"), "\(e)")
        }
        // Antialias does not change nearest sampling: that runs.
        let nearest = Node(name: "down", opType: "Resize", inputs: ["x", "", "", "sizes"], outputs: ["y"], attributes: [("antialias", .int(1))])
        #expect(try refusal([nearest], ["x": floats([1, 1, 4, 6]), "sizes": sizes], opset: 18) == nil)
    }

    @Test("Resize of an empty input to a non-empty size is refused (it read before the input's first element)")
    func resizeEmptyInput() throws {
        for mode in ["nearest", "linear"] {
            let node = Node(name: "up", opType: "Resize", inputs: ["x", "", "", "sizes"], outputs: ["y"],
                            attributes: [("mode", .string(Array(mode.utf8)))])
            let e = try #require(try refusal([node], ["x": floats([1, 1, 0, 2]), "sizes": GraphValue(shape: [4], ints: [1, 1, 3, 4])]))
            #expect(e.contains("node \"up\" (Resize)") && e.contains("empty input [1, 1, 0, 2]"), "\(e)")
        }
    }
}
