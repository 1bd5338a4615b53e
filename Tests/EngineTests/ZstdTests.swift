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

    /// FuzzCalibCache peaked at 3 GB RSS: a frame header may claim up to 4 GiB and was allocated before
    /// decompression failed. A 13-byte frame (one RLE block of 10 bytes) claiming 3 GB is refused first.
    @Test func refusesSizeItsBlocksCannotHold() throws {
        let lying: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0xA0, 0x00, 0x5E, 0xD0, 0xB2, 0x53, 0x00, 0x00, 0x07]
        do {
            _ = try Zstd.decompress(lying, file: "cache.zst")
            Issue.record("a frame claiming 3 GB in one 10-byte block was accepted")
        } catch let error as KilnError {
            #expect(error.description.contains("13 compressed bytes can hold (at most 425984 bytes)") && error.description.contains("3000000000 bytes in the frame header"),
                    "\(error)")
        }
        var honest = lying
        honest[5...8] = [10, 0, 0, 0]
        #expect(try Zstd.decompress(honest) == Array(repeating: 7, count: 10))
    }

    @Test func syntheticModelsAreDeterministic() throws {
        let a = try SyntheticModel.llama(), b = try SyntheticModel.llama()
        #expect(a.tensorNames == b.tensorNames)
        for t in a.tensors { #expect(try t.floats() == b[t.name]!.floats()) }
        let c = try SyntheticModel.llama(seed: 1)
        #expect(try c.tensors[0].floats() != a.tensors[0].floats())
    }
}
