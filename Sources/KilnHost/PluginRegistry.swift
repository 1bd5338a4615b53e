#if canImport(Glibc)
import Glibc
#endif
import KilnCore

/// All plugins found for one run of kiln, and their providers by name.
///
/// Discovery order (first wins on a duplicate provider name; the loser is kept as shadowed):
/// `--plugin PATH` flags, `$KILN_PLUGIN_PATH` (colon list of files or folders),
/// `plugins/` beside the executable, then the executable's own folder.
public final class PluginRegistry: @unchecked Sendable {
    /// A provider and the plugin it came from.
    public struct Entry {
        public let provider: any KilnProvider
        public let plugin: LoadedPlugin
    }

    /// A plugin file that was found but refused.
    public struct Refusal: Sendable {
        public let path: String
        public let error: KilnError
    }

    public private(set) var plugins: [LoadedPlugin] = []
    public private(set) var active: [Entry] = []
    public private(set) var shadowed: [Entry] = []
    public private(set) var refused: [Refusal] = []

    public init() {}

    /// Discover and load plugins.
    /// - Parameters:
    ///   - explicit: `--plugin` paths; a refused explicit plugin is an error (thrown).
    ///   - environment: value of `$KILN_PLUGIN_PATH`; refused plugins there are recorded in ``refused``.
    ///   - executableDirectory: folder of the running executable (default: from /proc/self/exe).
    public static func discover(explicit: [String] = [], environment: String? = nil,
                                executableDirectory: String? = PluginRegistry.executableDirectory()) throws -> PluginRegistry {
        let registry = PluginRegistry()
        for path in explicit {
            try registry.add(try PluginLoader.load(path: path))
        }
        var automatic: [String] = []
        if let environment {
            for item in environment.split(separator: ":") where !item.isEmpty {
                automatic += candidates(in: String(item), requireKilnPrefix: false)
            }
        }
        if let dir = executableDirectory {
            automatic += candidates(in: dir + "/plugins", requireKilnPrefix: false)
            automatic += candidates(in: dir, requireKilnPrefix: true)
        }
        for path in automatic {
            do {
                try registry.add(try PluginLoader.load(path: path))
            } catch let error as KilnError {
                registry.refused.append(Refusal(path: path, error: error))
            }
        }
        return registry
    }

    func add(_ plugin: LoadedPlugin) throws {
        if plugins.contains(where: { $0.path == plugin.path }) { return }
        plugins.append(plugin)
        for provider in plugin.providers {
            let entry = Entry(provider: provider, plugin: plugin)
            if active.contains(where: { $0.provider.name == provider.name && $0.provider.kind == provider.kind }) {
                shadowed.append(entry)
            } else {
                active.append(entry)
            }
        }
    }

    /// Shared-library files to try in `path` (a file is returned as is; a folder is listed, sorted).
    static func candidates(in path: String, requireKilnPrefix: Bool) -> [String] {
        var st = stat()
        guard stat(path, &st) == 0 else { return [] }
        if (st.st_mode & S_IFMT) != S_IFDIR { return [path] }
        let names = (FileSystem.list(path) ?? []).filter { name in
            name.hasSuffix(".so") && name != "libKilnCore.so" && (!requireKilnPrefix || name.hasPrefix("libKiln"))
        }
        return names.map { path + "/" + $0 }
    }

    /// The folder of the running executable, from /proc/self/exe.
    public static func executableDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return AtomicOutput.parent(of: exe)
    }

    // MARK: - Lookup

    public var readers: [any FormatReader] { active.compactMap { $0.provider as? any FormatReader } }
    public var writers: [any FormatWriter] { active.compactMap { $0.provider as? any FormatWriter } }
    public var passes: [any ModelPass] { active.compactMap { $0.provider as? any ModelPass } }

    /// The reader most confident it can read `path`.
    /// - Throws: `KilnError(.unsupported)` naming the file and the readers tried.
    public func reader(for path: String, named name: String? = nil) throws -> any FormatReader {
        if let name {
            guard let r = readers.first(where: { $0.name == name }) else {
                throw KilnError(.unsupported, "no reader called \"\(name)\"; available: \(readers.map(\.name).joined(separator: ", "))")
            }
            return r
        }
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw KilnError(.io, file: path, "no such file or folder")
        }
        let ranked = readers.map { ($0, $0.probe(path: path)) }.filter { $0.1 > 0 }.max(by: { $0.1 < $1.1 })
        guard let best = ranked?.0 else {
            let names = readers.map(\.name).joined(separator: ", ")
            throw KilnError(.unsupported, file: path, "no format plugin recognises this input (readers loaded: \(names.isEmpty ? "none" : names))")
        }
        return best
    }

    /// The writer called `name`, or the one whose extension matches `path`.
    public func writer(named name: String?, for path: String) throws -> any FormatWriter {
        if let name {
            guard let w = writers.first(where: { $0.name == name }) else {
                throw KilnError(.unsupported, "no writer called \"\(name)\"; available: \(writers.map(\.name).joined(separator: ", "))")
            }
            return w
        }
        let ext = path.split(separator: "/").last.flatMap { $0.split(separator: ".").count > 1 ? $0.split(separator: ".").last : nil }.map(String.init) ?? ""
        if let w = writers.first(where: { $0.fileExtensions.contains(ext) }) { return w }
        if let w = writers.first(where: { $0.fileExtensions.contains("") || $0.fileExtensions.contains("/") }) { return w }
        throw KilnError(.unsupported, file: path, "cannot tell the output format from the name; pass --to (available: \(writers.map(\.name).joined(separator: ", ")))")
    }
}
