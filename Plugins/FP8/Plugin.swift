import KilnCore

/// The FP8 plugin (libKilnPassFP8.so): one pass, `fp8` (see ``FP8Pass``).
final class FP8Plugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [FP8Pass()]
}

@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "fp8", version: "0.1.0") {
        KilnPluginDescriptor.retained(FP8Plugin())
    }
}
