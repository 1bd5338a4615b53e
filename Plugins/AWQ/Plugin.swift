import KilnCore

/// The INT4 plugin (libKilnPassAWQ.so): two passes, `int4-rtn` (round-to-nearest baseline) and
/// `int4-awq` (activation-aware scale search + clipping, W4A16_AWQ / W4A8_AWQ).
///
/// Both write the same IR: payload `i4` (`u4` with `zero-point`) `[out, in]`, two per byte, low nibble
/// first; QuantSpec `.int4` / `.perBlock(axis: 1, size: G)`, scale f32 `[out, in/G]`; AWQ adds the
/// pre-quant scale f32 `[in]` on o_proj / down_proj (folded into the norms for q/k/v, gate/up).
final class AWQPlugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [Int4RTNPass(), Int4AWQPass()]
}

@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "awq", version: "0.1.0") {
        KilnPluginDescriptor.retained(AWQPlugin())
    }
}
