import Foundation
import KilnCore
import KilnHost
import KilnTestKit
import Testing

/// Hand-made "shared libraries": a 64-byte ELF64 header of e_type `type`, then `tail` and a NUL.
enum FakeLibrary {
    static func bytes(type: UInt8 = 3, tail: String = "") -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 64)
        header.replaceSubrange(0..<7, with: [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1])
        header[16] = type
        header[18] = 0x3E  // x86-64
        return header + Array(tail.utf8) + [0]
    }

    /// The stamp this host carries, with `abi` replaced.
    static func stamp(abi: String? = nil, toolchain: String? = nil) -> String {
        let host = PluginStamp.host
        return "KILN-ABI-STAMP{abi=\(abi ?? host.abi);sdk=\(host.sdk);toolchain=\(toolchain ?? host.toolchain)}"
    }
}

@Suite("Plugin stamp")
struct PluginStampTests {
    @Test("a whole stamp and the text between its braces parse alike")
    func parses() throws {
        let whole = try #require(PluginStamp(parsing: "KILN-ABI-STAMP{abi=7;sdk=0.2.0;toolchain=clang 21.0.0 (https://x.git 1a2b)}"))
        #expect(whole == PluginStamp(abi: "7", sdk: "0.2.0", toolchain: "clang 21.0.0 (https://x.git 1a2b)"))
        let body = try #require(PluginStamp(parsing: "abi=7;sdk=0.2.0;toolchain=clang"))
        #expect(body.description == "abi=7, sdk=0.2.0, toolchain=clang")
    }

    @Test("a stamp without abi, sdk or toolchain, or with a field lacking '=', is no stamp")
    func refusesIncomplete() {
        #expect(PluginStamp(parsing: "KILN-ABI-STAMP{abi=1;sdk=0.1.0}") == nil)
        #expect(PluginStamp(parsing: "KILN-ABI-STAMP{abi=1;sdk;toolchain=x}") == nil)
        #expect(PluginStamp(parsing: "") == nil)
    }

    @Test("the host stamp is this build's ABI and SDK version")
    func host() {
        #expect(PluginStamp.host.abi == String(kiln_abi_version()))
        #expect(PluginStamp.host.sdk == String(cString: kiln_sdk_version()))
        #expect(PluginStamp.host.toolchain == String(cString: kiln_toolchain()))
    }
}

/// A file the loader must refuse, and how.
struct RefusedFile: Sendable, CustomTestStringConvertible {
    let label: String
    let bytes: [UInt8]
    let message: String
    var offset: Int?
    var testDescription: String { label }

    static let all: [RefusedFile] = [
        RefusedFile(label: "empty file", bytes: [], message: "not a shared library (no ELF header)"),
        RefusedFile(label: "text file", bytes: Array("hello, plugin\n".utf8), message: "not a shared library (no ELF header)"),
        RefusedFile(label: "ELF executable", bytes: FakeLibrary.bytes(type: 2, tail: FakeLibrary.stamp()),
                    message: "not a shared library (ELF type 2, expected 3 = ET_DYN)", offset: 16),
        RefusedFile(label: "shared library without a stamp", bytes: FakeLibrary.bytes(),
                    message: "not a Kiln plugin (no KILN-ABI-STAMP; was it built against KilnCore?)"),
        RefusedFile(label: "another ABI version", bytes: FakeLibrary.bytes(tail: FakeLibrary.stamp(abi: "99")),
                    message: "built for a different Kiln ABI: plugin has abi=99, sdk=\(PluginStamp.host.sdk), toolchain=\(PluginStamp.host.toolchain), this kiln has \(PluginStamp.host)"),
        RefusedFile(label: "another toolchain", bytes: FakeLibrary.bytes(tail: FakeLibrary.stamp(toolchain: "gcc 14")),
                    message: "plugin has abi=\(PluginStamp.host.abi), sdk=\(PluginStamp.host.sdk), toolchain=gcc 14, this kiln has"),
        RefusedFile(label: "unterminated stamp", bytes: FakeLibrary.bytes(tail: "KILN-ABI-STAMP{abi=1;sdk="),
                    message: "unterminated KILN-ABI-STAMP", offset: 64),
        RefusedFile(label: "malformed stamp", bytes: FakeLibrary.bytes(tail: "KILN-ABI-STAMP{abi}"),
                    message: "malformed KILN-ABI-STAMP: KILN-ABI-STAMP{abi}", offset: 64),
        RefusedFile(label: "the host's stamp in a file dlopen cannot load", bytes: FakeLibrary.bytes(tail: FakeLibrary.stamp()),
                    message: "dlopen failed: "),
    ]
}

@Suite("Plugin loader: refusals, in this process")
struct PluginLoaderTests {
    let dir = TemporaryDirectory("kiln-loader")

    @Test("files that are not loadable plugins are refused with kind .plugin, naming the file", arguments: RefusedFile.all)
    func refused(_ file: RefusedFile) throws {
        let path = dir.file("x.so")
        try SafetensorsFixture.write(file.bytes, to: path)
        let error = try #require(#expect(throws: KilnError.self) { try PluginLoader.load(path: path) })
        #expect(error.kind == .plugin)
        #expect(error.file == path)
        #expect(error.offset == file.offset)
        #expect(error.message.contains(file.message), "\(error)")
    }

    @Test("a missing file is an I/O error naming it")
    func missing() throws {
        let error = try #require(#expect(throws: KilnError.self) { try PluginLoader.load(path: dir.file("absent.so")) })
        #expect(error.kind == .io)
        #expect(error.description.hasPrefix(dir.file("absent.so") + ": cannot open"))
    }
}

@Suite("Plugin registry: discovery order, shadowing", .serialized)
struct PluginRegistryTests {
    @Test("automatic places in order: $KILN_PLUGIN_PATH entries, plugins/ beside the executable, libKiln*.so beside it")
    func discoveryOrder() throws {
        let root = TemporaryDirectory("kiln-registry")
        let fm = FileManager.default
        for folder in ["env", "exe/plugins"] { try fm.createDirectory(atPath: root.file(folder), withIntermediateDirectories: true) }
        let text = Array("not a library".utf8)
        for name in ["env/b.so", "env/a.so", "env/notes.txt", "single.so", "exe/plugins/c.so", "exe/plugins/libKilnCore.so",
                     "exe/libKilnZ.so", "exe/other.so", "exe/libKilnCore.so"] {
            try SafetensorsFixture.write(text, to: root.file(name))
        }
        let registry = try PluginRegistry.discover(explicit: [], environment: root.file("env") + "::" + root.file("single.so"),
                                                   executableDirectory: root.file("exe"))
        #expect(registry.refused.map(\.path) == ["env/a.so", "env/b.so", "single.so", "exe/plugins/c.so", "exe/libKilnZ.so"].map(root.file))
        #expect(registry.refused.allSatisfy { $0.error.kind == .plugin && $0.error.file == $0.path })
        #expect(registry.plugins.isEmpty && registry.active.isEmpty)
    }

    @Test("a refused --plugin is an error, not a refusal")
    func explicitRefusalThrows() throws {
        let dir = TemporaryDirectory("kiln-registry")
        try SafetensorsFixture.write(Array("text".utf8), to: dir.file("x.so"))
        #expect(throws: KilnError.self) { try PluginRegistry.discover(explicit: [dir.file("x.so")], executableDirectory: nil) }
    }

    @Test("the built-in plugins load from the build folder; one file reached by two paths loads once")
    func builtIns() throws {
        let registry = TestEnvironment.plugins
        let kinds = registry.active.filter { $0.provider.name == "safetensors" }.map(\.provider.kind)
        #expect(Set(kinds) == [.reader, .writer])
        let real = try #require(registry.plugins.first { $0.name == "safetensors" }).path
        let dir = TemporaryDirectory("kiln-registry")
        try FileManager.default.createSymbolicLink(atPath: dir.file("link.so"), withDestinationPath: real)
        #expect(try PluginLoader.load(path: dir.file("link.so")) === PluginLoader.load(path: real))
        let twice = try PluginRegistry.discover(explicit: [real, dir.file("link.so")], executableDirectory: nil)
        #expect(twice.plugins.count == 1 && twice.shadowed.isEmpty)
    }

    /// `kiln plugins --json` → (active npz path, shadowed npz paths).
    func npzPaths(_ arguments: [String], environment: [String: String]) throws -> (String?, [String]) {
        let run = try runKiln(["plugins", "--json"] + arguments, environment: environment)
        try #require(run.status == 0, "\(run.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        func npz(_ key: String) -> [String] {
            ((json[key] as? [[String: Any]]) ?? []).filter { $0["name"] as? String == "npz" }.compactMap { $0["path"] as? String }
        }
        return (npz("providers").first, npz("shadowed"))
    }

    @Test("the same provider from two files: the first found wins, the other is listed as shadowed")
    func shadowing() throws {
        let original = try TemplateBuild.plugin()
        let dir = TemporaryDirectory("kiln-registry")
        try FileManager.default.copyItem(atPath: original, toPath: dir.file("libKilnNPZ.so"))
        let copy = try #require(FileSystem.realPath(dir.file("libKilnNPZ.so")))

        let (first, shadowed) = try npzPaths([], environment: ["KILN_PLUGIN_PATH": original + ":" + dir.path])
        #expect(first == original && shadowed == [copy])
        let (swappedFirst, swappedShadowed) = try npzPaths([], environment: ["KILN_PLUGIN_PATH": dir.path + ":" + original])
        #expect(swappedFirst == copy && swappedShadowed == [original])
        let (explicitFirst, explicitShadowed) = try npzPaths(["--plugin", copy], environment: ["KILN_PLUGIN_PATH": original])
        #expect(explicitFirst == copy && explicitShadowed == [original])
    }
}

@Suite("kiln plugins --plugin on files that are not plugins")
struct PluginRefusalCLITests {
    let dir = TemporaryDirectory("kiln-loader")

    func refuse(_ path: String) throws -> String {
        let run = try runKiln(["plugins", "--plugin", path])
        #expect(run.status == 1 && !run.signalled, "\(run)")
        return run.stderr
    }

    @Test("a text file named x.so")
    func textFile() throws {
        try SafetensorsFixture.write(Array("hello\n".utf8), to: dir.file("x.so"))
        let stderr = try refuse(dir.file("x.so"))
        #expect(stderr == "error: \(dir.file("x.so")): not a shared library (no ELF header)\n", "\(stderr)")
    }

    @Test("a shared library that is not a Kiln plugin (zlib)")
    func zlib() throws {
        let libz = "/usr/lib/x86_64-linux-gnu/libz.so.1"
        guard FileSystem.exists(libz) else { try TestEnvironment.skip("\(libz) is absent") }
        // copyItem would copy the symbolic link libz.so.1 itself: copy the file it names.
        try FileManager.default.copyItem(atPath: try #require(FileSystem.realPath(libz)), toPath: dir.file("libz-copy.so"))
        let stderr = try refuse(dir.file("libz-copy.so"))
        #expect(stderr == "error: \(dir.file("libz-copy.so")): not a Kiln plugin (no KILN-ABI-STAMP; was it built against KilnCore?)\n",
                "\(stderr)")
    }

    @Test("libKilnCore.so under another name (it carries the stamp, but exports no descriptor)")
    func coreUnderAnotherName() throws {
        let core = TestEnvironment.buildDirectory + "/libKilnCore.so"
        try FileManager.default.copyItem(atPath: try #require(FileSystem.realPath(core)), toPath: dir.file("libNotAPlugin.so"))
        let stderr = try refuse(dir.file("libNotAPlugin.so"))
        #expect(stderr.hasPrefix("error: \(dir.file("libNotAPlugin.so")): "), "\(stderr)")
        #expect(stderr.contains("not a Kiln plugin"), "\(stderr)")
    }
}
