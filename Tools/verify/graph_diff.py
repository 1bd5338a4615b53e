"""Differential testing of Kiln's graph interpreter against onnxruntime (CPU).

  graph_diff.py --kiln .build/release/kiln --count 40 --seed 1 [--ops Slice,Resize] [--keep DIR]

Generates, from the seed alone, COUNT small random ONNX models per operator the interpreter
supports (one or two nodes each, spec-valid attributes and shapes, opsets 11-21, size-0 / size-1
dims, negative axes, broadcasting, int / bool inputs where allowed, ±0, NaN, ±Inf and large
magnitudes for element-wise ops). Each model runs in onnxruntime; then `kiln run` runs it on the same
.npz and the outputs are compared: shape, dtype class (float / int / bool), NaN positions, ±Inf
positions, and finite values within atol + rtol × max |onnxruntime output|.

Outcomes per model: agree; mismatch; kiln-refused (exit 1 on a model onnxruntime ran: the reason is
listed); crash (any other exit status or a signal: always a bug); ort-refused (onnxruntime rejected
the model: Kiln refusing it too is fine, Kiln running it is listed); ort-deviates (a mismatch where
Kiln agrees with the ONNX reference implementation, onnx.reference: listed); ort-no-kernel (onnxruntime's CPU
provider has no kernel for that type / opset: nothing to compare with). Models that are not `agree` are
kept under --keep DIR (model NAME.onnx, inputs NAME.npz, a NAME.txt with the details) for replay:
  kiln run DIR/NAME.onnx --inputs DIR/NAME.npz --output /tmp/out.npz
Exit status: 1 when there is a crash or a mismatch, else 0.
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT_SPECIALS = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e30, -1e30, 3e38, 1e-40, -1e-45, 88.7, -104.0, 1.0, -1.0, 0.5],
                          np.float32)
# For ops that sum (pools, reductions, normalizations): huge finite values would only measure f32 summation order.
NONFINITE_SPECIALS = np.array([0.0, -0.0, np.nan, np.inf, -np.inf], np.float32)
# Pools: no -Inf, as onnxruntime's max pools start from -FLT_MAX (a window of -Inf gives -3.4e38 there, -Inf in Kiln
# and onnx.reference); no NaN, whose fate in a max pool is implementation-defined (onnxruntime keeps or drops it by
# its place in the window, onnx.reference differs again; Kiln propagates it, see GraphInterpreterTests.maxPoolNaN).
POOL_SPECIALS = np.array([0.0, -0.0, np.inf, 1e30], np.float32)
ELEMENT_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
                 np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.int64): TensorProto.INT64,
                 np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int8): TensorProto.INT8,
                 np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.bool_): TensorProto.BOOL}


class Case:
    """One model under construction: nodes, graph inputs with their values, initializers."""

    def __init__(self, rng, opset):
        self.rng, self.opset = rng, opset
        self.nodes, self.inputs, self.feeds, self.weights, self.outputs = [], [], {}, [], []

    def node(self, op, inputs, outputs=("y",), **attrs):
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), **attrs))
        return self

    def feed(self, name, value):
        value = np.asarray(value)
        self.inputs.append(helper.make_tensor_value_info(name, ELEMENT_TYPES[value.dtype], list(value.shape)))
        self.feeds[name] = value
        return name

    def const(self, name, value):
        self.weights.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def model(self, name, outputs=("y",)):
        graph = helper.make_graph(self.nodes, name, self.inputs, [helper.make_empty_tensor_value_info(o) for o in outputs],
                                  initializer=self.weights)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 8 if self.opset <= 18 else 9 if self.opset <= 20 else 10
        return m

    # Random pieces.
    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p):
        return bool(self.rng.random() < p)

    def dim(self, zero=0.08):
        return 0 if self.chance(zero) else int(self.rng.choice([1, 1, 2, 3, 4, 5, 7]))

    def shape(self, lo=0, hi=4, zero=0.08):
        return [self.dim(zero) for _ in range(int(self.rng.integers(lo, hi + 1)))]

    def floats(self, shape, specials=False, scale=None, dtype=np.float32):
        scale = scale if scale is not None else float(self.pick([1.0, 1.0, 3.0, 1e-3, 1e4]))
        v = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        if specials and v.size and self.chance(0.6):
            mask = self.rng.random(v.shape) < 0.3
            pool = {"nonfinite": NONFINITE_SPECIALS, "pool": POOL_SPECIALS}.get(specials, FLOAT_SPECIALS)
            v = np.where(mask, self.rng.choice(pool, size=v.shape), v).astype(np.float32)
        with np.errstate(over="ignore"):        # specials beyond float16's range become ±Inf
            return v.astype(dtype)

    def ints(self, shape, lo=-20, hi=20, dtype=np.int64):
        return self.rng.integers(lo, hi + 1, size=shape).astype(dtype)

    def data(self, shape, kinds=("f32",), specials=False):
        kind = self.pick(list(kinds))
        if kind == "f32":
            return self.floats(shape, specials)
        if kind == "f16":
            return self.floats(shape, specials, scale=1.0, dtype=np.float16)
        if kind == "f64":
            return self.floats(shape, False, scale=1.0, dtype=np.float64)
        if kind == "bool":
            return self.rng.random(shape) < 0.5
        if kind == "i8":
            return self.ints(shape, -128, 127, np.int8)
        if kind == "u8":
            return self.ints(shape, 0, 255, np.uint8)
        return self.ints(shape, dtype=np.int32 if kind == "i32" else np.int64)

    def broadcastable(self, shape):
        """A shape that broadcasts with `shape` (trailing dims equal or 1, maybe shorter or longer)."""
        out = [d if not self.chance(0.3) else 1 for d in shape]
        if out and self.chance(0.3):
            out = out[int(self.rng.integers(len(out) + 1)):]
        if len(out) == len(shape) and self.chance(0.15):
            out = [self.dim()] + out
        return out

    def opset_between(self, lo, hi=21):
        return int(self.rng.integers(lo, hi + 1))


# ---------------------------------------------------------------------------------------------
# Generators: fn(case) -> output names (default ("y",)); the case's opset is chosen by the generator.

UNARY = ["Relu", "Sigmoid", "Sqrt", "Erf", "Exp", "Tanh", "Neg", "Abs", "Reciprocal", "Cos", "Sin", "Log", "HardSwish"]


def unary(op):
    def make(c):
        c.opset = c.opset_between(14 if op == "HardSwish" else 11)
        kinds = ["f32"] * 6 + ["f16", "f64"] + (["i32", "i64", "i8"] if op in ("Neg", "Abs", "Relu") else [])
        c.node(op, [c.feed("x", c.data(c.shape(), kinds, specials=True))])
    return make


def hard_sigmoid(c):
    c.opset = c.opset_between(11)
    attrs = {"alpha": float(c.rng.uniform(-1, 1)), "beta": float(c.rng.uniform(-1, 1))} if c.chance(0.7) else {}
    c.node("HardSigmoid", [c.feed("x", c.data(c.shape(), ["f32", "f32", "f16"], specials=True))], **attrs)


def leaky_relu(c):
    c.opset = c.opset_between(11)
    attrs = {"alpha": float(c.pick([0.01, 0.2, -0.5, 2.0, 0.0]))} if c.chance(0.7) else {}
    c.node("LeakyRelu", [c.feed("x", c.data(c.shape(), ["f32", "f32", "f16"], specials=True))], **attrs)


def binary(op):
    def make(c):
        c.opset = c.opset_between(11)
        a_shape = c.shape()
        b_shape = c.broadcastable(a_shape)
        if c.chance(0.5):
            a_shape, b_shape = b_shape, a_shape
        kinds = ["f32"] * 5 + ["i64", "i32"] + (["bool"] if op == "Equal" else []) + (["f16"] if op != "Pow" else [])
        kind = c.pick(kinds)
        a = c.data(a_shape, [kind], specials=True)
        b = c.data(b_shape, [kind], specials=True)
        if op == "Div" and kind in ("i64", "i32"):
            b = np.where(b == 0, 3, b).astype(b.dtype)   # integer division by zero is undefined (onnxruntime traps)
        if op == "Pow":
            if kind in ("i64", "i32"):
                a, b = c.ints(a_shape, -4, 4, a.dtype), c.ints(b_shape, 0, 6, a.dtype)
            elif c.chance(0.3):
                b = c.ints(b_shape, -3, 4, c.pick([np.int64, np.int32]))   # mixed types: float base, integer exponent
            elif c.chance(0.5):
                b = c.rng.choice(np.array([2.0, 0.5, 3.0, -1.0, 0.0, -2.0], np.float32), size=b_shape).astype(np.float32)
        c.node(op, [c.feed("a", a), c.feed("b", b)])
    return make


def where(c):
    c.opset = c.opset_between(11)
    shape = c.shape()
    kind = c.pick(["f32", "f32", "i64", "i32", "bool"])
    c.node("Where", [c.feed("cond", c.data(c.broadcastable(shape), ["bool"])), c.feed("a", c.data(c.broadcastable(shape), [kind], True)),
                     c.feed("b", c.data(shape, [kind], True))])


def cast(c):
    c.opset = c.opset_between(11)
    source = c.pick(["f32", "f32", "f16", "f64", "i64", "i32", "i8", "u8", "bool"])
    to = c.pick([TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT32,
                 TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL])
    integer_target = to in (TensorProto.INT64, TensorProto.INT32, TensorProto.INT8, TensorProto.UINT8)
    x = c.data(c.shape(), [source], specials=not integer_target)
    if integer_target and x.dtype.kind == "f":
        # Out-of-range float → int is undefined: keep values inside the target's range.
        x = np.clip(np.nan_to_num(x.astype(np.float32) * 40), 0 if to == TensorProto.UINT8 else -120, 120).astype(x.dtype)
    c.node("Cast", [c.feed("x", x)], to=to)


def clip(c):
    c.opset = c.opset_between(6 if c.chance(0.2) else 11)
    kind = "f32" if c.opset < 12 else c.pick(["f32", "f32", "i64", "i32", "f16"])
    x = c.data(c.shape(), [kind], specials=True)
    lo, hi = sorted(c.rng.uniform(-3, 3, 2).tolist())
    if c.chance(0.15):
        lo, hi = hi, lo                                   # min > max
    if c.opset < 11:
        attrs = {}
        if c.chance(0.8):
            attrs["min"] = lo
        if c.chance(0.8):
            attrs["max"] = hi
        c.node("Clip", [c.feed("x", x)], **attrs)
        return
    names = ["x"]
    c.feed("x", x)
    for name, v in (("min", lo), ("max", hi)):
        if c.chance(0.75):
            names.append(c.const(name, np.array(v * (10 if x.dtype.kind == "i" else 1)).astype(x.dtype)))
        else:
            names.append("")
    while names[-1] == "":
        names.pop()
    c.node("Clip", names)


def identity(c):
    c.opset = c.opset_between(11)
    c.node("Identity", [c.feed("x", c.data(c.shape(), ["f32", "i64", "bool", "i32"], True))])


def any_kind(c):
    return c.pick(["f32", "f32", "f32", "i64", "i32", "bool"])


def reshape(c):
    c.opset = c.opset_between(11)
    shape = c.shape(0, 4)
    x = c.data(shape, [any_kind(c)])
    n = x.size
    allowzero = c.opset >= 14 and c.chance(0.3)
    # A target: the element count factored, with -1 and 0 (copy) entries mixed in.
    target = []
    rest = n
    for d in shape[:2] if c.chance(0.4) else []:
        target.append(0 if not allowzero else d)
        rest = rest // d if d else 0
    factors = [f for f in (1, 2, 3, 4, 5, 7) if rest and rest % f == 0]
    while rest > 1 and factors:
        f = c.pick([f for f in factors if rest % f == 0 and f > 1] or [rest])
        target.append(f)
        rest //= f
        if len(target) > 5:
            break
    if rest != 1 or n == 0:
        target.append(rest if not (n == 0 and not allowzero) else 0)
    if target and (n > 0 or c.chance(0.3)) and c.chance(0.5):
        target[int(c.rng.integers(len(target)))] = -1
    if c.chance(0.1):
        target = [-1]
    attrs = {"allowzero": 1} if allowzero else {}
    c.node("Reshape", [c.feed("x", x), c.const("shape", np.array(target, np.int64))], **attrs)


def flatten(c):
    c.opset = c.opset_between(11)
    shape = c.shape(1, 4)
    axis = int(c.rng.integers(-len(shape), len(shape) + 1))
    c.node("Flatten", [c.feed("x", c.data(shape, [any_kind(c)]))], axis=axis)


def transpose(c):
    c.opset = c.opset_between(11)
    shape = c.shape(0, 5)
    attrs = {"perm": c.rng.permutation(len(shape)).tolist()} if shape and c.chance(0.8) else {}
    c.node("Transpose", [c.feed("x", c.data(shape, [any_kind(c)]))], **attrs)


def axes_input(c, name, axes, since):
    """Axes as an attribute (opset < since) or an int64 input; returns (input names, attributes)."""
    if axes is None:
        return [], {}
    if c.opset < since:
        return [], {"axes": axes}
    return [c.const(name, np.array(axes, np.int64))], {}


def squeeze(c):
    c.opset = c.opset_between(11)
    shape = c.shape(0, 5)
    ones = [i for i, d in enumerate(shape) if d == 1]
    axes = None
    if ones and c.chance(0.7):
        chosen = [i for i in ones if c.chance(0.6)] or ones[:1]
        axes = [i - len(shape) if c.chance(0.4) else i for i in chosen]
    extra, attrs = axes_input(c, "axes", axes, 13)
    c.node("Squeeze", [c.feed("x", c.data(shape, [any_kind(c)]))] + extra, **attrs)


def unsqueeze(c):
    c.opset = c.opset_between(11)
    shape = c.shape(0, 4)
    rank = len(shape) + int(c.rng.integers(1, 3))
    chosen = sorted(c.rng.choice(rank, size=rank - len(shape), replace=False).tolist())
    axes = [a - rank if c.chance(0.4) else a for a in chosen]
    extra, attrs = axes_input(c, "axes", axes, 13)
    c.node("Unsqueeze", [c.feed("x", c.data(shape, [any_kind(c)]))] + extra, **attrs)


def concat(c):
    c.opset = c.opset_between(11)
    shape = c.shape(1, 4)
    axis = int(c.rng.integers(-len(shape), len(shape)))
    kind = any_kind(c)
    names = []
    for k in range(int(c.rng.integers(1, 4))):
        s = list(shape)
        s[axis] = c.dim(zero=0.2)
        names.append(c.feed(f"x{k}", c.data(s, [kind])))
    c.node("Concat", names, axis=axis)


def slice_op(c):
    c.opset = c.opset_between(11)
    shape = c.shape(1, 4)
    x = c.data(shape, [any_kind(c)])
    count = int(c.rng.integers(1, len(shape) + 1))
    axes = c.rng.choice(len(shape), size=count, replace=False).tolist()
    big = [2**63 - 1, -2**63, 2**31, -2**31 - 5, 1000]

    def bound(n):
        return int(c.pick(big)) if c.chance(0.15) else int(c.rng.integers(-n - 2, n + 3))
    starts = [bound(shape[a]) for a in axes]
    ends = [bound(shape[a]) for a in axes]
    steps = [int(c.pick([1, 1, 2, 3, -1, -2, -3, 2**62, -2**62])) for _ in axes]
    names = [c.feed("x", x), c.const("starts", np.array(starts, np.int64)), c.const("ends", np.array(ends, np.int64))]
    if c.chance(0.8) or any(s != 1 for s in steps):
        names.append(c.const("axes", np.array([a - len(shape) if c.chance(0.3) else a for a in axes], np.int64)))
        if any(s != 1 for s in steps) or c.chance(0.5):
            names.append(c.const("steps", np.array(steps, np.int64)))
    elif sorted(axes) != list(range(count)):
        names.append(c.const("axes", np.array(axes, np.int64)))
    c.node("Slice", names)


def split(c):
    c.opset = c.opset_between(11)
    shape = c.shape(1, 4)
    axis = int(c.rng.integers(-len(shape), len(shape)))
    n = shape[axis]
    parts = int(c.rng.integers(1, 4))
    outputs = [f"y{k}" for k in range(parts)]
    names, attrs = [c.feed("x", c.data(shape, [any_kind(c)]))], {"axis": axis}
    if c.chance(0.5):
        cuts = sorted(c.rng.integers(0, n + 1, size=parts - 1).tolist())
        sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]
        if c.opset < 13:
            attrs["split"] = sizes
        else:
            names.append(c.const("split", np.array(sizes, np.int64)))
    elif c.opset >= 18:
        attrs["num_outputs"] = parts
    c.node("Split", names, outputs, **attrs)
    return outputs


def shape_op(c):
    c.opset = c.opset_between(11)
    shape = c.shape(0, 5)
    attrs = {}
    if c.opset >= 15 and c.chance(0.6):
        r = len(shape)
        if c.chance(0.7):
            attrs["start"] = int(c.rng.integers(-r - 2, r + 3))
        if c.chance(0.7):
            attrs["end"] = int(c.rng.integers(-r - 2, r + 3))
    c.node("Shape", [c.feed("x", c.data(shape, [any_kind(c)]))], **attrs)


def gather(c):
    c.opset = c.opset_between(11)
    shape = c.shape(1, 4)
    axis = int(c.rng.integers(-len(shape), len(shape)))
    n = shape[axis]
    ishape = c.shape(0, 2)
    idx = c.rng.integers(-n, n, size=ishape) if n else np.zeros(ishape, np.int64)
    if n == 0 and idx.size:
        ishape = [0]
        idx = np.zeros(ishape, np.int64)
    if idx.size and c.chance(0.05):
        idx.ravel()[0] = n + 3                     # out of range: both should refuse
    idx = idx.astype(c.pick([np.int64, np.int32]))
    indices = c.const("indices", idx) if c.chance(0.5) else c.feed("indices", idx)
    c.node("Gather", [c.feed("x", c.data(shape, [any_kind(c)])), indices], axis=axis)


def constant_of_shape(c):
    c.opset = c.opset_between(11)
    dims = np.array(c.shape(0, 4), np.int64)
    attrs = {}
    if c.chance(0.8):
        kind = c.pick(["f32", "i64", "i32", "bool", "f16"])
        attrs["value"] = numpy_helper.from_array(c.data([1], [kind], True), "value")
    c.node("ConstantOfShape", [c.const("shape", dims)], **attrs)


def expand(c):
    c.opset = c.opset_between(11)
    shape = c.shape(0, 4)
    target = c.broadcastable(shape)
    if c.chance(0.5):
        shape, target = target, shape
    c.node("Expand", [c.feed("x", c.data(shape, [any_kind(c)])), c.const("shape", np.array(target, np.int64))])


def matmul(c):
    c.opset = c.opset_between(11)
    m, k, n = c.dim(0.1), c.dim(0.1), c.dim(0.1)
    batch = c.shape(0, 2)
    a_shape = c.broadcastable(batch) + [m, k] if c.chance(0.85) else [k]
    b_shape = batch + [k, n] if c.chance(0.85) else [k]
    c.node("MatMul", [c.feed("a", c.floats(a_shape)), c.feed("b", c.floats(b_shape))])


def gemm(c):
    c.opset = c.opset_between(11)
    m, k, n = c.dim(0.1), c.dim(0.1), c.dim(0.1)
    ta, tb = int(c.chance(0.5)), int(c.chance(0.5))
    attrs = {"transA": ta, "transB": tb}
    if c.chance(0.5):
        attrs["alpha"] = float(c.pick([0.5, -1.0, 2.0, 0.0]))
    if c.chance(0.5):
        attrs["beta"] = float(c.pick([0.5, -1.0, 2.0, 0.0]))
    names = [c.feed("a", c.floats([k, m] if ta else [m, k])), c.feed("b", c.floats([n, k] if tb else [k, n]))]
    if c.chance(0.8):
        cs = c.pick([[], [n], [1, n], [m, 1], [m, n], [1]])
        names.append(c.const("c", c.floats(cs)) if c.chance(0.5) else c.feed("c", c.floats(cs)))
    c.node("Gemm", names, **attrs)


def softmax(c):
    c.opset = c.opset_between(11)
    shape = c.shape(1, 4)
    attrs = {"axis": int(c.rng.integers(-len(shape), len(shape)))} if c.chance(0.7) else {}
    c.node("Softmax", [c.feed("x", c.data(shape, ["f32", "f32", "f16"], specials="nonfinite" if c.chance(0.3) else False))], **attrs)


def reduce(op):
    def make(c):
        c.opset = c.opset_between(11)
        since = 13 if op == "ReduceSum" else 18
        shape = c.shape(0, 4)
        x = c.data(shape, ["f32", "f32", "i64", "i32"], specials="nonfinite" if c.chance(0.2) else False)
        axes = None
        if shape and c.chance(0.7):
            chosen = c.rng.choice(len(shape), size=int(c.rng.integers(1, len(shape) + 1)), replace=False).tolist()
            axes = [a - len(shape) if c.chance(0.3) else a for a in chosen]
        elif c.opset >= since and c.chance(0.3):
            axes = []
        extra, attrs = axes_input(c, "axes", axes, since)
        if c.chance(0.6):
            attrs["keepdims"] = int(c.chance(0.5))
        if c.opset >= since and c.chance(0.3):
            attrs["noop_with_empty_axes"] = int(c.chance(0.5))
        c.node(op, [c.feed("x", x)] + extra, **attrs)
    return make


def layer_norm(c):
    c.opset = c.opset_between(17)
    shape = c.shape(1, 4)
    axis = int(c.rng.integers(-len(shape), len(shape)))
    norm = shape[axis % len(shape):]
    x = c.data(shape, ["f32", "f32", "f16"], specials="nonfinite" if c.chance(0.2) else False)
    names = [c.feed("x", x), c.const("scale", c.floats(norm, scale=1.0, dtype=x.dtype))]
    if c.chance(0.6):
        names.append(c.const("bias", c.floats(norm, scale=1.0, dtype=x.dtype)))
    attrs = {"axis": axis}
    if c.chance(0.4):
        attrs["epsilon"] = float(c.pick([1e-5, 1e-3, 0.5]))
    outputs = ["y", "mean", "inv"] if c.chance(0.3) else ["y"]
    c.node("LayerNormalization", names, outputs, **attrs)
    return outputs


def resize(c):
    c.opset = c.pick([11, 13, 13, 18, 19])
    rank = int(c.rng.integers(1, 5))
    shape = [c.dim(0.05) for _ in range(rank)]
    mode = c.pick(["nearest", "nearest", "linear", "linear", "cubic"])
    # Linear only on the last two axes (a common restriction in runtimes); nearest anywhere.
    spatial = list(range(rank)) if mode == "nearest" else list(range(max(0, rank - 2), rank))
    attrs = {"mode": mode,
             "coordinate_transformation_mode": c.pick(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                                                       "tf_half_pixel_for_nn" if mode == "nearest" else "half_pixel"])}
    if mode == "nearest":
        attrs["nearest_mode"] = c.pick(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
    if c.opset >= 18 and c.chance(0.2):
        attrs["antialias"] = 1
    if c.opset >= 18 and c.chance(0.15):
        attrs["keep_aspect_ratio_policy"] = c.pick(["not_larger", "not_smaller", "stretch"])
    names = [c.feed("x", c.floats(shape, scale=1.0))]
    if c.chance(0.5):
        scales = [float(c.pick([0.5, 1.0, 1.5, 2.0, 3.0, 0.6, 0.34])) if d in spatial else 1.0 for d in range(rank)]
        names += ["" if c.opset >= 13 else c.const("roi", np.zeros(0, np.float32)), c.const("scales", np.array(scales, np.float32))]
    else:
        sizes = [int(c.rng.integers(0 if shape[d] == 0 else 1, 9)) if d in spatial else shape[d] for d in range(rank)]
        names += ["" if c.opset >= 13 else c.const("roi", np.zeros(0, np.float32)),
                  "" if c.opset >= 13 else c.const("scales", np.zeros(0, np.float32)), c.const("sizes", np.array(sizes, np.int64))]
    c.node("Resize", names, **attrs)


def quantize(c):
    c.opset = c.pick([11, 13, 13, 19, 21])
    shape = c.shape(1, 4)
    x = c.floats(shape, specials=False, scale=float(c.pick([1.0, 100.0])))
    per_axis = c.opset >= 13 and c.chance(0.4)
    axis = int(c.rng.integers(-len(shape), len(shape))) if per_axis else 1
    count = shape[axis] if per_axis else 1
    scale = c.rng.uniform(0.01, 2, size=[count] if per_axis else []).astype(np.float32)
    ztype = c.pick(["u8", "i8"] + (["f8"] if c.opset >= 19 else []) + (["i16"] if c.opset >= 21 else []))
    names = [c.feed("x", x), c.const("scale", scale)]
    attrs = {"axis": axis} if per_axis else {}
    zshape = [count] if per_axis else []
    if ztype == "f8":
        c.weights.append(helper.make_tensor("zp", TensorProto.FLOAT8E4M3FN, zshape, np.zeros(count, np.float32).tolist()))
        names.append("zp")
        if c.chance(0.5):
            attrs["saturate"] = int(c.chance(0.5))
    elif ztype != "u8" or c.chance(0.6):
        lo, hi, dt = {"u8": (0, 255, np.uint8), "i8": (-128, 127, np.int8), "i16": (-300, 300, np.int16)}[ztype]
        names.append(c.const("zp", c.rng.integers(lo // 2, hi // 2 + 1, size=zshape).astype(dt)))
    c.node("QuantizeLinear", names, **attrs)


def dequantize(c):
    c.opset = c.pick([11, 13, 13, 19, 21])
    shape = c.shape(1, 4)
    ztype = c.pick(["u8", "i8", "i32"])
    lo, hi, dt = {"u8": (0, 255, np.uint8), "i8": (-128, 127, np.int8), "i32": (-100000, 100000, np.int32)}[ztype]
    per_axis = c.opset >= 13 and c.chance(0.4)
    axis = int(c.rng.integers(-len(shape), len(shape))) if per_axis else 1
    count = shape[axis] if per_axis else 1
    names = [c.feed("x", c.rng.integers(lo, hi + 1, size=shape).astype(dt)),
             c.const("scale", c.rng.uniform(0.01, 2, size=[count] if per_axis else []).astype(np.float32))]
    if ztype != "i32" and c.chance(0.6):
        names.append(c.const("zp", c.rng.integers(lo, hi + 1, size=[count] if per_axis else []).astype(dt)))
    c.node("DequantizeLinear", names, **({"axis": axis} if per_axis else {}))


def trilu(c):
    c.opset = c.opset_between(14)
    shape = c.shape(2, 4)
    names = [c.feed("x", c.data(shape, ["f32", "f32", "i64", "i32", "bool"]))]
    if c.chance(0.7):
        names.append(c.const("k", np.array(int(c.pick([0, 1, -1, 2, -3, 100, -100])), np.int64)))
    c.node("Trilu", names, **({"upper": int(c.chance(0.5))} if c.chance(0.7) else {}))


def window_attrs(c, spatial, kernel, allow_dilation=True, auto=True, pad_below_kernel=False):
    attrs = {}
    if c.chance(0.5):
        attrs["strides"] = [int(c.pick([1, 1, 2, 3])) for _ in range(spatial)]
    if allow_dilation and c.chance(0.3):
        attrs["dilations"] = [int(c.pick([1, 2, 3])) for _ in range(spatial)]
    if auto and c.chance(0.2):
        attrs["auto_pad"] = c.pick(["SAME_UPPER", "SAME_LOWER", "VALID"])
    elif c.chance(0.5):
        attrs["pads"] = [int(c.rng.integers(0, k if pad_below_kernel else k + 1)) for k in kernel + kernel]
    return attrs


def conv(c):
    c.opset = c.opset_between(11)
    spatial = c.pick([1, 2, 2, 2])
    group = c.pick([1, 1, 2, 3])
    cg, mg = c.pick([1, 2]), c.pick([1, 2])
    if c.chance(0.2):
        group, cg, mg = c.pick([2, 3, 4]), 1, 1                # depthwise
    size = [int(c.rng.integers(1, 9)) for _ in range(spatial)]
    kernel = [int(c.rng.integers(1, 4)) for _ in range(spatial)]
    attrs = window_attrs(c, spatial, kernel)
    if group > 1 or c.chance(0.3):
        attrs["group"] = group
    if c.chance(0.3):
        attrs["kernel_shape"] = kernel
    n = c.pick([1, 1, 2, 2, 2, 2, 2, 2, 2, 0])
    names = [c.feed("x", c.floats([n, group * cg] + size, scale=1.0)), c.const("w", c.floats([group * mg, cg] + kernel, scale=1.0))]
    if c.chance(0.6):
        names.append(c.const("b", c.floats([group * mg], scale=1.0)))
    c.node("Conv", names, **attrs)


def conv_transpose(c):
    c.opset = c.opset_between(11)
    spatial = c.pick([1, 2, 2, 2])
    group = c.pick([1, 1, 2])
    cg, mg = c.pick([1, 2]), c.pick([1, 2])
    size = [int(c.rng.integers(1, 6)) for _ in range(spatial)]
    kernel = [int(c.rng.integers(1, 4)) for _ in range(spatial)]
    attrs = window_attrs(c, spatial, kernel, auto=False)
    strides = attrs.get("strides", [1] * spatial)
    dilations = attrs.get("dilations", [1] * spatial)
    if c.chance(0.3):
        attrs["output_padding"] = [int(c.rng.integers(0, max(s, d))) for s, d in zip(strides, dilations)]
    elif c.chance(0.2):
        attrs.pop("pads", None)
        attrs["output_shape"] = [s * (n - 1) + (k - 1) * d + 1 + int(c.rng.integers(0, s))
                                 for n, k, s, d in zip(size, kernel, strides, dilations)]
    elif c.chance(0.2):
        attrs.pop("pads", None)
        attrs["auto_pad"] = c.pick(["SAME_UPPER", "SAME_LOWER"])
    if group > 1:
        attrs["group"] = group
    names = [c.feed("x", c.floats([c.pick([1, 2]), group * cg] + size, scale=1.0)), c.const("w", c.floats([group * cg, mg] + kernel, scale=1.0))]
    if c.chance(0.6):
        names.append(c.const("b", c.floats([group * mg], scale=1.0)))
    c.node("ConvTranspose", names, **attrs)


def pool(op):
    def make(c):
        c.opset = c.opset_between(11)
        spatial = c.pick([1, 2, 2])
        size = [int(c.rng.integers(1, 9)) for _ in range(spatial)]
        kernel = [int(c.rng.integers(1, 4)) for _ in range(spatial)]
        attrs = window_attrs(c, spatial, kernel, allow_dilation=op == "MaxPool" or c.opset >= 19, pad_below_kernel=True)
        attrs["kernel_shape"] = kernel
        if c.chance(0.3):
            attrs["ceil_mode"] = 1
        if op == "AveragePool" and c.chance(0.5):
            attrs["count_include_pad"] = 1
        x = c.floats([c.pick([1, 2, 1, 2, 1, 2, 1, 2, 1, 0]), c.pick([1, 3])] + size, specials="pool" if c.chance(0.2) else False, scale=1.0)
        outputs = ["y", "indices"] if op == "MaxPool" and c.chance(0.1) else ["y"]
        c.node(op, [c.feed("x", x)], outputs, **attrs)
        return outputs
    return make


def global_pool(op):
    def make(c):
        c.opset = c.opset_between(11)
        shape = [c.pick([1, 2]), c.pick([1, 3])] + [int(c.rng.integers(1, 6)) for _ in range(c.pick([1, 2, 2, 3]))]
        c.node(op, [c.feed("x", c.floats(shape, specials="pool" if c.chance(0.2) else False, scale=1.0))])
    return make


def batch_norm(c):
    c.opset = c.pick([11, 14, 15, 15])
    shape = [c.pick([1, 2]), c.pick([1, 3, 4])] + [int(c.rng.integers(1, 5)) for _ in range(c.pick([0, 1, 2]))]
    ch = shape[1]
    names = [c.feed("x", c.floats(shape, specials="nonfinite" if c.chance(0.2) else False, scale=1.0)), c.const("scale", c.floats([ch], scale=1.0)),
             c.const("bias", c.floats([ch], scale=1.0)), c.const("mean", c.floats([ch], scale=1.0)),
             c.const("var", np.abs(c.floats([ch], scale=1.0)))]
    c.node("BatchNormalization", names, **({"epsilon": float(c.pick([1e-5, 0.1]))} if c.chance(0.4) else {}))


def two_node(c):
    """Ops chained: a shape computation feeding a data op (Shape → ConstantOfShape, Shape → Expand, Transpose → MatMul ...)."""
    c.opset = c.opset_between(13)
    kind = c.pick(["shape_expand", "transpose_matmul", "cast_add"])
    shape = c.shape(1, 3)
    if kind == "shape_expand":
        c.feed("x", c.floats(c.broadcastable(shape)))
        c.feed("t", c.floats(shape))
        c.node("Shape", ["t"], ["s"]).node("Expand", ["x", "s"])
    elif kind == "transpose_matmul":
        a = c.floats(shape + [3])
        c.feed("a", a)
        c.node("Transpose", ["a"], ["at"], perm=list(range(len(shape) - 1)) + [len(shape), len(shape) - 1])
        c.node("MatMul", ["at", "a"])
    else:
        c.feed("x", c.data(shape, ["i64", "i32", "bool"]))
        c.feed("f", c.floats(c.broadcastable(shape)))
        c.node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT).node("Add", ["xf", "f"])


GENERATORS = {
    **{op: unary(op) for op in UNARY}, "HardSigmoid": hard_sigmoid, "LeakyRelu": leaky_relu,
    **{op: binary(op) for op in ["Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater"]},
    "Where": where, "Cast": cast, "Clip": clip, "Identity": identity,
    "Reshape": reshape, "Flatten": flatten, "Transpose": transpose, "Squeeze": squeeze, "Unsqueeze": unsqueeze,
    "Concat": concat, "Slice": slice_op, "Split": split, "Shape": shape_op, "Gather": gather,
    "ConstantOfShape": constant_of_shape, "Expand": expand,
    "MatMul": matmul, "Gemm": gemm, "Softmax": softmax, "ReduceMean": reduce("ReduceMean"), "ReduceSum": reduce("ReduceSum"),
    "LayerNormalization": layer_norm, "Resize": resize, "QuantizeLinear": quantize, "DequantizeLinear": dequantize, "Trilu": trilu,
    "Conv": conv, "ConvTranspose": conv_transpose, "MaxPool": pool("MaxPool"), "AveragePool": pool("AveragePool"),
    "GlobalAveragePool": global_pool("GlobalAveragePool"), "GlobalMaxPool": global_pool("GlobalMaxPool"),
    "BatchNormalization": batch_norm, "TwoNodes": two_node,
}


# ---------------------------------------------------------------------------------------------
# Running and comparing.

def ort_options():
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)
    return options, ort


def float8_outputs(model, ref):
    """onnxruntime returns float8 outputs as their uint8 bits: decode them (Kiln writes their f32 values)."""
    import ml_dtypes
    fp8 = {TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn, TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2}
    types = {t.name: t.data_type for t in model.graph.initializer}
    out = []
    for o, r in zip(model.graph.output, ref):
        node = next(n for n in model.graph.node if o.name in n.output)
        zp = types.get(node.input[2]) if node.op_type == "QuantizeLinear" and len(node.input) > 2 else None
        out.append(np.asarray(r).view(fp8[zp]).astype(np.float32) if zp in fp8 else np.asarray(r))
    return out


def reference(model, feeds, outputs):
    """The outputs of the ONNX reference implementation (onnx.reference), or None when it cannot run the model."""
    try:
        from onnx.reference import ReferenceEvaluator
        return [np.asarray(v) for v in ReferenceEvaluator(model).run(list(outputs), feeds)]
    except Exception:   # noqa: BLE001 - the reference is only a tie-breaker
        return None


def kind_of(a):
    return "bool" if a.dtype == np.bool_ else "float" if a.dtype.kind == "f" else "int"


def compare(ref, got, rtol, atol):
    """None when `got` matches `ref`, else a one-line description of the first difference."""
    if ref.shape != got.shape:
        return f"shape: ort {list(ref.shape)}, kiln {list(got.shape)}"
    if kind_of(ref) != kind_of(got):
        return f"dtype: ort {ref.dtype}, kiln {got.dtype}"
    if ref.size == 0:
        return None
    if kind_of(ref) != "float":
        bad = np.flatnonzero(ref.astype(np.int64).ravel() != got.astype(np.int64).ravel())
        return None if bad.size == 0 else f"{bad.size} values differ; first at {bad[0]}: ort {ref.ravel()[bad[0]]}, kiln {got.ravel()[bad[0]]}"
    a, b = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        i = int(np.flatnonzero(np.isnan(a) != np.isnan(b))[0])
        return f"NaN positions differ; first at {i}: ort {a[i]}, kiln {b[i]}"
    inf_a, inf_b = np.isinf(a), np.isinf(b)
    if not np.array_equal(inf_a, inf_b) or not np.array_equal(a[inf_a], b[inf_b]):
        i = int(np.flatnonzero((inf_a != inf_b) | (inf_a & (a != b)))[0])
        return f"±Inf positions differ; first at {i}: ort {a[i]}, kiln {b[i]}"
    finite = np.isfinite(a)
    if not finite.any():
        return None
    scale = float(np.max(np.abs(a[finite])))
    err = np.abs(a[finite] - b[finite])
    limit = atol + rtol * scale
    if float(err.max()) > limit:
        i = int(np.flatnonzero(finite)[int(np.argmax(err))])
        return f"max |kiln − ort| {err.max():.3g} > {limit:.3g} (scale {scale:.3g}); at {i}: ort {a[i]}, kiln {b[i]}"
    return None


# Float16 inputs or outputs round to 11 bits; everything else computes in f32.
def tolerance(model, feeds):
    half = any(v.dtype == np.float16 for v in feeds.values()) or any(
        a.t.data_type == TensorProto.FLOAT16 for n in model.graph.node for a in n.attribute if a.name == "to" or a.type == a.TENSOR)
    return (2e-3, 1e-6) if half else (1e-4, 1e-6)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kiln", required=True, help="the kiln executable (release build)")
    parser.add_argument("--count", type=int, default=20, help="models per operator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", help="comma-separated operators (default: all)")
    parser.add_argument("--keep", help="folder for the models that did not agree (with inputs and details)")
    parser.add_argument("--verbose", action="store_true", help="print every model's outcome")
    args = parser.parse_args()
    options, ort = ort_options()
    ops = args.ops.split(",") if args.ops else sorted(GENERATORS)
    unknown = [op for op in ops if op not in GENERATORS]
    if unknown:
        sys.exit(f"graph_diff.py: no generator for {', '.join(unknown)} (known: {', '.join(sorted(GENERATORS))})")
    keep = args.keep
    if keep:
        os.makedirs(keep, exist_ok=True)
    stats = collections.defaultdict(collections.Counter)
    findings = collections.defaultdict(list)     # outcome -> [(name, detail)]
    work = tempfile.mkdtemp(prefix="graph-diff-")
    for op in ops:
        for i in range(args.count):
            rng = np.random.default_rng([args.seed, zlib.crc32(op.encode()), i])
            case = Case(rng, 17)
            outputs = GENERATORS[op](case) or ("y",)
            name = f"{op}_s{args.seed}_{i}"
            model = case.model(name, outputs)
            path, inputs, out = (os.path.join(work, name + ext) for ext in (".onnx", ".npz", ".kiln.npz"))
            onnx.save(model, path)
            np.savez(inputs, **case.feeds)
            try:
                session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                ref = float8_outputs(model, session.run(list(outputs), case.feeds))
                ort_error = None
            except Exception as e:     # noqa: BLE001 - any onnxruntime refusal is an outcome here
                ref, ort_error = None, str(e).strip().splitlines()[0][:300]
            if os.path.exists(out):
                os.remove(out)
            run = subprocess.run(["nice", "-n", "10", args.kiln, "run", path, "--inputs", inputs, "--output", out],
                                 capture_output=True, text=True)
            reason = (run.stderr.strip().splitlines() or [""])[-1][:400]
            if run.returncode not in (0, 1):
                outcome, detail = "crash", f"exit status {run.returncode}: {reason}"
            elif ort_error is not None and "NOT_IMPLEMENTED" in ort_error:
                outcome, detail = "ort-no-kernel", f"ort: {ort_error}"
            elif ort_error is not None:
                outcome = "ort-refused, kiln-refused" if run.returncode == 1 else "ort-refused, kiln-ran"
                detail = f"ort: {ort_error}" + (f" | kiln: {reason}" if run.returncode == 1 else "")
            elif run.returncode == 1:
                outcome, detail = "kiln-refused", reason
            else:
                got = np.load(out)
                rtol, atol = tolerance(model, case.feeds)
                diffs = [f"{o}: {d}" for o, r in zip(outputs, ref) if (d := compare(np.asarray(r), got[o], rtol, atol))]
                outcome, detail = ("mismatch", "; ".join(diffs)) if diffs else ("agree", "")
                if diffs:
                    # Tie-break with the ONNX reference implementation: Kiln agreeing with it is an onnxruntime deviation.
                    spec = reference(model, case.feeds, outputs)
                    if spec is not None and not any(compare(r, got[o], rtol, atol) for o, r in zip(outputs, spec)):
                        outcome = "ort-deviates"
            stats[op][outcome] += 1
            if outcome != "agree":
                findings[outcome].append((name, detail))
                if keep:
                    onnx.save(model, os.path.join(keep, name + ".onnx"))
                    np.savez(os.path.join(keep, name + ".npz"), **case.feeds)
                    with open(os.path.join(keep, name + ".txt"), "w") as f:
                        f.write(f"{outcome}\n{detail}\n{onnx.printer.to_text(model.graph)}\nopset {case.opset}\n")
            if args.verbose:
                print(f"{name}: {outcome} {detail}", flush=True)
            for p in (path, inputs, out):
                if os.path.exists(p):
                    os.remove(p)
    os.rmdir(work)
    columns = ["agree", "mismatch", "ort-deviates", "kiln-refused", "crash", "ort-refused, kiln-refused", "ort-refused, kiln-ran",
               "ort-no-kernel"]
    print(f"{'op':<20}{'models':>7}" + "".join(f"{c.split(',')[-1].strip() if ',' in c else c:>14}" for c in columns))
    print(f"{'':<27}" + "".join(f"{'(ort refused)' if ',' in c else '':>14}" for c in columns))
    total = collections.Counter()
    for op in ops:
        total.update(stats[op])
        print(f"{op:<20}{sum(stats[op].values()):>7}" + "".join(f"{stats[op][c]:>14}" for c in columns))
    print(f"{'total':<20}{sum(total.values()):>7}" + "".join(f"{total[c]:>14}" for c in columns))
    for outcome in ["crash", "mismatch", "ort-deviates", "kiln-refused", "ort-refused, kiln-ran"]:
        if findings[outcome]:
            print(f"\n{outcome} ({len(findings[outcome])}):")
            for name, detail in findings[outcome]:
                print(f"  {name}: {detail}")
    sys.exit(1 if total["crash"] or total["mismatch"] else 0)


if __name__ == "__main__":
    main()
