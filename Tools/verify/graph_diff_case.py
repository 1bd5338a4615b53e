"""Random ONNX model construction for graph_diff.py: value pools, the Case builder, shared attribute helpers.

A Case holds one model under construction; every random choice is drawn from its numpy Generator, so a model is
a function of (seed, operator, index) alone. The generators in graph_diff_ops.py and graph_diff_nn.py use it.
"""
import numpy as np
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



def any_kind(c):
    return c.pick(["f32", "f32", "f32", "i64", "i32", "bool"])


def axes_input(c, name, axes, since):
    """Axes as an attribute (opset < since) or an int64 input; returns (input names, attributes)."""
    if axes is None:
        return [], {}
    if c.opset < since:
        return [], {"axes": axes}
    return [c.const(name, np.array(axes, np.int64))], {}


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
