import COpenBLAS
import KilnCore

/// A ``LinearObserver`` that fills ``LinearStatistics`` for a calibration request:
/// per-channel absmax and mean |x| of every linear input, optionally output absmax, XᵀX and
/// a deterministic sample of input rows, plus K/V absmax of every attention layer.
///
/// Linears reading the same activation (q/k/v, gate/up) share one XᵀX and one row sample
/// (computed once per forward for the first of them).
final class StatisticsCollector {
    let request: CalibrationRequest
    let wanted: Set<String>?
    /// Total rows the run will see (for evenly spaced row capture).
    let expectedRows: Int
    private(set) var linears: [String: LinearStatistics] = [:]
    private var sums: [String: [Double]] = [:]
    private(set) var kv: [String: (k: Float, v: Float)] = [:]
    /// Rows seen so far per linear (drives the capture positions).
    private var seenRows: [String: Int] = [:]
    /// The previous event's input (graph value name, rows, width) and weight: consecutive linears
    /// reading the same graph value (q/k/v, gate/up) see the same activation. Names, not buffer
    /// addresses: the executor recycles buffers within a forward.
    private var lastInput: (value: String, rows: Int, width: Int, weight: String)?

    init(request: CalibrationRequest, expectedRows: Int) {
        self.request = request
        self.wanted = request.only.map(Set.init)
        self.expectedRows = max(1, expectedRows)
    }

    /// Forget the input-sharing link (call before every forward: buffers are reused).
    func startForward() { lastInput = nil }

    func observe(_ event: LinearEvent) {
        observeKV(event)
        if let wanted, !wanted.contains(event.weight) { return }
        let c = event.inFeatures
        let stats = linears[event.weight] ?? LinearStatistics(weightName: event.weight, inputChannels: c)
        linears[event.weight] = stats
        guard let x = event.input.baseAddress else { return }
        var sum = sums[event.weight] ?? [Double](repeating: 0, count: c)
        var tokens = 0
        stats.inputAbsMax.withUnsafeMutableBufferPointer { amax in
            sum.withUnsafeMutableBufferPointer { s in
                for r in 0..<event.rows where !event.isPadding(row: r) {
                    let row = x + r * c
                    for j in 0..<c {
                        let a = abs(row[j])
                        if a > amax[j] { amax[j] = a }
                        s[j] += Double(a)
                    }
                    tokens += 1
                }
            }
        }
        stats.tokens += tokens
        sums[event.weight] = sum
        stats.inputMeanAbs = sum.map { Float($0 / Double(max(stats.tokens, 1))) }
        if request.outputStatistics { observeOutput(event, stats) }
        if let last = lastInput, last.value == event.inputName, last.rows == event.rows, last.width == c,
           last.weight != event.weight, let first = linears[last.weight] {
            // Same activation as the linear just before: share its XᵀX and rows.
            stats.hessian = first.hessian
            stats.capturedInputs = first.capturedInputs
        } else {
            lastInput = (event.inputName, event.rows, c, event.weight)
            if request.hessian { accumulateHessian(event, stats) }
            if request.captureRows > 0 { capture(event, stats) }
        }
    }

    private func observeOutput(_ event: LinearEvent, _ stats: LinearStatistics) {
        let n = event.outFeatures
        var amax = stats.outputAbsMax ?? [Float](repeating: 0, count: n)
        guard let y = event.output.baseAddress else { return }
        for r in 0..<event.rows where !event.isPadding(row: r) {
            let row = y + r * n
            for j in 0..<n { amax[j] = max(amax[j], abs(row[j])) }
        }
        stats.outputAbsMax = amax
    }

    /// XᵀX of this batch in f32 (ssyrk over ≤ one forward's rows), added to the f64 total.
    private func accumulateHessian(_ event: LinearEvent, _ stats: LinearStatistics) {
        let c = event.inFeatures
        var rows: [Float] = []
        rows.reserveCapacity(event.rows * c)
        for r in 0..<event.rows where !event.isPadding(row: r) {
            rows.append(contentsOf: UnsafeBufferPointer(start: event.input.baseAddress! + r * c, count: c))
        }
        let n = rows.count / c
        guard n > 0 else { return }
        var partial = [Float](repeating: 0, count: c * c)
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(c), Int32(n), 1, rows, Int32(c), 0, &partial, Int32(c))
        var h = stats.hessian ?? [Double](repeating: 0, count: c * c)
        h.withUnsafeMutableBufferPointer { h in
            for i in 0..<c {
                for j in i..<c {
                    let v = Double(partial[i * c + j])
                    h[i * c + j] += v
                    if j != i { h[j * c + i] += v }
                }
            }
        }
        stats.hessian = h
    }

    /// Keep about `captureRows` rows spread evenly over the whole run (deterministic).
    private func capture(_ event: LinearEvent, _ stats: LinearStatistics) {
        let c = event.inFeatures, target = request.captureRows
        var kept = stats.capturedInputs ?? []
        var seen = seenRows[event.weight] ?? 0
        for r in 0..<event.rows where !event.isPadding(row: r) {
            if (seen + 1) * target / expectedRows != seen * target / expectedRows, kept.count / c < target {
                kept.append(contentsOf: UnsafeBufferPointer(start: event.input.baseAddress! + r * c, count: c))
            }
            seen += 1
        }
        seenRows[event.weight] = seen
        stats.capturedInputs = kept
    }

    /// K and V amax from the k_proj / v_proj outputs (before RoPE for K).
    private func observeKV(_ event: LinearEvent) {
        guard request.kvCache else { return }
        let isK = event.weight.hasSuffix(".k_proj.weight"), isV = event.weight.hasSuffix(".v_proj.weight")
        guard isK || isV, let y = event.output.baseAddress else { return }
        let prefix = String(event.weight.dropLast(".k_proj.weight".count))
        var amax: Float = 0
        for r in 0..<event.rows where !event.isPadding(row: r) {
            let row = y + r * event.outFeatures
            for j in 0..<event.outFeatures { amax = max(amax, abs(row[j])) }
        }
        var entry = kv[prefix] ?? (0, 0)
        if isK { entry.k = max(entry.k, amax) } else { entry.v = max(entry.v, amax) }
        kv[prefix] = entry
    }
}
