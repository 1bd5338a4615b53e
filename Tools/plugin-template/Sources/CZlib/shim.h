// zlib for the npz plugin: the system header, plus wrappers for the function-like
// macros Swift cannot import (inflateInit2 expands to inflateInit2_ with the version
// string and the struct size of the header the caller was compiled against).
#ifndef KILN_NPZ_CZLIB_SHIM_H
#define KILN_NPZ_CZLIB_SHIM_H

#include <zlib.h>

/// inflateInit2(stream, -MAX_WBITS): a raw deflate stream (zip members have no zlib header).
static inline int kiln_npz_inflate_init_raw(z_stream *stream) {
    return inflateInit2(stream, -MAX_WBITS);
}

#endif
