import ArgumentParser
import KilnCore
import KilnEngine
import KilnHost
#if canImport(Glibc)
import Glibc
#endif

/// `kiln demo`: the whole pipeline on a small deterministic model, with nothing to download.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Build a small deterministic Llama-shaped model, convert it to bf16 and inspect the result."
    )

    @Option(help: "Folder for the demo files (default: a new folder under /tmp).")
    var workdir: String?

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let dir = workdir ?? "/tmp/kiln-demo-\(getpid())"
        if !FileSystem.isDirectory(dir) {
            guard mkdir(dir, 0o755) == 0 else { throw KilnError(.io, file: dir, "cannot create the demo folder") }
        }
        let registry = try global.registry()
        let context = global.context()
        print("1. building a synthetic Llama model (2 layers, hidden 64, GQA 8/4, seed fixed)")
        let model = try SyntheticModel.llama()
        let source = dir + "/model-f32"
        try registry.writer(named: "safetensors", for: source).write(model, to: source, context: context)
        print("   wrote \(source)/ (\(humanBytes(model.byteCount)), \(grouped(model.parameterCount)) parameters)")

        print("2. kiln convert \(source) \(dir)/model-bf16 --dtype bf16 --max-shard-size 100KB")
        let input = try registry.reader(for: source).read(path: source, context: context)
        for t in input.tensors where t.dtype.isFloat { input.set(t.converted(to: .bf16)) }
        let target = dir + "/model-bf16"
        try registry.writer(named: "safetensors", for: target).write(input, to: target, context: KilnContext(options: ["max-shard-size": "100KB"]))

        print("3. kiln inspect \(target) --limit 8")
        let reader = try registry.reader(for: target)
        let result = try reader.read(path: target, context: context)
        print(ModelSummary(result).text(path: target, format: reader.name, limit: 8))
        let original = try model.tensors.first!.floats()
        let roundTrip = try result.tensors.first!.floats()
        let maxError = zip(original, roundTrip).map { abs($0 - $1) }.max() ?? 0
        print("\nbf16 round trip of \(result.tensors.first!.name): max |error| \(maxError) (bf16 keeps 8 significant bits)")
        print("done: files in \(dir)")
    }
}
