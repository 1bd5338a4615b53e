import Foundation
import KilnCore
import KilnHost
import KilnTestKit
import Testing

/// The safetensors reader: valid files, and one hand-made bad byte string per refusal.
@Suite struct SafetensorsReaderTests {
    let plugins = TestEnvironment.plugins

    func read(_ path: String) throws -> Model {
        try plugins.reader(for: path, named: "safetensors").read(path: path, context: KilnContext())
    }

    /// Read `bytes` from a file called `name`; return the error text, or nil if it was accepted.
    func refusal(_ bytes: [UInt8], name: String = "bad.safetensors") throws -> String? {
        let dir = TemporaryDirectory()
        let path = dir.file(name)
        try SafetensorsFixture.write(bytes, to: path)
        do {
            _ = try read(path)
            return nil
        } catch let error as KilnError {
            #expect(error.kind == .invalidInput)
            return error.description.replacingOccurrences(of: dir.path + "/", with: "")
        }
    }

    @Test func readsAValidFile() throws {
        let dir = TemporaryDirectory()
        try SafetensorsFixture.write(SafetensorsFixture.valid(), to: dir.file("ok.safetensors"))
        let model = try read(dir.file("ok.safetensors"))
        #expect(model.tensorNames == ["w"])
        #expect(model["w"]!.shape == [2, 2])
        #expect(try model["w"]!.floats() == [1, 2, 3, 4])
    }

    static let f32x4 = [UInt8](repeating: 0, count: 16)

    /// (header, data, expected error text)
    static let cases: [(String, [UInt8], String)] = [
        (#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, Array(f32x4.prefix(8)),
         #"bad.safetensors: header › tensor "w" › data_offsets: expected end ≤ 8 (data bytes in the file), found 16 (truncated file)"#),
        (#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, Array(f32x4.prefix(12)),
         #"bad.safetensors: header › tensor "w" › data_offsets: expected 16 bytes (4 × F32 of shape [2, 2]), found 12 bytes [0, 12]"#),
        (#"{"w":{"dtype":"F33","shape":[2,2],"data_offsets":[0,16]}}"#, f32x4,
         #"bad.safetensors: header › tensor "w" › dtype: expected one of F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL U16 U32 U64, found "F33""#),
        (#"{"w":{"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]}}"#, f32x4,
         #"bad.safetensors: header › tensor "w" › shape › [1]: expected a non-negative integer, found -2"#),
        (#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#, f32x4,
         #"bad.safetensors: header › tensor "w" › shape: element count of [4294967296, 4294967296, 16] overflows"#),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, Array(f32x4.prefix(12)),
         #"bad.safetensors: header › tensor "b" › data_offsets: expected begin ≥ 8, found 4 (overlaps tensor "a")"#),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, f32x4,
         #"bad.safetensors: header › tensor "b" › data_offsets: expected begin = 4, found 8 (gap of 4 bytes after tensor "a")"#),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, f32x4,
         #"bad.safetensors: data: expected tensors covering all 16 data bytes, found 8 bytes after the last tensor"#),
        (#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, f32x4,
         "duplicate"),
        (#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}"#, f32x4, "bad.safetensors@0x"),
        (#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[16,0]}}"#, f32x4,
         #"bad.safetensors: header › tensor "w" › data_offsets: expected 0 ≤ begin ≤ end, found [16, 0]"#),
        (#"{"__metadata__":{"format":1},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#, f32x4,
         #"bad.safetensors: header › __metadata__ › "format": expected a string, found 1"#),
        (#"[1,2]"#, f32x4, #"bad.safetensors@0x8: header: expected a JSON object starting with '{', found byte 0x5b"#),
    ]

    @Test(arguments: 0..<cases.count)
    func refusesBadHeader(_ i: Int) throws {
        let (header, data, expected) = Self.cases[i]
        let message = try refusal(SafetensorsFixture.bytes(header: header, data: data))
        #expect(message != nil, "case \(i) was accepted")
        if let message {
            if expected.hasPrefix("bad.safetensors:") {
                #expect(message == expected)
            } else {
                #expect(message.contains(expected), "\(message)")
            }
        }
    }

    @Test func refusesTruncatedLength() throws {
        #expect(try refusal([1, 0, 0]) ==
                "bad.safetensors@0x0: header length: expected at least 8 bytes, found 3 bytes (truncated file)")
    }

    @Test func refusesHeaderLongerThanFile() throws {
        let bytes = SafetensorsFixture.bytes(header: #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#, data: [], lengthOverride: 4096)
        #expect(try refusal(bytes) ==
                "bad.safetensors@0x0: header length: expected at most 56 (bytes after the length field), found 4096 (truncated file or lying header)")
    }

    @Test func refusesHugeHeader() throws {
        let bytes = SafetensorsFixture.bytes(header: "{}", data: [], lengthOverride: 100_000_001)
        #expect(try refusal(bytes) == "bad.safetensors@0x0: header length: expected at most 100000000 bytes, found 100000001")
    }

    @Test func invalidJSONNamesTheFileOffset() throws {
        let message = try refusal(SafetensorsFixture.bytes(header: #"{"w": nope}"#, data: []))
        #expect(message?.hasPrefix("bad.safetensors@0xE: header") == true, "\(message ?? "accepted")")
    }

    @Test func readsEveryDtypeOfTheTable() throws {
        let dir = TemporaryDirectory()
        var entries: [String] = []
        var data: [UInt8] = []
        for d in DType.allCases where d.traits.safetensors != nil {
            let size = d.byteCount(elements: 3)!
            entries.append(#""t_\#(d.name)":{"dtype":"\#(d.traits.safetensors!)","shape":[3],"data_offsets":[\#(data.count),\#(data.count + size)]}"#)
            data += (0..<size).map { UInt8(truncatingIfNeeded: $0 * 7 + 1) }
        }
        try SafetensorsFixture.write(SafetensorsFixture.bytes(header: "{" + entries.joined(separator: ",") + "}", data: data), to: dir.file("all.safetensors"))
        let model = try read(dir.file("all.safetensors"))
        for d in DType.allCases where d.traits.safetensors != nil {
            #expect(model["t_\(d.name)"]?.dtype == d)
        }
    }
}
