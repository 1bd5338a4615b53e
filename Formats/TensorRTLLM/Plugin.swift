import KilnCore

/// The TensorRT-LLM checkpoint plugin: one reader, one writer, both called "trtllm".
final class TensorRTLLMPlugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [TensorRTLLMReader(), TensorRTLLMWriter()]
}

@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "trtllm", version: "0.1.0") {
        KilnPluginDescriptor.retained(TensorRTLLMPlugin())
    }
}
