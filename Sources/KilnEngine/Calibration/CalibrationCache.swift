import Foundation
import KilnCore

/// The calibration statistics cache file.
///
/// Layout:
///   1. 8 bytes   magic "KILNCAL1"
///   2. rest      one zstd frame holding:
///        u32 LE  header length H
///        H bytes JSON {"tokens": n, "linears": [{"weight", "in", "tokens", "out": m|null, "rows": r}],
///                      "kv": [{"prefix", "k", "v"}]}
///        f32 LE  per linear, in header order: absmax[in], meanabs[in], outabsmax[m] (if m), rows[r·in]
/// Every count is checked against the payload before anything is allocated from it.
enum CalibrationCache {
    static let magic = Array("KILNCAL1".utf8)

    static func write(_ stats: CalibrationStatistics, to path: String) throws {
        var floats: [Float] = []
        var entries: [JSONValue] = []
        for name in stats.linears.keys.sorted() {
            let s = stats.linears[name]!
            let rows = (s.capturedInputs?.count ?? 0) / max(s.inputChannels, 1)
            entries.append(.object(JSONObject([
                ("weight", .string(name)), ("in", .int(Int64(s.inputChannels))), ("tokens", .int(Int64(s.tokens))),
                ("out", s.outputAbsMax.map { .int(Int64($0.count)) } ?? .null), ("rows", .int(Int64(rows))),
            ])))
            floats += s.inputAbsMax + s.inputMeanAbs + (s.outputAbsMax ?? []) + (s.capturedInputs ?? [])
        }
        let kv: [JSONValue] = stats.kvAbsMax.keys.sorted().map { k in
            .object(JSONObject([("prefix", .string(k)), ("k", .double(Double(stats.kvAbsMax[k]!.k))), ("v", .double(Double(stats.kvAbsMax[k]!.v)))]))
        }
        let header = Array(JSONValue.object(JSONObject([
            ("tokens", .int(Int64(stats.tokens))), ("linears", .array(entries)), ("kv", .array(kv)),
        ])).serialized().utf8)
        var payload = withUnsafeBytes(of: UInt32(header.count).littleEndian) { Array($0) } + header
        floats.withUnsafeBytes { payload.append(contentsOf: $0) }
        let output = try AtomicOutput(path: path, directory: false, overwrite: true)
        let sink = try FileSink(path: output.workPath)
        try sink.write(magic + (try Zstd.compress(payload)))
        try sink.finish()
        try output.commit()
    }

    static func read(_ path: String) throws -> CalibrationStatistics {
        let bytes = try FileSystem.readBytes(path)
        guard bytes.count >= 8, Array(bytes[0..<8]) == magic else {
            throw KilnError.mismatch(file: path, offset: 0, path: ["magic"], expected: "KILNCAL1", found: "other bytes")
        }
        let payload: [UInt8]
        do { payload = try Zstd.decompress(Array(bytes[8...]), file: path) } catch let error as KilnError {
            throw error.inFile(path)
        }
        func bad(_ what: String) -> KilnError { KilnError(.invalidInput, file: path, path: ["payload"], what) }
        guard payload.count >= 4 else { throw bad("expected a 4-byte header length, found \(payload.count) bytes") }
        let h = Int(payload.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self).littleEndian })
        guard h <= payload.count - 4 else { throw bad("header length \(h) exceeds the payload (\(payload.count - 4) bytes)") }
        let json = try JSONValue.parse(Array(payload[4..<(4 + h)]))
        let body = payload[(4 + h)...]
        guard body.count % 4 == 0 else { throw bad("float section of \(body.count) bytes is not a multiple of 4") }
        let floats: [Float] = body.withUnsafeBytes { raw in (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        var at = 0
        func take(_ n: Int) throws -> [Float] {
            guard n >= 0, n <= floats.count - at else { throw bad("expected \(n) more floats, found \(floats.count - at)") }
            defer { at += n }
            return Array(floats[at..<(at + n)])
        }
        var linears: [String: LinearStatistics] = [:]
        for e in json["linears"]?.arrayValue ?? [] {
            guard let name = e["weight"]?.stringValue, let c = e["in"]?.intValue, c > 0, let t = e["tokens"]?.intValue,
                  let rows = e["rows"]?.intValue, rows >= 0 else { throw bad("malformed linear entry \(e)") }
            let s = LinearStatistics(weightName: name, inputChannels: Int(c))
            s.tokens = Int(t)
            s.inputAbsMax = try take(Int(c))
            s.inputMeanAbs = try take(Int(c))
            if let m = e["out"]?.intValue { s.outputAbsMax = try take(Int(m)) }
            if rows > 0 {
                let (n, overflow) = Int(rows).multipliedReportingOverflow(by: Int(c))
                guard !overflow else { throw bad("captured rows overflow") }
                s.capturedInputs = try take(n)
            }
            linears[name] = s
        }
        guard at == floats.count else { throw bad("\(floats.count - at) floats left after the last entry") }
        var kv: [String: (k: Float, v: Float)] = [:]
        for e in json["kv"]?.arrayValue ?? [] {
            guard let p = e["prefix"]?.stringValue, let k = e["k"]?.doubleValue, let v = e["v"]?.doubleValue else { throw bad("malformed kv entry") }
            kv[p] = (Float(k), Float(v))
        }
        return CalibrationStatistics(linears: linears, kvAbsMax: kv, tokens: Int(json["tokens"]?.intValue ?? 0), fromCache: true)
    }
}
