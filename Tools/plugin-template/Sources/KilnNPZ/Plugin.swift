// The plugin's entry point: everything kiln needs to know about this library.
//
// How kiln loads it (DESIGN §5, KilnHost/PluginLoader.swift), and what each step needs from you:
//
//   1. Preflight, before dlopen: kiln maps libKilnNPZ.so and looks for the ABI stamp
//      `KILN-ABI-STAMP{abi=1;sdk=0.1.0;toolchain=clang ...}`. The stamp is compiled into
//      this library by `KilnPluginDescriptor.make` below (it is `@_alwaysEmitIntoClient`,
//      so it carries the values of THIS build). No stamp: "not a Kiln plugin". Another ABI
//      version or toolchain: refused, naming both — rebuild against the kiln you run.
//   2. dlopen, then the C symbol `kiln_plugin_descriptor` (exported by `@_cdecl` below):
//      magic, ABI version, SDK version, toolchain and Swift compiler are compared again.
//   3. `create()` is called once; it returns a +1 retained object conforming to
//      `KilnPluginEntry`, whose `providers` kiln registers by name.
//
// Rules for a plugin author:
//   - Export exactly one `kiln_plugin_descriptor`, built with `KilnPluginDescriptor.make`.
//     Do not fill the C struct by hand: the stamp would not be emitted.
//   - Depend on the `KilnCore` *product* (libKilnCore.so); never copy KilnCore's sources
//     into your package or link it statically (two copies of `Tensor` break every cast).
//   - Never keep global state that assumes unloading: kiln never dlclose()s a plugin.
//   - Provider names are global: the first plugin found with a name wins, later ones are
//     listed as "shadowed" by `kiln plugins`. Pick a name that says what you read.
//   - Throw `KilnError` for anything a file controls (kind, file, offset, path, "expected X,
//     found Y"); never `fatalError`/`precondition` on input. A crash in a plugin is a crash
//     of kiln.

import KilnCore

/// The plugin object `create()` returns: the list of providers this library adds.
///
/// A plugin may bring several providers (a reader and a writer, a pass, an architecture);
/// this one has a single reader.
final class NPZPlugin: KilnPluginEntry {
    let providers: [any KilnProvider] = [NPZReader()]
}

/// The one symbol kiln looks up. Called once per process; the descriptor is never freed.
///
/// - Returns: a pointer to a `kiln_plugin_descriptor` (see kiln_abi.h for the layout).
@_cdecl("kiln_plugin_descriptor")
public func kilnPluginDescriptor() -> UnsafeRawPointer {
    KilnPluginDescriptor.make(name: "npz", version: "0.1.0") {
        KilnPluginDescriptor.retained(NPZPlugin())
    }
}
