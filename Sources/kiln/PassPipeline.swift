import Foundation
import KilnCore
import KilnEngine
import KilnHost

/// What `kiln quantize` and `kiln sparsify` share: load, run passes with the engine's calibration,
/// write, and measure perplexity before and after; then a summary.
struct PassPipeline {
    var model: String
    var passes: [(name: String, options: [String: String])]
    var output: String
    var writer: String
    var writerOptions: [String: String] = [:]
    var tokenizer: String?
    var eval: EngineSupport.EvalSettings?
    var global: GlobalOptions
    /// Post-training quantization of a graph model by the engine (options, calibration .npz) instead of pass plugins.
    var graphQuantization: (options: GraphQuantizer.Options, calibration: String)?

    /// Seconds per phase, in order.
    private(set) var phases: [(String, Double)] = []

    mutating func run() throws {
        // Refuse an existing output before the (long) passes, not after them.
        if !AtomicOutput.overwriteRequested(writerOptions) { try AtomicOutput.refuseExisting(output) }
        let registry = try global.registry()
        let context = global.context()
        var clock = Date()
        func lap(_ name: String) {
            phases.append((name, Date().timeIntervalSince(clock)))
            clock = Date()
        }
        var m = try EngineSupport.loadModel(model, registry: registry, context: context)
        lap("load")
        var before: PerplexityResult?, after: PerplexityResult?
        let tok = eval == nil ? nil : try EngineSupport.tokenizer(for: m, explicit: tokenizer)
        if let eval, let tok {
            before = try EngineSupport.perplexity(m, tokenizer: tok, settings: eval, progress: context.progress)
            lap("eval before")
        }
        if let (options, npz) = graphQuantization {
            guard let graph = m.graph else {
                throw KilnError(.invalidInput, file: model, "calibration on an .npz needs a graph model (ONNX); this model has weights only")
            }
            let inputs = try GraphInputs(npz: npz, graph: graph)
            let report = try GraphQuantizer.quantize(m, calibration: inputs, options: options, progress: context.progress)
            lap("calibrate + quantize (\(report.calibrationSamples) samples, \(options.range.rawValue) ranges)")
            for (node, error) in report.sensitiveNodes {
                let what = options.sensitivity == .alone ? "relative output error when quantized alone"
                    : "share of the output error removed when kept in f32"
                print("kept in f32 (sensitivity): \(node), \(what) \(EngineSupport.format(error, digits: 6))")
            }
        }
        let calibration = EngineCalibration(tokenizerPath: tokenizer)
        let matrix = BLASMatrixService()
        for (name, options) in passes {
            guard let pass = registry.passes.first(where: { $0.name == name }) else {
                throw KilnError(.unsupported, "no pass plugin called \"\(name)\"; loaded: \(registry.passes.map(\.name).joined(separator: ", "))")
            }
            let passContext = KilnContext(options: options, progress: context.progress, calibration: calibration, matrix: matrix)
            m = try pass.run(m, context: passContext)
            lap(name)
            if let report = calibration.lastReport, report.fromCache {
                phases[phases.count - 1].0 += " (calibration from cache)"
            }
        }
        let out = try registry.writer(named: writer, for: output)
        if out.name == "onnx", m.graph == nil, m.config != nil {
            m.graph = try Architectures.graph(for: m)
        }
        try out.write(m, to: output, context: KilnContext(options: writerOptions, progress: context.progress))
        lap("write \(out.name)")
        if let eval, let tok {
            after = try EngineSupport.perplexity(m, tokenizer: tok, settings: eval, progress: context.progress)
            lap("eval after")
        }
        report(m, before: before, after: after)
    }

    func report(_ m: Model, before: PerplexityResult?, after: PerplexityResult?) {
        let quantized = m.tensors.filter { $0.quant != nil }
        let record = m.quantization
        if global.json {
            var root = JSONObject()
            root["output"] = .string(output)
            root["algorithm"] = .string(record?.algorithm ?? "none")
            root["kv_cache"] = record?.kvCacheAlgorithm.map { .string($0) } ?? .null
            root["sparsity"] = record?.sparsity.map { .string($0) } ?? .null
            root["quantized_tensors"] = .int(Int64(quantized.count))
            root["excluded"] = .array((record?.excludedModules ?? []).map { .string($0) })
            root["seconds"] = .object(JSONObject(phases.map { ($0.0, .double($0.1)) }))
            if let before { root["perplexity_before"] = .double(before.ppl) }
            if let after { root["perplexity_after"] = .double(after.ppl) }
            if let after { root["eval_tokens"] = .int(Int64(after.tokensScored)) }
            print(JSONValue.object(root).serialized(pretty: true))
            return
        }
        var rows: [[String]] = [["", ""]]
        rows.append(["output", "\(output) (\(writer))"])
        rows.append(["algorithm", record?.algorithm ?? "none"])
        if let kv = record?.kvCacheAlgorithm { rows.append(["kv cache", kv]) }
        if let g = record?.groupSize { rows.append(["group size", String(g)]) }
        if let s = record?.sparsity { rows.append(["sparsity", s]) }
        rows.append(["quantized tensors", String(quantized.count)])
        rows.append(["excluded", (record?.excludedModules ?? []).joined(separator: ", ")])
        for (name, seconds) in phases { rows.append(["time: \(name)", EngineSupport.format(seconds, digits: 2) + " s"]) }
        print(Table.render(Array(rows.dropFirst())))
        if let before, let after {
            let change = 100 * (after.ppl / before.ppl - 1)
            print("perplexity \(EngineSupport.format(before.ppl)) → \(EngineSupport.format(after.ppl)) "
                  + "(\(change >= 0 ? "+" : "")\(EngineSupport.format(change, digits: 2))%) over \(after.tokensScored) tokens of \(eval!.text)")
        }
    }
}
