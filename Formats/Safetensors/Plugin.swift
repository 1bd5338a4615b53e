import KilnCore

/// The safetensors plugin: one reader, one writer.
final class SafetensorsPlugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [SafetensorsReader(), SafetensorsWriter()]
}

@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "safetensors", version: "0.1.0") {
        KilnPluginDescriptor.retained(SafetensorsPlugin())
    }
}
