import KilnCore
import KilnEngine
import Testing

/// The zstd codec used for Kiln's cache files: round trips and refusals of bad frames.
@Suite struct ZstdTests {
    @Test func roundTrip() throws {
        var rng = SplitMix64(seed: 7)
        let data = (0..<100_000).map { i in UInt8(truncatingIfNeeded: i % 251 == 0 ? rng.next() : UInt64(i / 97)) }
        let packed = try Zstd.compress(data)
        #expect(packed.count < data.count / 4)
        #expect(try Zstd.decompress(packed) == data)
        #expect(try Zstd.decompress(try Zstd.compress([])) == [])
    }

    @Test func refusesGarbage() throws {
        #expect(throws: KilnError.self) { try Zstd.decompress([1, 2, 3, 4, 5, 6, 7, 8], file: "cache.zst") }
        do {
            _ = try Zstd.decompress([1, 2, 3, 4, 5, 6, 7, 8], file: "cache.zst")
        } catch let error as KilnError {
            #expect(error.description == "cache.zst@0x0: zstd frame: expected a zstd frame header, found invalid bytes")
        }
    }

    @Test func refusesTruncatedFrame() throws {
        let packed = try Zstd.compress(Array(repeating: 42, count: 10_000) + (0..<1000).map { UInt8($0 % 256) })
        let cut = Array(packed.dropLast(5))
        #expect(throws: KilnError.self) { try Zstd.decompress(cut, file: "cache.zst") }
    }

    @Test func syntheticModelsAreDeterministic() throws {
        let a = try SyntheticModel.llama(), b = try SyntheticModel.llama()
        #expect(a.tensorNames == b.tensorNames)
        for t in a.tensors { #expect(try t.floats() == b[t.name]!.floats()) }
        let c = try SyntheticModel.llama(seed: 1)
        #expect(try c.tensors[0].floats() != a.tensors[0].floats())
    }
}
