import Dispatch
import KilnCore

/// `int4-rtn`: INT4 weight-only round-to-nearest in blocks of G along the input dim — the baseline
/// AWQ is measured against. No calibration.
///
/// ```
/// symmetric (default):   s_b = amax_b / 7,              q = clamp(round_half_even(w / s_b), −8, 7)
/// zero-point=true:       s_b = (hi_b − lo_b) / 15,      z_b = round_half_even(−lo_b / s_b),
///                        q = clamp(round_half_even(w / s_b) + z_b, 0, 15)     (lo ≤ 0 ≤ hi)
/// ```
/// Output per linear: payload `i4` (or `u4`) `[out, in]` packed two per byte, low nibble first; QuantSpec
/// format int4 (uint4), granularity `.perBlock(axis: 1, size: G)`, scale f32 `[out, in/G]` (zero point u4,
/// same shape). Record: `W4A16_AWQ`, group G, lm_head and skipped layers excluded.
///
/// Options: `group-size`, `zero-point`, `indivisible`, `exclude`, `quantize-lm-head` (see ``Int4Options``).
final class Int4RTNPass: ModelPass {
    let name = "int4-rtn"
    let capabilities = ["int4", "w4a16", "block-128", "zero-point"]
    let summary = "INT4 weight-only round-to-nearest, groups of 128 (32/64 allowed) along the input dim"

    /// Quantize every planned linear of `model`.
    /// - Throws: `KilnError` for bad options, an already-quantized or non-Llama model, indivisible widths
    ///   (with `indivisible=error`) and non-finite weights, naming the tensor.
    /// - Complexity: O(parameters).
    func run(_ model: Model, context: KilnContext) throws -> Model {
        let options = try Int4Options(context.options, pass: name)
        if options.w4a8 {
            throw KilnError(.invalidInput, path: ["\(name) option \"w4a8\""], "int4-rtn is weight-only; W4A8 needs calibrated activation scales (use int4-awq)")
        }
        let plan = try Int4Plan(model: model, options: options, pass: name)
        let names = plan.groups.flatMap(\.members)
        var replaced: [String: Tensor] = [:]
        for (i, name) in names.enumerated() {
            context.progress?.update(label: self.name, done: i, total: names.count)
            replaced[name] = try Int4RTNPass.quantize(model[name]!, group: options.groupSize, scheme: options.scheme)
        }
        context.progress?.update(label: name, done: names.count, total: names.count)
        let record = QuantizationRecord(algorithm: "W4A16_AWQ", groupSize: options.groupSize, excludedModules: plan.excludedModules)
        var line = "\(name): \(names.count) linears to INT4 \(options.zeroPoint ? "asymmetric (zero point)" : "symmetric"), group \(options.groupSize)"
        if !plan.excludedModules.isEmpty { line += "; high precision: " + plan.excludedModules.joined(separator: ", ") }
        if !plan.notes.isEmpty { line += "; " + plan.notes.joined(separator: "; ") }
        return try Int4Plan.output(model, replacing: replaced, record: record, provenance: line)
    }

    /// The quantized tensor of one float weight (rows split over both cores).
    static func quantize(_ t: Tensor, group: Int, scheme: Int4Scheme) throws -> Tensor {
        let w = try Int4Quantizer.finiteFloats(t)
        let rows = t.shape[0], cols = t.shape[1]
        let m = w.withUnsafeBufferPointer { quantizeParallel($0, rows: rows, cols: cols, group: group, scheme: scheme, clip: nil) }
        return Int4Quantizer.tensor(name: t.name, m, scheme: scheme)
    }

    /// ``Int4Quantizer/quantize(_:rows:cols:group:scheme:clip:)`` over row chunks on both cores; the
    /// same bytes as the serial version.
    static func quantizeParallel(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, group: Int, scheme: Int4Scheme, clip: [Float]?) -> QuantizedMatrix {
        let chunks = min(rows, 8)
        guard chunks > 1, rows * cols >= 1 << 16 else {
            return Int4Quantizer.quantize(w, rows: rows, cols: cols, group: group, scheme: scheme, clip: clip)
        }
        let blocks = (cols + group - 1) / group
        var parts = [QuantizedMatrix?](repeating: nil, count: chunks)
        parts.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks
                let slice = UnsafeBufferPointer(rebasing: w[(r0 * cols)..<(r1 * cols)])
                let clipSlice = clip.map { Array($0[(r0 * blocks)..<(r1 * blocks)]) }
                base[c] = Int4Quantizer.quantize(slice, rows: r1 - r0, cols: cols, group: group, scheme: scheme, clip: clipSlice)
            }
        }
        var result = QuantizedMatrix(rows: rows, cols: cols, group: group, q: [], scales: [], zeros: scheme == .asymmetric ? [] : nil)
        result.q.reserveCapacity(rows * cols)
        for part in parts {
            result.q += part!.q
            result.scales += part!.scales
            if let z = part!.zeros { result.zeros! += z }
        }
        return result
    }
}
