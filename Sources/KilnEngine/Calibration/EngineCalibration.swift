import Foundation
import KilnCore

/// The engine's ``CalibrationService``: runs the floating-point model over calibration text
/// with observers on every linear, and caches the statistics (zstd) so a second run with the
/// same model, data and options skips the forward passes.
///
/// Requests with `hessian` are not cached (XᵀX of every linear can exceed a gigabyte).
public final class EngineCalibration: CalibrationService {
    /// Folder of the statistics cache (nil = no cache).
    public let cacheDirectory: String?
    /// Tokenizer to use; nil = load it from the model's folder.
    public let tokenizerPath: String?
    /// Sequences per forward pass.
    public var batchSize = 4
    /// Filled by the last call: where the statistics came from and how long it took.
    public internal(set) var lastReport: (cacheFile: String?, fromCache: Bool, seconds: Double)?

    /// - Parameters:
    ///   - cacheDirectory: default `$KILN_CACHE_DIR/calibration` or `~/.cache/kiln/calibration`.
    ///   - tokenizerPath: folder or tokenizer.json; default the model's source folder.
    public init(cacheDirectory: String? = EngineCalibration.defaultCacheDirectory(), tokenizerPath: String? = nil) {
        self.cacheDirectory = cacheDirectory
        self.tokenizerPath = tokenizerPath
    }

    /// `$KILN_CACHE_DIR/calibration`, else `$HOME/.cache/kiln/calibration`.
    public static func defaultCacheDirectory() -> String? {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["KILN_CACHE_DIR"], !dir.isEmpty { return dir + "/calibration" }
        guard let home = env["HOME"], !home.isEmpty else { return nil }
        return home + "/.cache/kiln/calibration"
    }

    public func calibrate(_ model: Model, request: CalibrationRequest, progress: ProgressSink?) throws -> CalibrationStatistics {
        let started = Date()
        let tokenizer = try Tokenizer.load(path: tokenizerLocation(for: model))
        let data = try CalibrationData.load(path: request.textPath, tokenizer: tokenizer,
                                            samples: request.samples, sequenceLength: request.sequenceLength)
        let cacheFile = try cachePath(model: model, request: request, data: data)
        if let cacheFile, FileSystem.exists(cacheFile) {
            let stats = try CalibrationCache.read(cacheFile)
            lastReport = (cacheFile, true, Date().timeIntervalSince(started))
            return stats
        }
        let executor = try Executor(model: model)
        let collector = StatisticsCollector(request: request, expectedRows: data.tokenCount)
        executor.linearObserver = { collector.observe($0) }
        var done = 0
        for first in stride(from: 0, to: data.sequences.count, by: batchSize) {
            let batch = Array(data.sequences[first..<min(first + batchSize, data.sequences.count)])
            collector.startForward()
            // Every position of every layer must be observed, so no `lastOnly` shortcut.
            _ = try executor.forward(batch, cache: nil, lastOnly: false)
            done += batch.count
            progress?.update(label: "calibrating", done: done, total: data.sequences.count)
        }
        let stats = CalibrationStatistics(linears: collector.linears, kvAbsMax: collector.kv, tokens: data.tokenCount)
        if let cacheFile { try CalibrationCache.write(stats, to: cacheFile) }
        lastReport = (cacheFile, false, Date().timeIntervalSince(started))
        return stats
    }

    func tokenizerLocation(for model: Model) throws -> String {
        if let tokenizerPath { return tokenizerPath }
        if let attached = model.attachments["tokenizer.json"] ?? model.attachments["tokenizer.model"] { return attached }
        if let source = model.sourcePath {
            return FileSystem.isDirectory(source) ? source : AtomicOutput.parent(of: source)
        }
        throw KilnError(.invalidInput, "no tokenizer: the model has no folder with tokenizer.json; pass --tokenizer")
    }

    /// `<cache>/<model hash>-<request hash>.kcal`, or nil when not cached.
    func cachePath(model: Model, request: CalibrationRequest, data: CalibrationData) throws -> String? {
        guard let dir = cacheDirectory, !request.hessian else { return nil }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var h = ContentHash()
        for t in model.tensors {
            h.add(t.name)
            h.add(t.dtype.name)
            h.add(t.shape.description)
            try t.streamBytes { h.add($0) }
        }
        var r = ContentHash()
        for s in data.sequences { r.add(s.map { UInt32(truncatingIfNeeded: $0) }) }
        r.add("\(request.captureRows)|\(request.outputStatistics)|\(request.kvCache)|\(request.only ?? [])|v1")
        return dir + "/" + h.hex + "-" + r.hex + ".kcal"
    }
}

/// A fast, deterministic 128-bit content hash (two multiply-rotate lanes over 8-byte words).
/// Not cryptographic: it keys cache files, it does not authenticate them.
struct ContentHash {
    private var a: UInt64 = 0x9E37_79B9_7F4A_7C15
    private var b: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private var length: UInt64 = 0

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var i = 0
        let n = bytes.count
        while i + 8 <= n {
            let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            a = (a ^ w) &* 0xFF51_AFD7_ED55_8CCD
            a = (a << 31) | (a >> 33)
            b = (b &+ w) &* 0xC4CE_B9FE_1A85_EC53
            b = (b << 29) | (b >> 35)
            i += 8
        }
        while i < n {
            a = (a ^ UInt64(bytes[i])) &* 0x100_0000_01B3
            i += 1
        }
        length &+= UInt64(n)
    }

    mutating func add(_ text: String) { add(Array(text.utf8) + [0]) }
    mutating func add<T>(_ values: [T]) { values.withUnsafeBytes { add($0) } }

    var hex: String {
        func fmix(_ x: UInt64) -> UInt64 {
            var k = x ^ length
            k ^= k >> 33; k = k &* 0xFF51_AFD7_ED55_8CCD; k ^= k >> 33; k = k &* 0xC4CE_B9FE_1A85_EC53; k ^= k >> 33
            return k
        }
        return [fmix(a), fmix(b)].map { v in
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }.joined()
    }
}
