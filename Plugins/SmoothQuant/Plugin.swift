import KilnCore

/// The SmoothQuant plugin (libKilnPassSmoothQuant.so): one pass, `int8-sq` (see ``SmoothQuantPass``).
final class SmoothQuantPlugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [SmoothQuantPass()]
}

@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "smoothquant", version: "0.1.0") {
        KilnPluginDescriptor.retained(SmoothQuantPlugin())
    }
}
