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

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let registry = try global.registry()
        let reader = try registry.reader(for: path, named: from)
        let model = try reader.read(path: path, context: global.context())
        let summary = ModelSummary(model)
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

    init(_ model: Model) { self.model = model }

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
        var rows: [[String]] = [["NAME", "DTYPE", "SHAPE", "PARAMS", "BYTES"]]
        let shown = limit > 0 ? Array(model.tensors.prefix(limit)) : model.tensors
        for t in shown {
            rows.append([t.name, t.dtype.name, t.shape.description, grouped(t.elementCount), grouped(t.byteCount)])
        }
        lines.append(Table.render(rows, rightAligned: [3, 4]))
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
            .object(JSONObject([
                ("name", .string(t.name)), ("dtype", .string(t.dtype.name)),
                ("shape", .array(t.shape.dims.map { .int(Int64($0)) })),
                ("parameters", .int(Int64(t.elementCount))), ("bytes", .int(Int64(t.byteCount))),
            ]))
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
