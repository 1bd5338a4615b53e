"""Cross-checks of Kiln's graph interpreter and ONNX PTQ against onnxruntime (called from the tests).

  graph_check.py compare MODEL.onnx INPUTS.npz KILN_OUTPUTS.npz
      Run MODEL in onnxruntime (CPU) on INPUTS; print one JSON line with, per output, max |a-b|
      (infinite where NaN / ±Inf positions differ), the output scale max|ort| over finite values,
      cosine, and argmax agreement over the last axis.
  graph_check.py ops DIR
      Write small single-op models (Resize, ConvTranspose, grouped / depthwise / dilated Conv,
      Slice with negative steps, ..., and the cases graph_diff.py found) built with onnx.helper,
      each NAME.onnx + NAME.npz, into DIR; print their names as JSON.
  graph_check.py check MODEL.onnx
      onnx.checker.check_model(full_check=True) and the default-domain opset; one JSON line.
  graph_check.py minilm TOKENIZER.json OUT.npz
      input_ids / attention_mask for two sentences (tokenizers, no padding/truncation, padded with 0).
"""
import json
import sys

import numpy as np


def session(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def compare(model, inputs, kiln):
    sess = session(model)
    feed = dict(np.load(inputs))
    names = [o.name for o in sess.get_outputs()]
    ref = dict(zip(names, sess.run(names, feed)))
    got = dict(np.load(kiln))
    result = {}
    for name in names:
        a = np.asarray(ref[name]).astype(np.float64)
        b = np.asarray(got[name]).astype(np.float64)
        if a.shape != b.shape:
            result[name] = {"shape_ort": list(a.shape), "shape_kiln": list(b.shape)}
            continue
        # NaN and ±Inf must sit where onnxruntime has them (a difference there counts as infinite);
        # the scale and the cosine are over onnxruntime's finite values.
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        diff = np.nan_to_num(np.where(same, 0.0, np.abs(a - b)), nan=np.finfo(np.float64).max, posinf=np.finfo(np.float64).max)  # JSON has no Infinity
        finite = np.isfinite(a) & np.isfinite(b)
        flat_a, flat_b = a[finite].ravel(), b[finite].ravel()
        denom = np.linalg.norm(flat_a) * np.linalg.norm(flat_b)
        entry = {
            "max_abs": float(np.max(diff)) if a.size else 0.0,
            "scale": float(np.max(np.abs(a[np.isfinite(a)]))) if np.isfinite(a).any() else 0.0,
            "cosine": float(flat_a @ flat_b / denom) if denom > 0 else 1.0,
        }
        if a.ndim >= 1 and a.shape[-1] > 1 and a.size:
            entry["argmax_agreement"] = float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))
        result[name] = entry
    print(json.dumps({"outputs": result}))


def ops(folder):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)
    made = []

    def save(name, nodes, inputs, outputs, feeds, weights=(), opset=17):
        graph = helper.make_graph(nodes, name, inputs, outputs,
                                  initializer=[numpy_helper.from_array(w, n) for n, w in weights])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.save(model, f"{folder}/{name}.onnx")
        np.savez(f"{folder}/{name}.npz", **feeds)
        made.append(name)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def vi(name, shape, t=TensorProto.FLOAT):
        # Outputs are declared with an unknown rank: onnxruntime infers them.
        return helper.make_tensor_value_info(name, t, shape) if shape is not None else helper.make_value_info(
            name, helper.make_tensor_type_proto(t, None))

    x = f32(2, 4, 7, 9)
    # Resize: nearest (each rounding mode / transform) and linear, by scales and by sizes.
    for mode, transform, nearest in [("nearest", "asymmetric", "floor"), ("nearest", "half_pixel", "round_prefer_floor"),
                                     ("nearest", "align_corners", "round_prefer_ceil"), ("linear", "half_pixel", ""),
                                     ("linear", "align_corners", ""), ("linear", "pytorch_half_pixel", "")]:
        attrs = {"mode": mode, "coordinate_transformation_mode": transform}
        if nearest:
            attrs["nearest_mode"] = nearest
        scales = np.array([1, 1, 2.0, 1.5], np.float32)
        save(f"resize_{mode}_{transform}", [helper.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)],
             [vi("x", x.shape)], [vi("y", None)], {"x": x}, [("scales", scales)])
    save("resize_sizes_linear", [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear")],
         [vi("x", x.shape)], [vi("y", None)], {"x": x}, [("sizes", np.array([2, 4, 5, 13], np.int64))])
    # ConvTranspose: strides, pads, output_padding, groups, dilations, bias.
    for name, attrs, w_shape in [("convtranspose_s2", {"strides": [2, 2]}, (4, 3, 2, 2)),
                                 ("convtranspose_pads_outpad", {"strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 1]}, (4, 5, 3, 3)),
                                 ("convtranspose_group_dilation", {"group": 2, "dilations": [2, 1], "strides": [1, 2]}, (4, 3, 3, 2))]:
        w = f32(*w_shape)
        b = f32(w_shape[1] * attrs.get("group", 1))
        save(name, [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)], [vi("x", x.shape)], [vi("y", None)],
             {"x": x}, [("w", w), ("b", b)])
    # Conv: grouped, depthwise with stride and padding, dilated, SAME_UPPER, 1x1.
    for name, attrs, w_shape in [("conv_grouped", {"group": 2, "pads": [1, 1, 1, 1]}, (6, 2, 3, 3)),
                                 ("conv_depthwise", {"group": 4, "strides": [2, 2], "pads": [2, 1, 2, 1]}, (4, 1, 5, 3)),
                                 ("conv_dilated", {"dilations": [2, 3], "pads": [0, 1, 2, 3]}, (5, 4, 3, 3)),
                                 ("conv_same_upper", {"auto_pad": "SAME_UPPER", "strides": [2, 3]}, (3, 4, 4, 2)),
                                 ("conv_1x1", {}, (8, 4, 1, 1))]:
        save(name, [helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], [vi("x", x.shape)], [vi("y", None)],
             {"x": x}, [("w", f32(*w_shape)), ("b", f32(w_shape[0]))])
    # Slice with negative steps, negative indices, clamped ends, omitted axes.
    for name, starts, ends, axes, steps in [("slice_negative_steps", [-1, 6], [-100, 0], [3, 2], [-2, -3]),
                                            ("slice_mixed", [1, -3, 0], [100, -1, 9], [1, 2, -1], [2, 1, 4]),
                                            ("slice_reverse_all", [-1], [-1000000], [0], [-1])]:
        save(name, [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])], [vi("x", x.shape)], [vi("y", None)],
             {"x": x}, [("starts", np.array(starts, np.int64)), ("ends", np.array(ends, np.int64)),
                        ("axes", np.array(axes, np.int64)), ("steps", np.array(steps, np.int64))])
    # Pools with ceil mode and padding; legacy Softmax (opset 11) over a flattened tail; Clip as attributes (opset 6).
    save("maxpool_ceil", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], ceil_mode=1)],
         [vi("x", x.shape)], [vi("y", None)], {"x": x})
    save("averagepool_pads", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 1], pads=[1, 1, 1, 1],
                                               count_include_pad=1)], [vi("x", x.shape)], [vi("y", None)], {"x": x})
    save("softmax_opset11_axis1", [helper.make_node("Softmax", ["x"], ["y"], axis=1)], [vi("x", x.shape)], [vi("y", None)], {"x": x}, opset=11)
    save("clip_opset6", [helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.25)], [vi("x", x.shape)], [vi("y", None)], {"x": x}, opset=6)
    # Cast through float16 rounds (values are computed in f32 in between).
    save("cast_f16_roundtrip", [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
                                helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)],
         [vi("x", x.shape)], [vi("y", None)], {"x": (x * 1000).astype(np.float32)})
    # MatMul with broadcast batch dims; Gemm with transposes.
    save("matmul_broadcast", [helper.make_node("MatMul", ["a", "b"], ["y"])], [vi("a", [2, 1, 3, 5]), vi("b", [4, 5, 6])], [vi("y", None)],
         {"a": f32(2, 1, 3, 5), "b": f32(4, 5, 6)})
    save("gemm_trans", [helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=1, transB=1, alpha=0.5, beta=2.0)],
         [vi("a", [5, 3])], [vi("y", None)], {"a": f32(5, 3)}, [("b", f32(4, 5)), ("c", f32(4))])
    # Found by graph_diff.py (differential testing against onnxruntime); one case per fix.
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30, -3.0, 0.7], np.float32)
    untyped = [helper.make_empty_tensor_value_info("y")]    # onnxruntime infers the output type
    # Pools in ceil mode whose window is longer than the input: ⌈(2 − 3) / 3⌉ + 1 = 1 output row, not 0.
    x_short = f32(2, 1, 2, 6)
    save("averagepool_ceil_window_longer_than_input",
         [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[3, 2], ceil_mode=1, count_include_pad=1)],
         [vi("x", x_short.shape)], untyped, {"x": x_short})
    save("maxpool_ceil_window_longer_than_input", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2], ceil_mode=1)],
         [vi("x", [2, 3, 2])], untyped, {"x": f32(2, 3, 2)})
    # ConvTranspose, auto_pad SAME with a kernel smaller than the stride: input × strides exceeds the full output,
    # the padding is 0 and the output the full one (Kiln zero-extended it to input × strides).
    save("convtranspose_same_kernel_below_stride",
         [helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], auto_pad="SAME_LOWER", group=2, strides=[3, 3])],
         [vi("x", [1, 2, 1, 4])], untyped, {"x": f32(1, 2, 1, 4)}, [("w", f32(2, 1, 2, 2)), ("b", f32(2))])
    # AveragePool with dilations (opset 19): was refused though the window loop handles them.
    save("averagepool_dilated", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 3], dilations=[2, 2], pads=[1, 1, 0, 2],
                                                  count_include_pad=1, ceil_mode=1, strides=[1, 2])],
         [vi("x", x.shape)], untyped, {"x": x}, opset=19)
    # Nearest Resize: an axis of scale 1 maps one to one (tf_half_pixel_for_nn + ceil shifted it by one row),
    # and a scale from sizes (1 / 7) puts 0.5 / scale on the tie 3.5 exactly (f32 made it 3.4999998).
    x_small = f32(5, 7, 7)
    save("resize_nearest_scale1_axis_identity",
         [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn",
                           nearest_mode="ceil")], [vi("x", x_small.shape)], untyped, {"x": x_small},
         [("scales", np.array([1, 3, 0.5], np.float32))], opset=18)
    save("resize_nearest_sizes_tie",
         [helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn",
                           nearest_mode="round_prefer_ceil")], [vi("x", [2, 7])], untyped, {"x": f32(2, 7)},
         [("sizes", np.array([5, 1], np.int64))], opset=13)
    # ReduceMean over an empty axis: 0 as onnxruntime (an int64 one trapped converting NaN).
    save("reducemean_int64_empty_axis", [helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1, -2, 0])],
         [vi("x", [1, 5, 0, 3], TensorProto.INT64)], untyped, {"x": np.zeros((1, 5, 0, 3), np.int64)}, opset=16)
    save("reducemean_float_empty_axis", [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
         [vi("x", [0, 4])], untyped, {"x": f32(0, 4)}, [("axes", np.array([0], np.int64))], opset=19)
    # Clip: min > max gives max everywhere; without bounds ±Inf clip to the type's finite range; NaN stays.
    save("clip_min_above_max", [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [vi("x", [8])], untyped,
         {"x": special}, [("lo", np.array(0.5, np.float32)), ("hi", np.array(-0.25, np.float32))])
    save("clip_no_bounds_inf", [helper.make_node("Clip", ["x"], ["y"])], [vi("x", [8])], untyped, {"x": special})
    save("clip_f16_no_max", [helper.make_node("Clip", ["x", "lo"], ["y"])], [vi("x", [8], TensorProto.FLOAT16)], untyped,
         {"x": np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 6e4, -3.0, 0.7], np.float16)}, [("lo", np.array(-1, np.float16))])
    # HardSigmoid / HardSwish keep NaN (a clamp through min / max turned it into 1 or 0).
    save("hardsigmoid_nan", [helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)], [vi("x", [8])], untyped, {"x": special})
    save("hardswish_nan", [helper.make_node("HardSwish", ["x"], ["y"])], [vi("x", [8])], untyped, {"x": special}, opset=14)
    # Neg / Abs / Relu of integers (wrapping: Neg of int8 −128 is −128); Pow of a float by an integer exponent.
    ints8 = np.array([-128, -3, 0, 5, 127], np.int8)
    for op, opset in [("Neg", 13), ("Abs", 13), ("Relu", 14)]:
        save(f"{op.lower()}_int", [helper.make_node(op, ["x"], ["y"])], [vi("x", [5], TensorProto.INT8 if op != "Relu" else TensorProto.INT32)],
             untyped, {"x": ints8 if op != "Relu" else ints8.astype(np.int32)}, opset=opset)
    save("neg_int64", [helper.make_node("Neg", ["x"], ["y"])], [vi("x", [3], TensorProto.INT64)], untyped,
         {"x": np.array([-2**63, 4, -9], np.int64)})
    save("pow_float_int_exponent", [helper.make_node("Pow", ["x", "e"], ["y"])], [vi("x", [2, 4]), vi("e", [4], TensorProto.INT64)],
         untyped, {"x": f32(2, 4), "e": np.array([2, -1, 0, 3], np.int64)}, opset=15)
    # Per-axis Q / DQ over an axis of size 0 (zero scales): an empty output.
    save("quantize_per_axis_empty", [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1)], [vi("x", [2, 0, 3])],
         untyped, {"x": f32(2, 0, 3)}, [("s", np.zeros(0, np.float32)), ("z", np.zeros(0, np.int8))], opset=13)
    # MaxPool window over padding only (dilation 3 skips the 2 × 2 input): the lowest finite value, as onnxruntime gives.
    save("maxpool_window_padding_only", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[3, 3],
                                                          pads=[1, 1, 1, 1])],
         [vi("x", [1, 2, 2, 2])], untyped, {"x": f32(1, 2, 2, 2)})
    print(json.dumps({"models": made}))


def check(model):
    import onnx
    m = onnx.load(model)
    onnx.checker.check_model(m, full_check=True)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    ops = sorted({n.op_type for n in m.graph.node})
    print(json.dumps({"ok": True, "opset": opset, "ops": ops,
                      "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in m.graph.node),
                      "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in m.graph.node)}))


def minilm(tokenizer, out):
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(tokenizer)
    tk.no_padding()
    tk.no_truncation()
    texts = ["A man is playing a guitar on the stage.", "The quick brown fox jumps over the lazy dog near the river bank."]
    enc = [tk.encode(t) for t in texts]
    n = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), n), np.int64)
    mask = np.zeros((len(enc), n), np.int64)
    for i, e in enumerate(enc):
        ids[i, :len(e.ids)] = e.ids
        mask[i, :len(e.ids)] = 1
    np.savez(out, input_ids=ids, attention_mask=mask)
    print(json.dumps({"shape": list(ids.shape)}))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"compare": compare, "ops": ops, "check": check, "minilm": minilm}[command](*args)
