// kiln-bench: the engine-side measurements of `make bench` (Tools/bench/run.sh), one JSON line each on stdout.
//
//   kiln-bench gemm [--shapes MxKxN,...] [--threads T] [--repeat R]
//       GFLOP/s of the executor's linear path (Executor.linear: tiles of single-threaded sgemm over T
//       threads) against one direct cblas_sgemm with OpenBLAS set to T threads, on the same operands
//       (x [M×K] · wᵀ, w [N×K] as a Hugging Face weight); best of R after a warm-up, wall and process CPU
//       seconds (the steadier figure on a busy machine). Also the largest
//       difference between the two results relative to the largest magnitude (they must agree).
//   kiln-bench prefill MODEL --text FILE [--tokens N] [--threads T] [--repeat R]
//       Tokens/s of one forward over the first N-1 tokens of FILE after BOS (batch 1, f32): with every
//       position's logits (as transformers' model(input_ids)) and with the last position's only (the
//       KV-cache prefill of generation); best of R after a warm-up that also upcasts the weights.
//       Adds the executor's wall seconds per op of one full-logits forward.
//
// Not part of the `kiln` CLI: a separate executable so the user-facing commands stay clean.
import COpenBLAS
import Foundation
import KilnCore
import KilnEngine
import KilnHost

/// Wall and process-CPU seconds of the fastest of `times` runs of `body` (each minimum on its own), after one
/// untimed warm-up. CPU seconds (all threads) are the steadier figure on a busy shared machine.
func best(repeat times: Int, _ body: () throws -> Void) rethrows -> (wall: Double, cpu: Double) {
    try body()
    var wall = Double.infinity, cpu = Double.infinity
    for _ in 0..<times {
        let start = (DispatchTime.now().uptimeNanoseconds, cpuNanoseconds())
        try body()
        wall = min(wall, Double(DispatchTime.now().uptimeNanoseconds - start.0) / 1e9)
        cpu = min(cpu, Double(cpuNanoseconds() - start.1) / 1e9)
    }
    return (wall, cpu)
}

/// CPU time of this process (all threads), in nanoseconds.
func cpuNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Deterministic values in [-1, 1) (a 64-bit LCG), so every run multiplies the same matrices.
func pseudoRandom(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 6364136223846793005 &+ 1442695040888963407
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
    }
}

func emit(_ fields: [(String, JSONValue)]) {
    print(JSONValue.object(JSONObject(fields)).serialized(pretty: false))
}

/// Flag values after the positional arguments: `--name value`.
struct Flags {
    var positional: [String] = []
    var values: [String: String] = [:]

    init(_ args: ArraySlice<String>) throws {
        var i = args.startIndex
        while i < args.endIndex {
            let a = args[i]
            if a.hasPrefix("--") {
                guard i + 1 < args.endIndex else { throw KilnError(.invalidInput, path: [a], "expected a value after it") }
                values[String(a.dropFirst(2))] = args[i + 1]
                i += 2
            } else {
                positional.append(a)
                i += 1
            }
        }
    }

    func int(_ name: String, default value: Int) throws -> Int {
        guard let text = values[name] else { return value }
        guard let v = Int(text), v >= 1 else { throw KilnError(.invalidInput, path: ["--" + name], "expected a positive integer, found \"\(text)\"") }
        return v
    }
}

func gemm(_ flags: Flags) throws {
    let threads = try flags.int("threads", default: 2)
    let repeats = try flags.int("repeat", default: 5)
    let shapes = try (flags.values["shapes"] ?? "512x576x1536,512x576x576,512x576x49152,512x1536x576").split(separator: ",").map { s in
        let d = s.split(separator: "x").compactMap { Int($0) }
        guard d.count == 3, d.allSatisfy({ $0 >= 1 }) else {
            throw KilnError(.invalidInput, path: ["--shapes"], "expected MxKxN with positive integers, found \"\(s)\"")
        }
        return (m: d[0], k: d[1], n: d[2])
    }
    Executor.threads = threads
    for (m, k, n) in shapes {
        let x = pseudoRandom(m * k, seed: 1), w = pseudoRandom(n * k, seed: 2)
        var viaKiln = [Float](repeating: 0, count: m * n), direct = viaKiln
        openblas_set_num_threads(1)  // the executor's setting: its own workers call single-threaded sgemm
        let kiln = best(repeat: repeats) {
            Executor.linear(x: x, rows: m, k: k, weight: w, n: n, output: &viaKiln)
        }
        openblas_set_num_threads(Int32(threads))
        let blas = best(repeat: repeats) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(n), blasint(k), 1, x, blasint(k),
                        w, blasint(k), 0, &direct, blasint(n))
        }
        openblas_set_num_threads(1)
        let scale = direct.reduce(Float(0)) { max($0, abs($1)) }
        let diff = zip(viaKiln, direct).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        let flops = 2 * Double(m) * Double(k) * Double(n)
        emit([("section", .string("gemm")), ("shape", .string("\(m)x\(k)x\(n)")), ("threads", .int(Int64(threads))),
              ("kiln_s", .double(kiln.wall)), ("blas_s", .double(blas.wall)), ("kiln_cpu_s", .double(kiln.cpu)),
              ("blas_cpu_s", .double(blas.cpu)),
              ("kiln_gflops", .double(flops / kiln.wall / 1e9)), ("blas_gflops", .double(flops / blas.wall / 1e9)),
              ("ratio", .double(blas.wall / kiln.wall)), ("cpu_ratio", .double(blas.cpu / kiln.cpu)),
              ("max_rel_diff", .double(Double(scale > 0 ? diff / scale : diff)))])
    }
}

func prefill(_ flags: Flags) throws {
    guard flags.positional.count == 1, let textPath = flags.values["text"] else {
        throw KilnError(.invalidInput, "usage: kiln-bench prefill MODEL --text FILE [--tokens N] [--threads T] [--repeat R]")
    }
    let path = flags.positional[0]
    let tokens = try flags.int("tokens", default: 512)
    let threads = try flags.int("threads", default: 2)
    let repeats = try flags.int("repeat", default: 3)
    let registry = try PluginRegistry.discover(environment: ProcessInfo.processInfo.environment["KILN_PLUGIN_PATH"])
    let context = KilnContext(options: [:], progress: nil)
    let model = try registry.reader(for: path, named: nil).read(path: path, context: context)
    let tokenizer = try Tokenizer.load(path: path)
    let text = try Perplexity.loadText(textPath)
    let ids = [Int(tokenizer.bosTokenId ?? 1)] + tokenizer.encode(text, addSpecialTokens: false).prefix(tokens - 1).map(Int.init)
    guard ids.count == tokens else {
        throw KilnError(.invalidInput, file: textPath, "expected at least \(tokens - 1) tokens, found \(ids.count - 1)")
    }
    Executor.threads = threads
    let executor = try Executor(model: model)
    let full = try best(repeat: repeats) { _ = try executor.logits([ids]) }
    let last = try best(repeat: repeats) { _ = try executor.forward([ids], cache: KVCache(batch: 1, capacity: tokens), lastOnly: true) }
    executor.profile = ExecutorProfile()
    _ = try executor.logits([ids])
    let profile = executor.profile!
    let ops = profile.seconds.sorted { $0.value > $1.value }.map { ($0.key, JSONValue.double($0.value)) }
    let cpuOps = profile.cpuSeconds.sorted { $0.value > $1.value }.map { ($0.key, JSONValue.double($0.value)) }
    emit([("section", .string("prefill")), ("engine", .string("kiln")), ("tokens", .int(Int64(tokens))), ("threads", .int(Int64(threads))),
          ("full_s", .double(full.wall)), ("last_s", .double(last.wall)), ("full_cpu_s", .double(full.cpu)), ("last_cpu_s", .double(last.cpu)),
          ("full_tokens_per_s", .double(Double(tokens) / full.wall)), ("last_tokens_per_s", .double(Double(tokens) / last.wall)),
          ("linear_gflops", .double(profile.linearGFLOPS)), ("linear_gflop_per_cpu_s", .double(profile.linearGFLOPPerCPUSecond)),
          ("op_seconds", .object(JSONObject(ops))), ("op_cpu_seconds", .object(JSONObject(cpuOps)))])
}

let arguments = CommandLine.arguments
do {
    guard arguments.count >= 2 else { throw KilnError(.invalidInput, "usage: kiln-bench gemm|prefill ...") }
    let flags = try Flags(arguments.dropFirst(2))
    switch arguments[1] {
    case "gemm": try gemm(flags)
    case "prefill": try prefill(flags)
    default: throw KilnError(.invalidInput, path: [arguments[1]], "expected gemm or prefill")
    }
} catch {
    FileHandle.standardError.write(Data("kiln-bench: \(error)\n".utf8))
    exit(1)
}
