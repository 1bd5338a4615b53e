"""The Python contenders: cast every float tensor of a safetensors file to bf16 (torch-free).

Usage: python_cast.py natural|stream IN.safetensors OUT.safetensors

natural  The way most scripts do it: `load_file` (every tensor in memory), `astype(bfloat16)`
         on each, `save_file`. Peak memory ≈ whole input + whole output.
stream   The fastest plain-Python way we know: `safe_open`, one tensor at a time, cast and
         appended to the output after a header written up front (same layout rules as
         safetensors: 8-byte length, JSON padded with spaces to 8 bytes). Peak memory ≈ the
         largest tensor in f32 + bf16 (its RSS also counts the input pages safetensors
         maps, about the whole input; they are page cache, not allocations).
"""

import json
import sys

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)
FLOATS = {"F64", "F32", "F16", "BF16"}


def natural(src, dst):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(src)
    out = {k: (v.astype(BF16) if v.dtype.kind == "f" or v.dtype == BF16 else v) for k, v in tensors.items()}
    save_file(out, dst)


def stream(src, dst):
    from safetensors import safe_open

    with safe_open(src, framework="np") as f:
        names = list(f.keys())
        specs, offset = {}, 0
        for name in names:
            s = f.get_slice(name)
            dtype, shape = s.get_dtype(), s.get_shape()
            if dtype in FLOATS:
                dtype = "BF16"
            count = int(np.prod(shape, dtype=np.int64))
            size = count * (2 if dtype == "BF16" else np.dtype(_NP[dtype]).itemsize)
            specs[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
        meta = f.metadata()
        if meta:
            specs = {"__metadata__": meta, **specs}
        header = json.dumps(specs, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)
        with open(dst, "wb") as out:
            out.write(len(header).to_bytes(8, "little"))
            out.write(header)
            for name in names:
                t = f.get_tensor(name)
                if t.dtype.kind == "f" or t.dtype == BF16:
                    t = t.astype(BF16)
                out.write(np.ascontiguousarray(t).reshape(-1).view(np.uint8))


_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("natural", "stream"):
        sys.exit("usage: python_cast.py natural|stream IN.safetensors OUT.safetensors")
    with np.errstate(invalid="ignore"):  # NaN → bf16 is expected, not worth a warning
        {"natural": natural, "stream": stream}[sys.argv[1]](sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
