import Foundation
import KilnCore
import KilnEngine
import KilnHost
import KilnTestKit
import Testing

/// The safetensors writer and sharded checkpoints: round trips, index.json, refusals, atomic output.
@Suite struct SafetensorsWriterTests {
    let plugins = TestEnvironment.plugins

    func write(_ model: Model, _ path: String, _ options: [String: String] = [:]) throws {
        try plugins.writer(named: "safetensors", for: path).write(model, to: path, context: KilnContext(options: options))
    }

    func read(_ path: String) throws -> Model {
        try plugins.reader(for: path).read(path: path, context: KilnContext())
    }

    func bytes(_ t: Tensor) throws -> [UInt8] { try t.withBytes { Array($0) } }

    @Test func singleFileRoundTripIsExact() throws {
        let dir = TemporaryDirectory()
        let model = try SyntheticModel.llama()
        model.metadata["note"] = "kept"
        try write(model, dir.file("m.safetensors"))
        let back = try read(dir.file("m.safetensors"))
        #expect(back.tensorNames == model.tensorNames)
        #expect(back.metadata == model.metadata)
        for t in model.tensors {
            #expect(try bytes(back[t.name]!) == bytes(t), "\(t.name)")
            #expect(back[t.name]!.shape == t.shape)
        }
    }

    @Test func sameInputSameBytes() throws {
        let dir = TemporaryDirectory()
        try write(try SyntheticModel.llama(), dir.file("a.safetensors"))
        try write(try SyntheticModel.llama(), dir.file("b.safetensors"))
        #expect(try FileSystem.readBytes(dir.file("a.safetensors")) == FileSystem.readBytes(dir.file("b.safetensors")))
    }

    @Test func shardedRoundTripWritesAnIndex() throws {
        let dir = TemporaryDirectory()
        let model = try SyntheticModel.llama()
        try write(model, dir.file("sharded"), ["max-shard-size": "100KB"])
        let files = FileSystem.list(dir.file("sharded"))!
        #expect(files.contains("model.safetensors.index.json"))
        #expect(files.contains("config.json"))
        let shards = files.filter { $0.hasSuffix(".safetensors") }
        #expect(shards == (1...5).map { "model-0000\($0)-of-00005.safetensors" })
        let index = try JSONValue.parse(FileSystem.readBytes(dir.file("sharded/model.safetensors.index.json")))
        #expect(index["metadata"]?["total_size"]?.intValue == Int64(model.byteCount))
        #expect(index["weight_map"]?.objectValue?.keys == model.tensorNames.sorted())
        let back = try read(dir.file("sharded"))
        #expect(back.tensorNames == model.tensorNames)
        for t in model.tensors { #expect(try bytes(back[t.name]!) == bytes(t)) }
        #expect(back.config == model.config)
    }

    func shardedFolder(_ dir: TemporaryDirectory) throws -> String {
        try write(try SyntheticModel.llama(), dir.file("ck"), ["max-shard-size": "100KB"])
        return dir.file("ck")
    }

    func setIndex(_ folder: String, _ change: (inout JSONObject) -> Void) throws {
        let path = folder + "/model.safetensors.index.json"
        var root = try JSONValue.parse(FileSystem.readBytes(path)).objectValue!
        var map = root["weight_map"]!.objectValue!
        change(&map)
        root["weight_map"] = .object(map)
        try Data(JSONValue.object(root).serialized().utf8).write(to: URL(fileURLWithPath: path))
    }

    func readError(_ path: String) -> String? {
        do { _ = try read(path); return nil } catch { return "\(error)" }
    }

    @Test func indexNamingAMissingShardIsRefused() throws {
        let dir = TemporaryDirectory()
        let folder = try shardedFolder(dir)
        try setIndex(folder) { $0["model.norm.weight"] = "model-00009-of-00009.safetensors" }
        #expect(readError(folder) == #"\#(folder)/model.safetensors.index.json: weight_map › "model.norm.weight": shard "model-00009-of-00009.safetensors" does not exist in \#(folder)"#)
    }

    @Test func indexNamingATensorAbsentFromItsShardIsRefused() throws {
        let dir = TemporaryDirectory()
        let folder = try shardedFolder(dir)
        try setIndex(folder) { $0["model.ghost.weight"] = "model-00002-of-00005.safetensors" }
        #expect(readError(folder) == #"\#(folder)/model.safetensors.index.json: weight_map › "model.ghost.weight": tensor is not in its shard "model-00002-of-00005.safetensors""#)
    }

    @Test func shardPathsEscapingTheFolderAreRefused() throws {
        let dir = TemporaryDirectory()
        let folder = try shardedFolder(dir)
        try setIndex(folder) { $0["model.norm.weight"] = "../model-00001-of-00003.safetensors" }
        #expect(readError(folder)?.contains(#"expected a file name inside the checkpoint folder, found "../model-00001-of-00003.safetensors""#) == true)
        try setIndex(folder) { $0["model.norm.weight"] = "/etc/passwd" }
        #expect(readError(folder)?.contains(#"found "/etc/passwd""#) == true)
        try FileManager.default.createSymbolicLink(atPath: folder + "/link.safetensors", withDestinationPath: dir.path + "/outside.safetensors")
        try SafetensorsFixture.write(SafetensorsFixture.valid(), to: dir.path + "/outside.safetensors")
        try setIndex(folder) {
            $0["model.norm.weight"] = "model-00005-of-00005.safetensors"
            $0["w"] = "link.safetensors"
        }
        #expect(readError(folder)?.contains("leads outside the checkpoint folder") == true)
    }

    @Test func packedDtypesAreRefusedBeforeWriting() throws {
        let dir = TemporaryDirectory()
        let model = try Model(tensors: [Tensor(name: "q", dtype: .i4, shape: [4], values: [UInt8(0x21), 0x43])])
        #expect(throws: KilnError.self) { try write(model, dir.file("q.safetensors")) }
        #expect(dir.contents.isEmpty)
    }

    @Test func failedWriteLeavesNothingBehind() throws {
        let dir = TemporaryDirectory()
        let failing = Tensor(name: "bad", dtype: .f32, shape: [4], storage: .deferred {
            throw KilnError(.invalidInput, "source vanished")
        })
        let model = try SyntheticModel.llama()
        try model.add(failing)
        #expect(throws: KilnError.self) { try write(model, dir.file("out.safetensors")) }
        #expect(throws: KilnError.self) { try write(model, dir.file("folder"), ["max-shard-size": "50KB"]) }
        #expect(dir.contents.isEmpty, "\(dir.contents)")
    }

    @Test func castToBF16StreamsChunkByChunk() throws {
        let dir = TemporaryDirectory()
        let model = try SyntheticModel.llama()
        for t in model.tensors { model.set(t.converted(to: .bf16)) }
        try write(model, dir.file("bf16.safetensors"))
        let back = try read(dir.file("bf16.safetensors"))
        let source = try SyntheticModel.llama()
        for t in source.tensors {
            let expected = try t.floats().map { FloatBits.bf16(fromF32: $0) }
            let found = try back[t.name]!.withBytes { Array($0.bindMemory(to: UInt16.self)) }
            #expect(found == expected, "\(t.name)")
        }
    }
}
