"""Check that two safetensors files hold the same tensors, bit for bit.

Usage: compare.py LABEL A.safetensors B.safetensors

Loads each tensor of both files with the venv's safetensors (one at a time), and compares
names, dtypes, shapes and payloads with numpy `array_equal` on unsigned-integer views of
the same width (bf16 → uint16), so NaN payloads and signed zeros count. Tensor order and
header layout may differ. Prints `LABEL: OK (...)` or `LABEL: MISMATCH (...)`; exits 1 on
mismatch.
"""

import sys

import ml_dtypes  # noqa: F401 - registers the bfloat16 dtype name safetensors asks numpy for
import numpy as np
from safetensors import safe_open


def bits(t):
    return t.view(f"u{t.dtype.itemsize}") if t.dtype.itemsize in (1, 2, 4, 8) else t.view(np.uint8)


def compare(a_path, b_path):
    with safe_open(a_path, framework="np") as a, safe_open(b_path, framework="np") as b:
        ka, kb = set(a.keys()), set(b.keys())
        if ka != kb:
            return f"tensor names differ: only in first {sorted(ka - kb)[:3]}, only in second {sorted(kb - ka)[:3]}"
        elements = 0
        for name in sorted(ka):
            x, y = a.get_tensor(name), b.get_tensor(name)
            if x.dtype != y.dtype or x.shape != y.shape:
                return f"{name}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
            bx, by = bits(x), bits(y)
            if not np.array_equal(bx, by):
                diff = np.flatnonzero(bx.reshape(-1) != by.reshape(-1))
                i = int(diff[0])
                return (f"{name}: {diff.size} of {x.size} elements differ, first at {i}: "
                        f"0x{int(bx.reshape(-1)[i]):x} vs 0x{int(by.reshape(-1)[i]):x}")
            elements += x.size
    return None, len(ka), elements


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: compare.py LABEL A.safetensors B.safetensors")
    label, a, b = sys.argv[1:]
    try:
        result = compare(a, b)
    except Exception as e:  # noqa: BLE001 - an unreadable output is a failed check, reported as one
        result = f"cannot compare: {type(e).__name__}: {e}"
    if isinstance(result, str):
        print(f"{label}: MISMATCH ({result})")
        sys.exit(1)
    _, tensors, elements = result
    print(f"{label}: OK ({tensors} tensors, {elements:,} elements bit-identical)")


if __name__ == "__main__":
    main()
