import Foundation
import KilnCore
import KilnHost
import KilnTestKit
import Testing

// Tools/plugin-template (the npz reader) built as an outside package and loaded by kiln, the
// way a third party would: through $KILN_PLUGIN_PATH, --plugin, and in this process.

/// Builds Tools/plugin-template with `swift build --package-path`, once per test process and
/// scratch folder; builds run one at a time (about a minute each on two cores when cold).
enum TemplateBuild {
    /// The ordinary build, in `<repo>/.build-template`.
    static func plugin() throws -> String { try library(scratch: ".build-template", flags: []) }

    /// A build whose C and Swift code see `KILN_ABI_VERSION=99`, in `<repo>/.build-template-abi99`.
    static func abi99Plugin() throws -> String {
        try library(scratch: ".build-template-abi99",
                    flags: ["-Xcc", "-DKILN_ABI_VERSION=99", "-Xswiftc", "-Xcc", "-Xswiftc", "-DKILN_ABI_VERSION=99"])
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var built: [String: Result<String, any Error>] = [:]

    /// The real path of `libKilnNPZ.so` built in `scratch` with `flags`.
    static func library(scratch: String, flags: [String]) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let done = built[scratch] { return try done.get() }
        let result = Result<String, any Error> {
            let root = TestEnvironment.repoRoot
            let arguments = ["build", "--package-path", root + "/Tools/plugin-template", "--scratch-path", root + "/" + scratch] + flags
            var run = try runProcess(swiftExecutable, arguments)
            if run.status != 0 || run.signalled {
                // Once more: a compiler that died of a signal (a source file rewritten under it by a
                // concurrent edit) succeeds the second time; a real compile error fails again.
                run = try runProcess(swiftExecutable, arguments)
            }
            guard run.status == 0, !run.signalled else {
                throw Failure(description: "swift build of Tools/plugin-template failed (\(run.status)):\n\(run.stdout.suffix(3000))\n\(run.stderr.suffix(3000))")
            }
            let so = root + "/" + scratch + "/debug/libKilnNPZ.so"
            guard let real = FileSystem.realPath(so) else { throw Failure(description: "\(so) was not built") }
            return real
        }
        built[scratch] = result
        return try result.get()
    }

    /// `swift` from $PATH (the toolchain running these tests).
    static var swiftExecutable: String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/swift") {
            return "\(dir)/swift"
        }
        return "/usr/bin/swift"
    }

    /// The npz reader of the ordinary build, loaded into this process.
    static func reader() throws -> any FormatReader {
        let plugin = try PluginLoader.load(path: try TemplateBuild.plugin())
        return try #require(plugin.providers.compactMap { $0 as? any FormatReader }.first)
    }
}

/// Kiln dtype names by numpy name, for comparing python's view with `kiln inspect`.
private let kilnNames = """
{'float64': 'f64', 'float32': 'f32', 'float16': 'f16', 'int64': 'i64', 'int32': 'i32', 'int16': 'i16',
 'int8': 'i8', 'uint64': 'u64', 'uint32': 'u32', 'uint16': 'u16', 'uint8': 'u8', 'bool': 'bool'}
"""

/// numpy's dtype strings the reader must accept with this KilnCore (the unsigned wide types
/// only when DType has them).
private let npyDtypes: [(descr: String, dtype: DType)] = [
    ("<f8", "float64"), ("<f4", "float32"), ("<f2", "float16"), ("<i8", "int64"), ("<i4", "int32"), ("<i2", "int16"),
    ("|i1", "int8"), ("<u8", "uint64"), ("<u4", "uint32"), ("<u2", "uint16"), ("|u1", "uint8"), ("|b1", "bool"),
].compactMap { descr, numpy in DType.allCases.first { $0.traits.numpy == numpy }.map { (descr, $0) } }

/// Writes stored.npz (np.savez), compressed.npz (np.savez_compressed) and versions.npz (.npy 1.0,
/// 2.0, 3.0, stored and deflated) into argv[1], and expected.json: file → [[name, dtype, shape]].
/// argv[2] == "1": add uint16/32/64 arrays.
private let makeArchives = """
import io, json, sys, zipfile
import numpy as np
out = sys.argv[1]
names = \(kilnNames)
rng = np.random.default_rng(7)
f32 = rng.standard_normal((3, 4)).astype('<f4')
f32[0, :3] = [np.nan, np.inf, -0.0]
arrays = {
    'f32': f32, 'f64': rng.standard_normal(5), 'f16': rng.standard_normal((2, 3, 2)).astype('<f2'),
    'i8': rng.integers(-128, 128, 7, dtype=np.int8), 'u8': rng.integers(0, 256, (2, 5), dtype=np.uint8),
    'i16': rng.integers(-2**15, 2**15, 3, dtype=np.int16), 'i32': rng.integers(-2**31, 2**31, (2, 2), dtype=np.int32),
    'i64': rng.integers(-2**62, 2**62, 4, dtype=np.int64), 'bool': rng.random(6) > 0.5,
    'scalar': np.float32(1.5), 'empty': np.zeros((0, 4), np.float32),
    'block/w': rng.standard_normal((300, 257)).astype('<f4'),
}
if sys.argv[2] == '1':
    for t in ['uint16', 'uint32', 'uint64']:
        arrays[t] = rng.integers(0, np.iinfo(t).max, 5, dtype=t, endpoint=True)
np.savez(out + '/stored.npz', **arrays)
np.savez_compressed(out + '/compressed.npz', **arrays)
with zipfile.ZipFile(out + '/versions.npz', 'w') as z:
    for i, version in enumerate([(1, 0), (2, 0), (3, 0)]):
        for method, tag in [(zipfile.ZIP_STORED, 's'), (zipfile.ZIP_DEFLATED, 'd')]:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arrays['block/w'][i:i + 5] + i, version=version)
            z.writestr(zipfile.ZipInfo(f'v{version[0]}{tag}.npy'), buf.getvalue(), compress_type=method)
expected = {}
for f in ['stored', 'compressed', 'versions']:
    with np.load(out + '/' + f + '.npz') as d:
        expected[f] = [[k, names[d[k].dtype.name], list(d[k].shape)] for k in d.files]
json.dump(expected, open(out + '/expected.json', 'w'))
"""

/// argv: npz, safetensors. Exit 0 when every array has the same dtype, shape and bytes in both.
private let compareArchives = """
import sys
import numpy as np
from safetensors.numpy import load_file
out = load_file(sys.argv[2])
bad = []
with np.load(sys.argv[1]) as src:
    for k in src.files:
        a = src[k]
        b = out.get(k)
        if b is None or a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            bad.append(k)
    extra = sorted(set(out) - set(src.files))
print('checked', len(out), 'mismatched', bad, 'extra', extra)
sys.exit(1 if bad or extra else 0)
"""

@Suite("Plugin template: built outside, loaded by kiln", .serialized)
struct TemplatePluginTests {
    @Test("kiln plugins lists the npz reader with its path, from a file or a folder in $KILN_PLUGIN_PATH")
    func listed() throws {
        let so = try TemplateBuild.plugin()
        for entry in [so, AtomicOutput.parent(of: so)] {
            let run = try runKiln(["plugins", "--json"], environment: ["KILN_PLUGIN_PATH": entry])
            #expect(run.status == 0, "\(run.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            let providers = try #require(json["providers"] as? [[String: Any]])
            let npz = try #require(providers.first { $0["name"] as? String == "npz" })
            #expect(npz["kind"] as? String == "reader")
            #expect(npz["plugin"] as? String == "npz")
            #expect(npz["path"] as? String == so)
            #expect((npz["capabilities"] as? [String])?.contains("deflate") == true)
            let refused = (json["refused"] as? [[String: Any]]) ?? []
            #expect(!refused.contains { $0["path"] as? String == so }, "\(refused)")
        }
    }

    @Test("np.savez and np.savez_compressed archives: inspect shows numpy's names, dtypes and shapes; convert keeps the bytes")
    func numpyArchives() throws {
        let python = try TestEnvironment.python
        let so = try TemplateBuild.plugin()
        let dir = TemporaryDirectory("kiln-npz")
        let unsigned = npyDtypes.contains { $0.descr == "<u2" }
        let made = try runProcess(python, ["-c", makeArchives, dir.path, unsigned ? "1" : "0"])
        try #require(made.status == 0, "\(made.stderr)")
        let expectedData = try Data(contentsOf: URL(fileURLWithPath: dir.file("expected.json")))
        let expected = try #require(try JSONSerialization.jsonObject(with: expectedData) as? [String: [[Any]]])
        for name in ["stored", "compressed", "versions"] {
            let npz = dir.file(name + ".npz")
            let inspect = try runKiln(["inspect", npz, "--json"], environment: ["KILN_PLUGIN_PATH": so])
            try #require(inspect.status == 0, "\(name): \(inspect.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            #expect(json["format"] as? String == "npz")
            let tensors = try #require(json["tensors"] as? [[String: Any]])
            let found = tensors.map { "\($0["name"]!) \($0["dtype"]!) \($0["shape"] as? [Int] ?? [-1])" }
            let rows = try #require(expected[name])
            let wanted = rows.map { "\($0[0]) \($0[1]) \($0[2] as? [Int] ?? [-2])" }
            #expect(found == wanted, "\(name)")

            let out = dir.file(name + ".safetensors")
            let convert = try runKiln(["convert", npz, out], environment: ["KILN_PLUGIN_PATH": so])
            try #require(convert.status == 0, "\(name): \(convert.stderr)")
            let compare = try runProcess(python, ["-c", compareArchives, npz, out])
            #expect(compare.status == 0, "\(name): \(compare.stdout) \(compare.stderr)")
        }
    }

    @Test("a real calibration input (ppocr det.calib.npz, deflated, key x) converts byte for byte")
    func realCalibrationInput() throws {
        let npz = try TestEnvironment.sharedModel("ppocr-v4-onnx/inputs/det.calib.npz")
        let so = try TemplateBuild.plugin()
        let inspect = try runKiln(["inspect", npz, "--json"], environment: ["KILN_PLUGIN_PATH": so])
        try #require(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.contains(#""name" : "x""#) || inspect.stdout.contains(#""name": "x""#), "\(inspect.stdout)")
        let python = try TestEnvironment.python
        let dir = TemporaryDirectory("kiln-npz")
        let convert = try runKiln(["convert", npz, dir.file("x.safetensors")], environment: ["KILN_PLUGIN_PATH": so])
        try #require(convert.status == 0, "\(convert.stderr)")
        let compare = try runProcess(python, ["-c", compareArchives, npz, dir.file("x.safetensors")])
        #expect(compare.status == 0, "\(compare.stdout) \(compare.stderr)")
    }

    @Test("an input error is one line naming the file, the offset, the member and what was expected")
    func errorLine() throws {
        let so = try TemplateBuild.plugin()
        let dir = TemporaryDirectory("kiln-npz")
        let npy = NPZFixture.npy(descr: "<f4", shape: "(10,)", data: [UInt8](repeating: 0, count: 16))
        let archive = NPZFixture.zip([.init(name: "w.npy", data: npy)])
        try SafetensorsFixture.write(archive.bytes, to: dir.file("bad.npz"))
        let run = try runKiln(["inspect", dir.file("bad.npz")], environment: ["KILN_PLUGIN_PATH": so])
        #expect(run.status == 1 && !run.signalled)
        let offset = String(archive.dataOffsets[0] + npy.count - 16, radix: 16, uppercase: true)
        #expect(run.stderr == """
            error: \(dir.file("bad.npz"))@0x\(offset): member "w.npy" › data: expected 40 bytes (shape [10] of f32), \
            found 16 bytes (the npy header does not describe the data)

            """)
    }

    @Test("a plugin built with another ABI version is refused before dlopen, naming both versions")
    func abiMismatch() throws {
        let so = try TemplateBuild.abi99Plugin()
        let bytes = try FileSystem.readBytes(so)
        #expect(bytes.firstRange(of: Array("KILN-ABI-STAMP{abi=99;".utf8)) != nil, "the -D flag did not reach the stamp")

        let explicit = try runKiln(["plugins", "--plugin", so])
        #expect(explicit.status == 1)
        #expect(!explicit.signalled)
        #expect(explicit.stderr.hasPrefix("error: \(so): built for a different Kiln ABI: plugin has abi=99, "), "\(explicit.stderr)")
        #expect(explicit.stderr.contains("this kiln has abi=\(kiln_abi_version()), "))

        let found = try runKiln(["plugins"], environment: ["KILN_PLUGIN_PATH": AtomicOutput.parent(of: so)])
        #expect(found.status == 0, "\(found.stderr)")
        let refused = found.stdout.components(separatedBy: "\nRefused:\n").last ?? ""
        #expect(refused.contains("\(so): built for a different Kiln ABI: plugin has abi=99"), "\(found.stdout)")
        #expect(!found.stdout.contains("npz          reader"))
    }
}

// MARK: - The npz reader, in this process, on hand-made archives

/// Hand-made .npz bytes: .npy members in a zip, stored or deflated (as deflate "stored"
/// blocks, so no zlib is needed here), optionally with zip64 fields and records.
enum NPZFixture {
    struct Member {
        var name: String
        var data: [UInt8]
        var deflate = false
        /// Central sizes and offset 0xFFFFFFFF, real values in a zip64 extra field.
        var zip64 = false
        var crc: UInt32?
        var declaredSize: Int?
        /// Drop this many bytes from the end of the (compressed) data; sizes stay as written.
        var cut = 0
    }

    struct Archive {
        var bytes: [UInt8]
        var centralOffset: Int
        var dataOffsets: [Int]
    }

    /// An .npy file (version 1.0 unless asked) with the header padded to a multiple of 64 bytes.
    static func npy(descr: String, shape: String, fortran: Bool = false, data: [UInt8], version: UInt8 = 1) -> [UInt8] {
        var text = Array("{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shape), }".utf8)
        let prelude = version == 1 ? 10 : 12
        while (prelude + text.count + 1) % 64 != 0 { text.append(0x20) }
        text.append(0x0A)
        let length = version == 1 ? le(UInt16(text.count)) : le(UInt32(text.count))
        return [0x93] + Array("NUMPY".utf8) + [version, 0] + length + text + data
    }

    static func zip(_ members: [Member], zip64End: Bool = false) -> Archive {
        var out: [UInt8] = [], central: [UInt8] = [], dataOffsets: [Int] = []
        for m in members {
            var data = m.deflate ? storedDeflate(m.data) : m.data
            data.removeLast(min(m.cut, data.count))
            let name = Array(m.name.utf8), crc = m.crc ?? crc32(m.data)
            let size = m.declaredSize ?? m.data.count, offset = out.count
            let common = le(UInt16(45)) + le(UInt16(1 << 11)) + le(UInt16(m.deflate ? 8 : 0)) + le(UInt16(0)) + le(UInt16(0x21)) + le(crc)
            let sizes = m.zip64 ? le(UInt32.max) + le(UInt32.max) : le(UInt32(data.count)) + le(UInt32(size))
            let extra = m.zip64 ? le(UInt16(1)) + le(UInt16(24)) + le(UInt64(size)) + le(UInt64(data.count)) + le(UInt64(offset)) : []
            out += le(UInt32(0x0403_4B50)) + common + sizes + le(UInt16(name.count)) + le(UInt16(extra.count)) + name + extra
            dataOffsets.append(out.count)
            out += data
            central += le(UInt32(0x0201_4B50)) + le(UInt16(45)) + common + sizes + le(UInt16(name.count)) + le(UInt16(extra.count))
                + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt32(0)) + (m.zip64 ? le(UInt32.max) : le(UInt32(offset))) + name + extra
        }
        let centralOffset = out.count, n = members.count
        out += central
        if zip64End {
            let record = out.count
            out += le(UInt32(0x0606_4B50)) + le(UInt64(44)) + le(UInt16(45)) + le(UInt16(45)) + le(UInt32(0)) + le(UInt32(0))
                + le(UInt64(n)) + le(UInt64(n)) + le(UInt64(central.count)) + le(UInt64(centralOffset))
            out += le(UInt32(0x0706_4B50)) + le(UInt32(0)) + le(UInt64(record)) + le(UInt32(1))
            out += le(UInt32(0x0605_4B50)) + [0, 0, 0, 0] + le(UInt16.max) + le(UInt16.max) + le(UInt32.max) + le(UInt32.max) + [0, 0]
        } else {
            out += le(UInt32(0x0605_4B50)) + [0, 0, 0, 0] + le(UInt16(n)) + le(UInt16(n)) + le(UInt32(central.count)) + le(UInt32(centralOffset)) + [0, 0]
        }
        return Archive(bytes: out, centralOffset: centralOffset, dataOffsets: dataOffsets)
    }

    /// A raw deflate stream of "stored" blocks (RFC 1951 §3.2.4): BFINAL/BTYPE=00, LEN, NLEN, bytes.
    static func storedDeflate(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [], at = 0
        repeat {
            let n = min(0xFFFF, data.count - at)
            out += [at + n == data.count ? 1 : 0] + le(UInt16(n)) + le(~UInt16(n)) + data[at..<at + n]
            at += n
        } while at < data.count
        return out
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in data {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        }
        return ~c
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    /// Four f32 values 1, 2, 3, 4.
    static let floats: [UInt8] = [Float(1), 2, 3, 4].withUnsafeBytes { Array($0) }
}

@Suite("npz reader (the template's provider, loaded in this process)", .serialized)
struct NPZReaderTests {
    let dir = TemporaryDirectory("kiln-npz")

    func read(_ archive: NPZFixture.Archive, name: String = "a.npz") throws -> Model {
        try SafetensorsFixture.write(archive.bytes, to: dir.file(name))
        return try TemplateBuild.reader().read(path: dir.file(name), context: KilnContext())
    }

    func bytes(of tensor: Tensor) throws -> [UInt8] { try tensor.withBytes { Array($0) } }

    @Test("stored members are mapped when aligned, deferred copies otherwise; zip64 fields and records read the same")
    func storedMembers() throws {
        let npy = NPZFixture.npy(descr: "<f4", shape: "(2, 2)", data: NPZFixture.floats)
        let header = npy.count - NPZFixture.floats.count
        for zip64 in [false, true] {
            // Data of the first member starts at 30 + 6 (+ 28 zip64 extra) + 128: 4-aligned; the second's is not.
            let archive = NPZFixture.zip(["ab.npy", "a.npy"].map { .init(name: $0, data: npy, zip64: zip64) }, zip64End: zip64)
            let model = try read(archive)
            #expect(model.tensorNames == ["ab", "a"])
            for (t, offset) in zip(model.tensors, archive.dataOffsets) {
                #expect(t.dtype == .f32 && t.shape == [2, 2])
                #expect(try t.floats() == [1, 2, 3, 4])
                switch t.storage {
                case .mapped(_, let at): #expect(at == offset + header && at % 4 == 0)
                case .deferred: #expect((offset + header) % 4 != 0)
                default: Issue.record("stored member \(t.name) is neither mapped nor deferred")
                }
            }
            #expect((archive.dataOffsets[0] + header) % 4 == 0 && (archive.dataOffsets[1] + header) % 4 != 0)
        }
    }

    @Test("deflated members are inflated on demand, across several deflate blocks")
    func deflatedMembers() throws {
        let big = (0..<40_000).map { Float($0) }
        let npy = NPZFixture.npy(descr: "<f4", shape: "(200, 200)", data: big.withUnsafeBytes { Array($0) }, version: 2)
        let model = try read(NPZFixture.zip([.init(name: "w.npy", data: npy, deflate: true, zip64: true)]))
        let w = try #require(model["w"])
        guard case .deferred = w.storage else { Issue.record("deflated member is not deferred"); return }
        #expect(w.shape == [200, 200])
        #expect(try w.floats() == big)
    }

    @Test("every supported dtype, as a scalar, an empty array and a matrix, reads back its exact bytes")
    func dtypeTable() throws {
        #expect(npyDtypes.count >= 9)
        for (i, (descr, dtype)) in npyDtypes.enumerated() {
            let size = dtype.bits / 8
            for (shape, dims) in [("()", [Int]()), ("(0, 3)", [0, 3]), ("(2, 3)", [2, 3])] {
                let count = dims.reduce(1, *) * size
                let data = (0..<count).map { UInt8(truncatingIfNeeded: $0 * 37 + i) & (dtype == .bool ? 1 : 0xFF) }
                for deflate in [false, true] {
                    let npy = NPZFixture.npy(descr: descr, shape: shape, data: data, version: UInt8(1 + i % 3))
                    let model = try read(NPZFixture.zip([.init(name: "t.npy", data: npy, deflate: deflate)]))
                    let t = try #require(model["t"])
                    #expect(t.dtype == dtype && t.shape.dims == dims, "\(descr) \(shape)")
                    #expect(try bytes(of: t) == data, "\(descr) \(shape) deflate=\(deflate)")
                }
            }
        }
    }

    @Test("damaged archives (random bytes changed, cut short) read or throw KilnError, never crash")
    func damaged() throws {
        let reader = try TemplateBuild.reader()
        let npy = NPZFixture.npy(descr: "<i2", shape: "(3, 5)", data: (0..<30).map { UInt8($0) }, version: 2)
        let valid = NPZFixture.zip([.init(name: "a.npy", data: npy), .init(name: "b/c.npy", data: npy, deflate: true, zip64: true)],
                                   zip64End: true).bytes
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((seed >> 33) % UInt64(bound))
        }
        var refused = 0
        for round in 0..<400 {
            var bytes = valid
            for _ in 0...next(3) { bytes[next(bytes.count)] = UInt8(next(256)) }
            if round % 4 == 0 { bytes.removeLast(next(bytes.count)) }
            try SafetensorsFixture.write(bytes, to: dir.file("damaged.npz"))
            do {
                let model = try reader.read(path: dir.file("damaged.npz"), context: KilnContext())
                for t in model.tensors { _ = try t.materialized() }
            } catch let error as KilnError {
                #expect(error.file == dir.file("damaged.npz") && error.kind != .internal, "\(error)")
                refused += 1
            }
        }
        #expect(refused > 100)
    }

    @Test("probe: 100 for a zip named .npz, 10 for another .npz, 0 otherwise")
    func probe() throws {
        let reader = try TemplateBuild.reader()
        try SafetensorsFixture.write(NPZFixture.zip([]).bytes, to: dir.file("empty.npz"))
        try SafetensorsFixture.write(Array("not a zip".utf8), to: dir.file("text.npz"))
        try SafetensorsFixture.write(NPZFixture.zip([]).bytes, to: dir.file("archive.zip"))
        #expect(reader.probe(path: dir.file("empty.npz")) == 100)
        #expect(reader.probe(path: dir.file("text.npz")) == 10)
        #expect(reader.probe(path: dir.file("archive.zip")) == 0)
        #expect(reader.probe(path: dir.path) == 0)
        #expect(try reader.read(path: dir.file("empty.npz"), context: KilnContext()).tensors.isEmpty)
    }
}

/// One hand-made bad archive per refusal, and what the reader must say about it.
struct BadArchive: Sendable, CustomTestStringConvertible {
    let label: String
    let kind: KilnError.Kind
    /// A piece of the one-line message.
    let message: String
    /// False: reading succeeds and the error comes when the tensor's bytes are needed.
    var whenRead = true
    /// The bytes, and the offset the error must name (nil: none).
    let make: @Sendable () -> ([UInt8], Int?)

    var testDescription: String { label }

    typealias Member = NPZFixture.Member
    static let floats = NPZFixture.npy(descr: "<f4", shape: "(2, 2)", data: NPZFixture.floats)

    static func archive(_ members: [Member], offset: (NPZFixture.Archive) -> Int?) -> ([UInt8], Int?) {
        let a = NPZFixture.zip(members)
        return (a.bytes, offset(a))
    }

    static func npy(_ descr: String, _ shape: String = "(2, 2)", fortran: Bool = false, data: [UInt8] = NPZFixture.floats,
                    at value: String) -> ([UInt8], Int?) {
        let npy = NPZFixture.npy(descr: descr, shape: shape, fortran: fortran, data: data)
        let at = npy.firstRange(of: Array(value.utf8))!.lowerBound
        return archive([Member(name: "w.npy", data: npy)]) { $0.dataOffsets[0] + at }
    }

    static let all: [BadArchive] = [
        BadArchive(label: "empty file", kind: .invalidInput, message: "expected at least 22 bytes, found 0 bytes") { ([], 0) },
        BadArchive(label: "truncated archive", kind: .invalidInput, message: "expected signature PK\\5\\6") {
            let a = NPZFixture.zip([Member(name: "w.npy", data: floats)])
            return (Array(a.bytes.prefix(a.bytes.count / 2)), nil)
        },
        BadArchive(label: "bytes missing before the central directory", kind: .invalidInput, message: "truncated archive or bad central directory") {
            var a = NPZFixture.zip([Member(name: "w.npy", data: floats)])
            a.bytes.removeSubrange(40..<50)
            return (a.bytes, a.bytes.count - 22 + 12)
        },
        BadArchive(label: "bad central directory", kind: .invalidInput, message: "expected a central directory header (PK\\1\\2)") {
            var a = NPZFixture.zip([Member(name: "w.npy", data: floats)])
            a.bytes[a.centralOffset + 3] = 0x99
            return (a.bytes, a.centralOffset)
        },
        BadArchive(label: "member name with ..", kind: .invalidInput,
                   message: #"expected a relative member name without "..", found "../evil.npy""#) {
            archive([Member(name: "../evil.npy", data: floats)]) { $0.centralOffset + 46 }
        },
        BadArchive(label: "absolute member name", kind: .invalidInput, message: #"found "/tmp/evil.npy""#) {
            archive([Member(name: "/tmp/evil.npy", data: floats)]) { $0.centralOffset + 46 }
        },
        BadArchive(label: "member that is not .npy", kind: .invalidInput, message: #"expected an .npy member, found "notes.txt""#) {
            archive([Member(name: "notes.txt", data: floats)]) { $0.centralOffset }
        },
        BadArchive(label: "npy header that lies about the size", kind: .invalidInput,
                   message: "data: expected 40 bytes (shape [10] of f32), found 16 bytes") {
            let npy = NPZFixture.npy(descr: "<f4", shape: "(10,)", data: NPZFixture.floats)
            return archive([Member(name: "w.npy", data: npy)]) { $0.dataOffsets[0] + npy.count - 16 }
        },
        BadArchive(label: "unknown dtype", kind: .invalidInput, message: "descr: expected one of '<f8' '<f4'") { npy("<c8", at: "'<c8'") },
        BadArchive(label: "big-endian dtype", kind: .invalidInput, message: "found '>f4' (big-endian") { npy(">f4", at: "'>f4'") },
        BadArchive(label: "negative dimension", kind: .invalidInput, message: "dimension 0: expected a non-negative integer, found -2") {
            npy("<f4", "(-2, 2)", at: "(-2")
        },
        BadArchive(label: "fortran order", kind: .unsupported, message: "expected False (C order), found True") {
            npy("<f4", fortran: true, at: "True")
        },
        BadArchive(label: "npy magic", kind: .invalidInput, message: "npy magic: expected 93 4E 55 4D 50 59") {
            archive([Member(name: "w.npy", data: Array("hello, world".utf8))]) { $0.dataOffsets[0] }
        },
        BadArchive(label: "npy version 4.0", kind: .invalidInput, message: "expected 1.0, 2.0 or 3.0, found 4.0") {
            var npy = floats
            npy[6] = 4
            return archive([Member(name: "w.npy", data: npy)]) { $0.dataOffsets[0] + 6 }
        },
        BadArchive(label: "malformed header dict", kind: .invalidInput, message: "npy header: expected ',' or '}'") {
            npy("<f4' 'x", at: "'x'")
        },
        BadArchive(label: "duplicate member", kind: .invalidInput, message: "duplicate tensor name") {
            (NPZFixture.zip([Member(name: "w.npy", data: floats), Member(name: "w.npy", data: floats)]).bytes, nil)
        },
        BadArchive(label: "deflated size claim beyond 1032:1", kind: .invalidInput, message: "deflate cannot expand more than 1032:1") {
            archive([Member(name: "w.npy", data: floats, deflate: true, zip64: true, declaredSize: 1 << 40)]) { $0.centralOffset + 24 }
        },
        BadArchive(label: "corrupt deflate data", kind: .invalidInput, message: "zlib says \"invalid stored block lengths\"") {
            var a = NPZFixture.zip([Member(name: "w.npy", data: floats, deflate: true)])
            a.bytes[a.dataOffsets[0] + 3] ^= 0xFF
            return (a.bytes, a.dataOffsets[0])
        },
        BadArchive(label: "deflated member cut short", kind: .invalidInput, message: "truncated member", whenRead: false) {
            archive([Member(name: "w.npy", data: floats, deflate: true, cut: 8)]) { $0.dataOffsets[0] }
        },
        BadArchive(label: "crc-32 mismatch", kind: .invalidInput, message: "crc-32: expected 0xDEADBEEF", whenRead: false) {
            archive([Member(name: "w.npy", data: floats, deflate: true, crc: 0xDEAD_BEEF)]) { $0.centralOffset + 16 }
        },
    ]
}

extension NPZReaderTests {
    @Test("bad archives are refused with the file, the offset and what was expected — never a crash", arguments: BadArchive.all)
    func refused(_ bad: BadArchive) throws {
        let (bytes, offset) = bad.make()
        let path = dir.file("bad.npz")
        try SafetensorsFixture.write(bytes, to: path)
        let reader = try TemplateBuild.reader()
        let error: KilnError?
        if bad.whenRead {
            error = #expect(throws: KilnError.self) { _ = try reader.read(path: path, context: KilnContext()) }
        } else {
            let model = try reader.read(path: path, context: KilnContext())
            error = #expect(throws: KilnError.self) { for t in model.tensors { _ = try t.materialized() } }
        }
        let e = try #require(error)
        #expect(e.kind == bad.kind)
        #expect(e.file == path)
        #expect(e.offset == offset, "\(e)")
        #expect(e.description.contains(bad.message), "\(e)")
    }
}
