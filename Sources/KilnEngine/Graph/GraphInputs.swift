import KilnCore
import KilnNumpy

/// Inputs of a graph read from a numpy `.npz` archive (member `x.npy` feeds graph input `x`),
/// split into batches along the first axis for calibration.
public struct GraphInputs: Sendable {
    /// Values by graph input name, whole.
    public let values: [String: GraphValue]
    /// Samples along the first axis, when every input has the same first dimension (nil otherwise).
    public let samples: Int?
    let path: String

    /// Read `path` and match its members to `graph`'s inputs (initializers excluded).
    /// - Throws: `KilnError` naming the file: unreadable archive, a graph input without a member,
    ///   members whose first dimensions differ, wrong rank; extra members are refused too (a typo
    ///   in a name should not pass silently).
    public init(npz path: String, graph: Graph) throws {
        let archive = try NPZReader().read(path: path, context: KilnContext())
        let wanted = graph.inputs.filter { !graph.initializerNames.contains($0.name) }
        var values: [String: GraphValue] = [:]
        for input in wanted {
            guard let t = archive[input.name] else {
                throw KilnError(.invalidInput, file: path, path: ["member \"\(input.name).npy\""],
                                "missing: the graph input \"\(input.name)\" needs a value (members: \(archive.tensorNames.joined(separator: ", ")))")
            }
            if let dims = input.dims, dims.count != t.shape.rank {
                throw KilnError.mismatch(file: path, path: ["member \"\(input.name).npy\""], expected: "rank \(dims.count)",
                                         found: "shape \(t.shape)")
            }
            values[input.name] = try GraphValue(t)
        }
        let extra = archive.tensorNames.filter { values[$0] == nil }
        guard extra.isEmpty else {
            throw KilnError(.invalidInput, file: path, path: ["member \"\(extra[0]).npy\""],
                            "no graph input of that name (inputs: \(wanted.map(\.name).joined(separator: ", ")))")
        }
        self.init(values: values, source: path)
    }

    /// Inputs already in memory (named `source` in errors), e.g. built by a program rather than read from a file.
    public init(values: [String: GraphValue], source: String) {
        let firsts = Set(values.values.map { $0.shape.first ?? 1 })
        self.values = values
        path = source
        samples = firsts.count <= 1 ? firsts.first ?? 1 : nil
    }

    /// Inputs for samples `range` (first axis), at most `limit` samples in all.
    public func batch(_ range: Range<Int>) -> [String: GraphValue] {
        values.mapValues { v in
            guard v.rank > 0 else { return v }
            let inner = v.shape.dropFirst().reduce(1, *)
            let dims = [range.count] + v.shape.dropFirst()
            if v.isFloat {
                let out = GraphValue.uninitialized(dims, dtype: v.dtype)
                out.pointer.update(from: v.pointer + range.lowerBound * inner, count: range.count * inner)
                return out
            }
            return GraphValue(shape: dims, ints: Array(v.ints[(range.lowerBound * inner)..<(range.upperBound * inner)]), dtype: v.dtype)
        }
    }

    /// Batches of at most `size` samples covering the first `limit` samples.
    /// - Throws: `KilnError(.invalidInput)` when the members disagree on the number of samples, or hold none.
    public func batches(size: Int, limit: Int? = nil) throws -> [Range<Int>] {
        guard let samples else {
            throw KilnError(.invalidInput, file: path, "members disagree on the number of samples (first dimension) and cannot be split into batches")
        }
        let total = min(samples, limit ?? samples)
        guard total > 0 else {
            throw KilnError(.invalidInput, file: path, "no calibration samples in \(path) (first dimension \(samples), limit \(limit.map(String.init) ?? "none"))")
        }
        return stride(from: 0, to: total, by: max(1, size)).map { $0..<min(total, $0 + max(1, size)) }
    }
}
