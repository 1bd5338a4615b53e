// Kiln plugin ABI: the one C symbol a plugin exports, and the stamp the host
// finds in the file before it ever calls dlopen (docs/ARCHITECTURE.md, "Plugins").
//
// Layout of the descriptor (all fields set by the plugin at its own build time):
//   1. magic           uint32  KILN_PLUGIN_MAGIC ('KILN')
//   2. abi_version     uint32  KILN_ABI_VERSION the plugin was built against
//   3. abi_stamp       char*   kiln_abi_stamp() of the plugin's build (also found by preflight)
//   4. sdk_version     char*   KILN_SDK_VERSION the plugin was built against
//   5. toolchain       char*   identity of the C/Swift toolchain (clang version string)
//   6. swift_compiler  char*   Swift compiler version ("6.3" ...)
//   7. plugin_name     char*
//   8. plugin_version  char*
//   9. create          void*(*)(void): returns a +1 retained Swift object (KilnPluginEntry)
//
// Any change to this struct or to the layout of a public KilnCore type bumps
// KILN_ABI_VERSION. Values are never reused.
#ifndef KILN_ABI_H
#define KILN_ABI_H

#include <stdint.h>

#define KILN_PLUGIN_MAGIC 0x4B494C4Eu
#ifndef KILN_ABI_VERSION
#define KILN_ABI_VERSION 1
#endif
#define KILN_SDK_VERSION "0.1.0"
#define KILN_PLUGIN_SYMBOL "kiln_plugin_descriptor"

#define KILN_STR2(x) #x
#define KILN_STR(x) KILN_STR2(x)

#ifdef __clang_version__
#define KILN_TOOLCHAIN "clang " __clang_version__
#else
#define KILN_TOOLCHAIN "unknown"
#endif

typedef struct kiln_plugin_descriptor {
    uint32_t magic;
    uint32_t abi_version;
    const char *abi_stamp;
    const char *sdk_version;
    const char *toolchain;
    const char *swift_compiler;
    const char *plugin_name;
    const char *plugin_version;
    void *(*create)(void);
} kiln_plugin_descriptor;

typedef const kiln_plugin_descriptor *(*kiln_plugin_descriptor_fn)(void);

/// The ABI stamp compiled into every plugin (inline: it carries the plugin's
/// build values, not the host's). The host scans the file for it before dlopen.
static inline const char *kiln_abi_stamp(void) {
    return "KILN-ABI-STAMP{abi=" KILN_STR(KILN_ABI_VERSION) ";sdk=" KILN_SDK_VERSION
           ";toolchain=" KILN_TOOLCHAIN "}";
}

static inline uint32_t kiln_abi_version(void) { return KILN_ABI_VERSION; }
static inline const char *kiln_sdk_version(void) { return KILN_SDK_VERSION; }
static inline const char *kiln_toolchain(void) { return KILN_TOOLCHAIN; }

#endif
