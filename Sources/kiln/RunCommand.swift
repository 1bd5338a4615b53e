import ArgumentParser
import Foundation
import KilnCore
import KilnEngine
import KilnNumpy

/// `kiln run MODEL.onnx --inputs X.npz [--output OUT.npz]`: execute a graph model in Kiln's interpreter.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Execute a graph model (ONNX) on inputs from an .npz file in Kiln's interpreter; quantized models run fake-quantized.",
        discussion: "Each member NAME.npy of the archive feeds the graph input NAME. Prints every output's shape and statistics."
    )

    @Argument(help: "Model with a graph (.onnx, or anything a plugin reads into a graph).")
    var model: String

    @Option(help: "numpy .npz archive with one member per graph input.")
    var inputs: String

    @Option(help: "Write the outputs to this .npz archive (one member per graph output).")
    var output: String?

    @Flag(help: "Replace an existing --output file.")
    var overwrite = false

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let registry = try global.registry()
        let context = global.context()
        if let output, !overwrite { try AtomicOutput.refuseExisting(output) }
        let m = try EngineSupport.loadModel(model, registry: registry, context: context)
        let interpreter = try GraphInterpreter(model: m)
        let feed = try GraphInputs(npz: inputs, graph: interpreter.graph)
        let start = Date()
        let results = try interpreter.run(feed.values)
        let seconds = Date().timeIntervalSince(start)
        // `run` returns every graph output (it throws naming one that was not produced).
        let outputs = interpreter.graph.outputs.compactMap { o in results[o.name].map { (name: o.name, value: $0) } }
        if let output {
            try NPZWriter.write(outputs.map { $0.value.tensor(name: $0.name) }, to: output, overwrite: overwrite)
        }
        var rows: [(String, JSONValue)] = []
        var lines: [[String]] = [["output", "dtype", "shape", "min", "max", "mean"]]
        for (name, v) in outputs {
            let f = v.floats
            let lo = f.min() ?? 0, hi = f.max() ?? 0, mean = f.isEmpty ? 0 : f.reduce(0.0) { $0 + Double($1) } / Double(f.count)
            rows.append((name, .object(JSONObject([
                ("dtype", .string(v.dtype.name)), ("shape", .array(v.shape.map { .int(Int64($0)) })),
                ("min", .double(Double(lo))), ("max", .double(Double(hi))), ("mean", .double(mean)),
            ]))))
            lines.append([name, v.dtype.name, "\(v.shape)", EngineSupport.format(Double(lo)), EngineSupport.format(Double(hi)),
                          EngineSupport.format(mean)])
        }
        if global.json {
            print(JSONValue.object(JSONObject([("outputs", .object(JSONObject(rows))), ("seconds", .double(seconds)),
                                               ("samples", .int(Int64(feed.samples ?? 1)))])).serialized(pretty: true))
        } else {
            print(Table.render(lines))
            print("\(feed.samples.map(String.init) ?? "mixed") sample(s) in \(EngineSupport.format(seconds, digits: 3)) s" + (output.map { ", outputs written to \($0)" } ?? ""))
        }
    }
}
