import ArgumentParser
import KilnCore
import KilnHost

/// `kiln inspect PATH`: what is inside a checkpoint.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show the tensors, dtypes, shapes and totals of a model file or folder."
    )

    @Argument(help: "A model file or folder (safetensors file, sharded checkpoint, HF folder, ...).")
    var path: String

    @Option(help: "Read with this format plugin instead of guessing.")
    var from: String?

    @Option(help: "Show at most this many tensors in the table (0 = all).")
    var limit: Int = 0

    @Flag(help: "Measure the 2:4 sparsity pattern of every [out, in] weight (automatic for models recorded as sparse).")
    var sparsity = false

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let registry = try global.registry()
        let reader = try registry.reader(for: path, named: from)
        let model = try reader.read(path: path, context: global.context())
        var summary = ModelSummary(model)
        if sparsity || model.quantization?.sparsity != nil { try summary.measureSparsity() }
        if global.json {
            print(summary.json(path: path, format: reader.name).serialized(pretty: true))
        } else {
            print(summary.text(path: path, format: reader.name, limit: limit))
        }
    }
}

/// Totals and per-tensor rows of a model, as `inspect` prints them.
struct ModelSummary {
    let model: Model
    /// Measured 2:4 statistics per weight name, when asked for.
    var sparsity: [String: StructuredSparsity.Statistics]?

    init(_ model: Model) { self.model = model }

    /// Measure the 2:4 pattern of every rank-2 weight whose input width is a multiple of 4.
    mutating func measureSparsity() throws {
        var result: [String: StructuredSparsity.Statistics] = [:]
        for t in model.tensors where StructuredSparsity.appliesTo(t) && t.dtype != .i64 && t.dtype != .i32 {
            result[t.name] = try StructuredSparsity.twoFour(t)
        }
        sparsity = result
    }

    /// `fp8 per-tensor`, `int8 per-channel`, `int4 g64` …
    static func quantDescription(_ t: Tensor) -> String {
        guard let q = t.quant else { return "" }
        var text = q.format.rawValue
        switch q.granularity {
        case .perTensor: text += " per-tensor"
        case .perChannel: text += " per-channel"
        case .perBlock(_, let size): text += " g\(size)"
        @unknown default: text += " (other granularity)"
        }
        if q.preQuantScale != nil { text += " +pre-scale" }
        if q.inputScale != nil { text += " +act-scale" }
        return text
    }

    /// dtype → (tensor count, element count), in table order.
    var histogram: [(DType, Int, Int)] {
        DType.allCases.compactMap { d in
            let ts = model.tensors.filter { $0.dtype == d }
            return ts.isEmpty ? nil : (d, ts.count, ts.reduce(0) { $0 + $1.elementCount })
        }
    }

    func text(path: String, format: String, limit: Int) -> String {
        var lines: [String] = []
        lines.append("\(path) (\(format))")
        lines.append("tensors: \(model.tensors.count)   parameters: \(grouped(model.parameterCount))   bytes: \(grouped(model.byteCount)) (\(humanBytes(model.byteCount)))")
        lines.append("dtypes: " + histogram.map { "\($0.0) \($0.1) tensors / \(grouped($0.2)) params" }.joined(separator: ", "))
        if let q = model.quantization {
            lines.append("quantization: \(q.algorithm)" + (q.kvCacheAlgorithm.map { ", kv cache \($0)" } ?? "") + (q.groupSize.map { ", group \($0)" } ?? ""))
        }
        if !model.metadata.isEmpty {
            lines.append("metadata: " + model.metadata.keys.sorted().map { "\($0)=\(model.metadata[$0]!)" }.joined(separator: ", "))
        }
        lines.append("")
        let quantized = model.tensors.contains { $0.quant != nil }
        var header = ["NAME", "DTYPE", "SHAPE", "PARAMS", "BYTES"]
        if quantized { header.append("QUANT") }
        if sparsity != nil { header.append("SPARSITY") }
        var rows: [[String]] = [header]
        let shown = limit > 0 ? Array(model.tensors.prefix(limit)) : model.tensors
        for t in shown {
            var row = [t.name, t.dtype.name, t.shape.description, grouped(t.elementCount), grouped(t.byteCount)]
            if quantized { row.append(ModelSummary.quantDescription(t)) }
            if let sparsity { row.append(sparsity[t.name]?.description ?? "") }
            rows.append(row)
        }
        lines.append(Table.render(rows, rightAligned: [3, 4]))
        if let sparsity {
            let sparse = sparsity.values.filter(\.isTwoFour).count
            lines.append("2:4 sparse weights: \(sparse) of \(sparsity.count) measured")
        }
        if shown.count < model.tensors.count { lines.append("… \(model.tensors.count - shown.count) more (use --limit 0)") }
        return lines.joined(separator: "\n")
    }

    func json(path: String, format: String) -> JSONValue {
        var root = JSONObject()
        root["path"] = .string(path)
        root["format"] = .string(format)
        root["tensor_count"] = .int(Int64(model.tensors.count))
        root["parameters"] = .int(Int64(model.parameterCount))
        root["bytes"] = .int(Int64(model.byteCount))
        root["dtypes"] = .object(JSONObject(histogram.map { ($0.0.name, .object(JSONObject([("tensors", .int(Int64($0.1))), ("parameters", .int(Int64($0.2)))]))) }))
        root["metadata"] = .object(JSONObject(model.metadata.keys.sorted().map { ($0, .string(model.metadata[$0]!)) }))
        if let q = model.quantization {
            root["quantization"] = .object(JSONObject([("algorithm", .string(q.algorithm)), ("kv_cache", q.kvCacheAlgorithm.map { .string($0) } ?? .null)]))
        }
        root["tensors"] = .array(model.tensors.map { t in
            var o = JSONObject([
                ("name", .string(t.name)), ("dtype", .string(t.dtype.name)),
                ("shape", .array(t.shape.dims.map { .int(Int64($0)) })),
                ("parameters", .int(Int64(t.elementCount))), ("bytes", .int(Int64(t.byteCount))),
            ])
            if t.quant != nil { o["quant"] = .string(ModelSummary.quantDescription(t)) }
            if let s = sparsity?[t.name] {
                o["sparsity"] = .object(JSONObject([("pattern", "2:4"), ("groups", .int(Int64(s.groups))),
                                                    ("conforming", .int(Int64(s.conforming))), ("zeros", .int(Int64(s.zeros)))]))
            }
            return .object(o)
        })
        return .object(root)
    }
}

/// 1234567 → "1,234,567"
func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}

/// 1048576 → "1.05 MB" (decimal units).
func humanBytes(_ n: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var v = Double(n), u = 0
    while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
    if u == 0 { return "\(n) B" }
    let scaled = (v * 100).rounded() / 100
    return "\(scaled) \(units[u])"
}
