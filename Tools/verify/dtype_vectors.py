#!/usr/bin/env python3
"""Reference vectors for Kiln's dtype conversions, computed by numpy + ml_dtypes.

Usage: dtype_vectors.py OUT_DIR

Writes raw little-endian files (no headers) into OUT_DIR:

  src_<T>.bin         the source elements of type T, as raw bits
                      (f64 f32 f16 bf16 f8e4m3fn f8e5m2 i64 i32 i16 i8 u8 bool)
  <S>__<D>.bin        the bits of src_<S>.bin converted to float type D with
                      `.astype(D)`, for every source S != D
  f32__f8e4m3fn_sat.bin
                      src_f32 with np.clip(x, -448, 448) before `.astype(float8_e4m3fn)`
                      (the saturating quantizer cast)
  versions.txt        numpy and ml_dtypes versions used

Names are Kiln's (`DType.name`). Sources: every f16 / bf16 bit pattern, all 256
codes of each fp8 type, >= 1M f32 inputs (NaNs with many payloads and both
signs, infinities, zeros, f32 subnormals, every representable value of each
narrow type with its f32 neighbours, exact ties between neighbours and the
values one f32 ulp either side, the overflow boundaries, and random bit
patterns), f64 inputs (the f32 set widened plus double-only cases), and
integer edges plus random integers. Deterministic: fixed seed.
"""

import os
import sys

# Other tools live beside this script (e.g. tokenize.py); its directory must not shadow stdlib modules.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import warnings  # noqa: E402

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402

SEED = 20240521

FLOATS = {
    "f64": np.float64,
    "f32": np.float32,
    "f16": np.float16,
    "bf16": ml_dtypes.bfloat16,
    "f8e4m3fn": ml_dtypes.float8_e4m3fn,
    "f8e5m2": ml_dtypes.float8_e5m2,
}
INTS = {
    "i64": np.int64,
    "i32": np.int32,
    "i16": np.int16,
    "i8": np.int8,
    "u8": np.uint8,
    "bool": np.bool_,
}
BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def bits_of(a):
    """The raw bits of `a` as an unsigned integer array of the same width."""
    return a.view(BITS[a.dtype.itemsize])


def as_float(bits, dtype):
    return np.asarray(bits, dtype=BITS[np.dtype(dtype).itemsize]).view(dtype)


def f32_bits(values):
    return bits_of(np.asarray(values, dtype=np.float64).astype(np.float32))


def neighbours(b, steps=(-2, -1, 0, 1, 2)):
    """f32 bit patterns `b` moved by a few ulps (magnitude bits only; sign kept)."""
    b = np.asarray(b, dtype=np.int64)
    sign, mag = b & 0x80000000, b & 0x7FFFFFFF
    out = [sign | np.clip(mag + s, 0, 0x7FFFFFFF) for s in steps]
    return np.concatenate(out).astype(np.uint32)


def narrow_type_cases(dtype):
    """Every finite value of `dtype`, the ties between neighbours, ±ulps of each."""
    n = np.dtype(dtype).itemsize * 8
    codes = np.arange(2 ** n, dtype=BITS[n // 8])
    vals = codes.view(dtype).astype(np.float32)
    finite = np.unique(vals[np.isfinite(vals)].astype(np.float64))  # sorted, ±0 merged
    ties = (finite[:-1] + finite[1:]) / 2  # exact in f64; exact in f32 for these types
    top = finite[-1]
    ulp_top = top - finite[-2]
    beyond = np.array([top + ulp_top / 2, top + ulp_top, top + 2 * ulp_top])
    base = np.concatenate([finite, ties, beyond, -beyond])
    return neighbours(f32_bits(base), steps=(-1, 0, 1))


def f32_inputs(rng):
    parts = []
    # Zeros, infinities, extremes of f32.
    parts.append(np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0xFF7FFFFF,
                           0x00800000, 0x80800000, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF],
                          dtype=np.uint32))
    # NaNs: both signs, quiet and signalling, payloads in every bit position and random.
    payloads = [1, 2, 3, 0x1FFF, 0x2000, 0x2001, 0xFFFF, 0x10000, 0x100000, 0x200000, 0x3FFFFF,
                0x400000, 0x400001, 0x401000, 0x7FE000, 0x7FFFFF] + [1 << k for k in range(23)]
    payloads += list(rng.integers(1, 1 << 23, size=2000))
    nan = 0x7F800000 | np.array(payloads, dtype=np.uint32)
    parts += [nan, nan | 0x80000000]
    # f32 subnormals: the smallest, the largest, random.
    sub = np.concatenate([np.arange(1, 4096), np.arange(0x7FF000, 0x800000),
                          rng.integers(1, 0x800000, size=20000)]).astype(np.uint32)
    parts += [sub, sub | 0x80000000]
    # Each narrow type: all values, ties, ±ulps; its subnormal range densely.
    for t in (np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2):
        parts.append(narrow_type_cases(t))
    # Saturation / overflow boundaries named in DESIGN.md.
    edges = [448, 464, 480, 57344, 61440, 65504, 65520, 65536, 3.3895313892515355e38]
    parts.append(neighbours(f32_bits(edges + [-e for e in edges]), steps=range(-4, 5)))
    # Subnormal ranges of the narrow types, densely (f16: 2^-24..2^-14, fp8: 2^-17..2^-6).
    lo, hi = f32_bits([2.0 ** -26, 2.0 ** -13])
    parts.append(np.arange(lo, hi, 1021, dtype=np.uint32))
    # Random bit patterns, and random "weights" around typical magnitudes.
    parts.append(rng.integers(0, 1 << 32, size=300_000, dtype=np.uint64).astype(np.uint32))
    w = rng.standard_normal(200_000) * np.exp2(rng.integers(-20, 12, size=200_000))
    parts.append(f32_bits(w))
    return np.concatenate(parts).astype(np.uint32)


def f64_inputs(rng, f32):
    parts = [rng.choice(f32, size=300_000, replace=False).view(np.float32).astype(np.float64).view(np.uint64)]
    # NaNs whose payload lives only in the low bits (lost when narrowed to f32).
    low = np.array([1, 2, 0x1FFFFFFF, 0x20000000, 1 << 51, (1 << 51) | 1, (1 << 52) - 1], dtype=np.uint64)
    nan = np.uint64(0x7FF0000000000000) | low
    parts += [nan, nan | np.uint64(1 << 63)]
    # Ties of each narrow type nudged by less than an f32 ulp (double rounding), beyond-f32 magnitudes.
    ties = []
    for t in (np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2):
        n = np.dtype(t).itemsize * 8
        v = np.arange(2 ** n, dtype=BITS[n // 8]).view(t).astype(np.float64)
        v = np.unique(v[np.isfinite(v)])
        ties.append((v[:-1] + v[1:]) / 2)
    ties = np.concatenate(ties)
    for eps in (2.0 ** -40,):
        parts += [(ties * (1 + eps)).view(np.uint64), (ties * (1 - eps)).view(np.uint64)]
    big = np.array([1e39, 1e300, 3.4028235677973366e38, 3.402823669209385e38, 1e-46, 1e-300,
                    2.0 ** -149 / 2, 2.0 ** -149 * 0.75, 65519.99, 65520.0, 464.0000001, 61439.9999],
                   dtype=np.float64)
    parts += [big.view(np.uint64), (-big).view(np.uint64)]
    parts.append(rng.integers(0, 1 << 64, size=100_000, dtype=np.uint64))
    return np.concatenate(parts).astype(np.uint64)


def int_inputs(rng):
    edges = [0, 1, -1, 2, 127, -128, 255, 448, 464, 465, 480, 2047, 2049, 57344, 61439, 61440,
             65504, 65519, 65520, 65536, (1 << 24) - 1, 1 << 24, (1 << 24) + 1, (1 << 24) + 3,
             (1 << 31) - 1, -(1 << 31), (1 << 53) + 1, (1 << 63) - 1, -(1 << 63)]
    edges = np.array(edges + [-e for e in edges[:-1]], dtype=np.int64)
    # Random integers at every magnitude (so every rounding position is hit).
    mags = rng.integers(0, 63, size=100_000)
    rand = rng.integers(0, 1 << 62, size=100_000, dtype=np.int64) >> (62 - mags).astype(np.int64)
    rand = np.where(rng.integers(0, 2, size=100_000) == 1, -rand, rand)
    i64 = np.concatenate([edges, rand])

    def wrap(dtype):
        info = np.iinfo(dtype)
        keep = (i64 >= info.min) & (i64 <= info.max)
        return np.concatenate([np.array([info.min, info.max]), i64[keep]]).astype(dtype)

    return {
        "i64": i64,
        "i32": wrap(np.int32),
        "i16": np.arange(-(1 << 15), 1 << 15, dtype=np.int16),
        "i8": np.arange(-128, 128, dtype=np.int8),
        "u8": np.arange(256, dtype=np.uint8),
        "bool": np.array([False, True, True, False, True], dtype=np.bool_),
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: dtype_vectors.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    warnings.simplefilter("ignore")  # overflow / invalid-cast warnings are the point here

    f32 = f32_inputs(rng)
    sources = {
        "f64": as_float(f64_inputs(rng, f32), np.float64),
        "f32": as_float(f32, np.float32),
        "f16": as_float(np.arange(1 << 16), np.float16),
        "bf16": as_float(np.arange(1 << 16), ml_dtypes.bfloat16),
        "f8e4m3fn": as_float(np.arange(256), ml_dtypes.float8_e4m3fn),
        "f8e5m2": as_float(np.arange(256), ml_dtypes.float8_e5m2),
    }
    sources.update(int_inputs(rng))

    def write(name, array):
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())

    with np.errstate(all="ignore"):
        for s, a in sources.items():
            write("src_" + s, bits_of(a) if s in FLOATS else a)
            for d, t in FLOATS.items():
                if d != s:
                    write(f"{s}__{d}", bits_of(a.astype(t)))
        sat = np.clip(sources["f32"], np.float32(-448), np.float32(448)).astype(ml_dtypes.float8_e4m3fn)
        write("f32__f8e4m3fn_sat", bits_of(sat))
    with open(os.path.join(out, "versions.txt"), "w") as f:
        f.write(f"numpy {np.__version__}\nml_dtypes {ml_dtypes.__version__}\n")


if __name__ == "__main__":
    main()
