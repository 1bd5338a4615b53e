#!/usr/bin/env python3
"""Cross-checks of Kiln's safetensors output with the reference `safetensors` + numpy + ml_dtypes.

  safetensors_check.py summary PATH            JSON {tensors: {name: {dtype, shape}}, parameters}
  safetensors_check.py cast SRC OUT DTYPE      every float tensor of OUT == SRC.astype(DTYPE), bit for bit
  safetensors_check.py equal A B               same names, dtypes, shapes and tensor bytes

PATH/SRC/OUT: a .safetensors file or a folder (single file or model.safetensors.index.json shards).
Exit 0 and a JSON line on success; exit 1 with a JSON line naming the first difference otherwise.
"""
import json
import os
import sys

import ml_dtypes
import numpy as np
from safetensors import safe_open


def files(path):
    if os.path.isfile(path):
        return [path]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(path, s) for s in shards]
    return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".safetensors"))


def tensors(path):
    """name -> (dtype name, shape, loader)"""
    out = {}
    for p in files(path):
        f = safe_open(p, framework="np")
        for k in f.keys():
            s = f.get_slice(k)
            out[k] = (s.get_dtype(), list(s.get_shape()), (lambda f=f, k=k: f.get_tensor(k)))
    return out


def fail(**info):
    print(json.dumps({"ok": False, **info}))
    sys.exit(1)


def main():
    cmd = sys.argv[1]
    if cmd == "summary":
        ts = tensors(sys.argv[2])
        params = sum(int(np.prod(s, dtype=np.int64)) for _, s, _ in ts.values())
        print(json.dumps({"tensors": {k: {"dtype": d, "shape": s} for k, (d, s, _) in ts.items()}, "parameters": params}))
    elif cmd == "cast":
        src, out, dtype = tensors(sys.argv[2]), tensors(sys.argv[3]), sys.argv[4]
        target = {"bf16": ml_dtypes.bfloat16, "f16": np.float16, "f32": np.float32}[dtype]
        if sorted(src) != sorted(out):
            fail(reason="different tensor names")
        checked = 0
        for k, (d, shape, load) in src.items():
            a = load()
            if a.dtype.kind == "f" or a.dtype == ml_dtypes.bfloat16:
                a = a.astype(target)
            b = out[k][2]()
            if a.dtype != b.dtype or a.shape != b.shape:
                fail(tensor=k, expected=f"{a.dtype}{list(a.shape)}", found=f"{b.dtype}{list(b.shape)}")
            if a.tobytes() != b.tobytes():
                av = a.view(np.uint8).reshape(-1)
                bv = b.view(np.uint8).reshape(-1)
                i = int(np.nonzero(av != bv)[0][0])
                fail(tensor=k, first_differing_byte=i)
            checked += a.size
        print(json.dumps({"ok": True, "tensors": len(src), "elements": checked}))
    elif cmd == "equal":
        a, b = tensors(sys.argv[2]), tensors(sys.argv[3])
        if sorted(a) != sorted(b):
            fail(reason="different tensor names", only_a=sorted(set(a) - set(b))[:5], only_b=sorted(set(b) - set(a))[:5])
        for k in a:
            if a[k][:2] != b[k][:2]:
                fail(tensor=k, a=a[k][:2], b=b[k][:2])
            if a[k][2]().tobytes() != b[k][2]().tobytes():
                fail(tensor=k, reason="bytes differ")
        print(json.dumps({"ok": True, "tensors": len(a)}))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
