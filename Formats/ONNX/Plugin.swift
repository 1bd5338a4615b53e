import KilnCore

/// The ONNX plugin: one reader, one writer.
final class ONNXPlugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [ONNXReader(), ONNXWriter()]
}

@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "onnx", version: ONNXPlugin.version) {
        KilnPluginDescriptor.retained(ONNXPlugin())
    }
}

extension ONNXPlugin {
    /// Written into `producer_version` of every exported model.
    static let version = "0.1.0"
}
