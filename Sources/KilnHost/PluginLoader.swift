#if canImport(Glibc)
import Glibc
#endif
import KilnCore

/// A plugin that passed all three loading steps.
public final class LoadedPlugin: @unchecked Sendable {
    public let path: String
    public let name: String
    public let version: String
    public let stamp: PluginStamp
    public let swiftCompiler: String
    public let providers: [any KilnProvider]
    /// Keeps the entry object alive (providers may point back to it).
    let entry: any KilnPluginEntry

    init(path: String, name: String, version: String, stamp: PluginStamp, swiftCompiler: String, entry: any KilnPluginEntry) {
        self.path = path
        self.name = name
        self.version = version
        self.stamp = stamp
        self.swiftCompiler = swiftCompiler
        self.entry = entry
        self.providers = entry.providers
    }
}

/// Loads one plugin file in three steps; a failed step is a `KilnError(.plugin)`, never a crash.
///
/// 1. Preflight before dlopen: ELF shared object with a `KILN-ABI-STAMP` equal to the host's.
/// 2. dlopen + the `kiln_plugin_descriptor` struct: magic, ABI, SDK, toolchain and compiler identity.
/// 3. `create()` and a cast to ``KilnPluginEntry``.
///
/// Libraries are never dlclose'd (a closed Swift library breaks later dynamic casts).
public enum PluginLoader {
    /// Serializes loads: dlopen and the Swift runtime's type registration are not re-entrant here.
    nonisolated(unsafe) private static var lock = pthread_mutex_t()
    nonisolated(unsafe) private static var lockReady: Bool = {
        pthread_mutex_init(&lock, nil)
        return true
    }()
    nonisolated(unsafe) private static var loaded: [String: LoadedPlugin] = [:]

    /// Load the plugin at `path` (each real path once per process).
    public static func load(path: String) throws -> LoadedPlugin {
        _ = lockReady
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        let real = realPath(path) ?? path
        if let done = loaded[real] { return done }

        let host = PluginStamp.host
        let (stamp, exportsEntry) = try Preflight.stamp(of: real, shownAs: path)
        guard stamp == host else {
            throw KilnError(.plugin, file: path, "built for a different Kiln ABI: plugin has \(stamp), this kiln has \(host); rebuild the plugin against this KilnCore")
        }
        // libKilnCore.so itself may carry a stamp (debug builds keep the SDK's inline helpers);
        // only a library exporting the entry symbol is a plugin. Checked before dlopen, so a
        // second copy of KilnCore is never mapped.
        guard exportsEntry != false else {
            throw KilnError(.plugin, file: path, "not a Kiln plugin (it does not export \(KILN_PLUGIN_SYMBOL))")
        }

        guard let handle = dlopen(real, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw KilnError(.plugin, file: path, "dlopen failed: \(reason)")
        }
        guard let symbol = dlsym(handle, KILN_PLUGIN_SYMBOL) else {
            throw KilnError(.plugin, file: path, "no \(KILN_PLUGIN_SYMBOL) symbol: not a Kiln plugin")
        }
        let describe = unsafeBitCast(symbol, to: kiln_plugin_descriptor_fn.self)
        guard let d = describe()?.pointee else {
            throw KilnError(.plugin, file: path, "\(KILN_PLUGIN_SYMBOL)() returned NULL")
        }
        guard d.magic == KILN_PLUGIN_MAGIC else {
            throw KilnError.mismatch(file: path, path: ["descriptor", "magic"], expected: hex(KILN_PLUGIN_MAGIC), found: hex(d.magic))
        }
        guard d.abi_version == kiln_abi_version() else {
            throw KilnError(.plugin, file: path, "descriptor ABI version \(d.abi_version), this kiln has \(kiln_abi_version())")
        }
        let sdk = text(d.sdk_version), toolchain = text(d.toolchain), compiler = text(d.swift_compiler)
        guard sdk == host.sdk else {
            throw KilnError(.plugin, file: path, "built with Kiln SDK \(sdk), this kiln has \(host.sdk)")
        }
        guard toolchain == host.toolchain else {
            throw KilnError(.plugin, file: path, "built with toolchain \"\(toolchain)\", this kiln with \"\(host.toolchain)\"")
        }
        guard compiler == KilnPluginDescriptor.swiftCompiler else {
            throw KilnError(.plugin, file: path, "built with Swift \(compiler), this kiln with Swift \(KilnPluginDescriptor.swiftCompiler)")
        }
        guard let create = d.create, let raw = create() else {
            throw KilnError(.plugin, file: path, "create() returned NULL")
        }
        let object = Unmanaged<AnyObject>.fromOpaque(raw).takeRetainedValue()
        guard let entry = object as? any KilnPluginEntry else {
            throw KilnError(.plugin, file: path, "create() returned \(type(of: object)), which is not a KilnPluginEntry")
        }
        let plugin = LoadedPlugin(
            path: real, name: text(d.plugin_name), version: text(d.plugin_version), stamp: stamp,
            swiftCompiler: compiler, entry: entry)
        loaded[real] = plugin
        return plugin
    }

    static func text(_ p: UnsafePointer<CChar>?) -> String {
        p.map { String(cString: $0) } ?? ""
    }

    static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16, uppercase: true) }

    static func realPath(_ path: String) -> String? { FileSystem.realPath(path) }
}
