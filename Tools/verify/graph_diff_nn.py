"""graph_diff.py generators for linear algebra, reductions, normalization, Resize, quantization, convolutions, pools
and two-node chains (one generator per operator family; same contract as graph_diff_ops.py).
"""
import numpy as np
from onnx import TensorProto, helper

from graph_diff_case import axes_input, window_attrs


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
    "MatMul": matmul, "Gemm": gemm, "Softmax": softmax, "ReduceMean": reduce("ReduceMean"), "ReduceSum": reduce("ReduceSum"),
    "LayerNormalization": layer_norm, "Resize": resize, "QuantizeLinear": quantize, "DequantizeLinear": dequantize, "Trilu": trilu,
    "Conv": conv, "ConvTranspose": conv_transpose, "MaxPool": pool("MaxPool"), "AveragePool": pool("AveragePool"),
    "GlobalAveragePool": global_pool("GlobalAveragePool"), "GlobalMaxPool": global_pool("GlobalMaxPool"),
    "BatchNormalization": batch_norm, "TwoNodes": two_node,
}
