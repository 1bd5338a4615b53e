"""graph_diff.py generators for element-wise and data-movement operators (one generator per operator family).

A generator takes a Case, chooses its opset, adds nodes, inputs and initializers, and returns the output names
(None means ("y",)).
"""
import numpy as np
from onnx import TensorProto, numpy_helper

from graph_diff_case import any_kind, axes_input

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


GENERATORS = {
    **{op: unary(op) for op in UNARY}, "HardSigmoid": hard_sigmoid, "LeakyRelu": leaky_relu,
    **{op: binary(op) for op in ["Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater"]},
    "Where": where, "Cast": cast, "Clip": clip, "Identity": identity,
    "Reshape": reshape, "Flatten": flatten, "Transpose": transpose, "Squeeze": squeeze, "Unsqueeze": unsqueeze,
    "Concat": concat, "Slice": slice_op, "Split": split, "Shape": shape_op, "Gather": gather,
    "ConstantOfShape": constant_of_shape, "Expand": expand,
}
