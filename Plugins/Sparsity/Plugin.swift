import KilnCore

/// The sparsity plugin (libKilnPassSparsity.so): one pass, `sparse-2:4` (see ``SparsityPass``), with
/// the method (`magnitude` | `sparsegpt`) as an option.
///
/// Output weights stay dense with the zeros stored; the model's record says `sparsity "2:4"`
/// (``QuantizationRecord/sparseFloat(_:)``), which the TensorRT-LLM and unified HF writers turn into
/// their sparsity flags and which FP8 / INT8 passes run afterwards keep.
final class SparsityPlugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [SparsityPass()]
}

@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "sparsity", version: "0.1.0") {
        KilnPluginDescriptor.retained(SparsityPlugin())
    }
}
