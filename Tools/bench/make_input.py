"""Write the benchmark input: a ~1 GB f32 safetensors file with Llama-7B-like tensors.

Usage: make_input.py OUT.safetensors

One full decoder layer (attention q/k/v/o [4096, 4096], MLP gate/up/down [11008, 4096] /
[4096, 11008], two RMS norms [4096]) plus the q/k/v projections of a second layer and the
final norm: 14 tensors, 1.01 GB, largest 180 MB. Values are N(0, 0.02) from a fixed seed,
norms around 1.0; the final norm's last elements hold NaN, ±inf, ±0, subnormals and exact
bf16 rounding ties so the cast is checked on the cases that differ between implementations.

Prints one JSON line: {"bytes", "tensors", "largest_name", "largest_bytes"}.
"""

import json
import sys

import numpy as np
from safetensors.numpy import save_file

SEED = 20240601
HIDDEN, INTERMEDIATE = 4096, 11008


def shapes():
    """(name, shape) in file order: layer 0 complete, layer 1 attention q/k/v, final norm."""
    out = []
    for layer, parts in ((0, "qkvo"), (1, "qkv")):
        p = f"model.layers.{layer}"
        out.append((f"{p}.input_layernorm.weight", (HIDDEN,)))
        for x in parts:
            out.append((f"{p}.self_attn.{x}_proj.weight", (HIDDEN, HIDDEN)))
        if layer == 0:
            out.append((f"{p}.post_attention_layernorm.weight", (HIDDEN,)))
            out.append((f"{p}.mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN)))
            out.append((f"{p}.mlp.up_proj.weight", (INTERMEDIATE, HIDDEN)))
            out.append((f"{p}.mlp.down_proj.weight", (HIDDEN, INTERMEDIATE)))
    out.append(("model.norm.weight", (HIDDEN,)))
    return out


def specials():
    """f32 bit patterns whose bf16 rounding is easy to get wrong."""
    bits = [
        0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF,  # NaNs (quiet, negative, signalling)
        0x7F800000, 0xFF800000, 0x00000000, 0x80000000,  # ±inf, ±0
        0x00000001, 0x807FFFFF, 0x00008000, 0x00018000,  # subnormals, subnormal ties
        0x3F808000, 0x3F818000, 0xBF808000, 0x7F7FFFFF,  # ties to even (down, up), max f32
        0x7F7F8000, 0x3F807FFF, 0x3F808001,              # tie that overflows to inf, around a tie
    ]
    return np.array(bits, dtype=np.uint32).view(np.float32)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_input.py OUT.safetensors")
    rng = np.random.default_rng(SEED)
    tensors = {}
    for name, shape in shapes():
        if len(shape) == 1:
            t = (1.0 + 0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        else:
            t = rng.standard_normal(shape, dtype=np.float32)
            t *= np.float32(0.02)
        tensors[name] = t
    s = specials()
    tensors["model.norm.weight"][-len(s):] = s
    save_file(tensors, sys.argv[1])
    largest = max(tensors, key=lambda k: tensors[k].nbytes)
    print(json.dumps({
        "bytes": sum(t.nbytes for t in tensors.values()),
        "tensors": len(tensors),
        "largest_name": largest,
        "largest_bytes": tensors[largest].nbytes,
    }))


if __name__ == "__main__":
    main()
