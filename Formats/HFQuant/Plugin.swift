import KilnCore

/// The unified Hugging Face quantized checkpoint plugin (ModelOpt's `export_hf_checkpoint` layout):
/// one reader and one writer, both called "hf-quant".
final class HFQuantPlugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [HFQuantReader(), HFQuantWriter()]
}

@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "hf-quant", version: "0.1.0") {
        KilnPluginDescriptor.retained(HFQuantPlugin())
    }
}
