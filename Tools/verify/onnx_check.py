#!/usr/bin/env python3
"""Cross-checks of Kiln's ONNX reader/writer with the reference `onnx` and `onnxruntime`.

  onnx_check.py make KIND OUT.onnx          build a fixture model (kinds: see FIXTURES) with onnx.helper
  onnx_check.py make-bad KIND DIR           build a bad model DIR/bad.onnx (kinds: see BAD)
  onnx_check.py check MODEL...              onnx.checker.check_model(full_check=True) on each file
  onnx_check.py canonical MODEL             the file's bytes == onnx.load(MODEL).SerializeToString()
  onnx_check.py same-graph A B              same nodes, attributes, types, initializer bits, functions,
                                            opsets and metadata (producer and IR version ignored)
  onnx_check.py compare A B [options]       run both in onnxruntime on the same random inputs;
                                            JSON {outputs: {name: {max_abs, cosine}}}
      --dim NAME=N         size of symbolic dim NAME (default 2 for every symbolic/unknown dim)
      --shape INPUT=a,b,.. full shape of an input
      --int-high N         int inputs are uniform in [0, N) (default 2); inputs named *mask* are ones
      --opt disable|basic|extended|all   graph optimization level (default all)
      --tol X              fail when an output's max |a-b| > X (default 0)
      --min-cosine C       fail when an output's cosine < C (instead of --tol)
      --seed S
  onnx_check.py compare-golden MODEL LOGITS.npz [--tol X] [--opt L]
                                            LLM logits for the golden `ids` (inputs input_ids and, when the
                                            model has it, position_ids) vs `logits`: batch 1, batch 2 and a
                                            10-token prefix; fails when max|diff| / max|golden| > X
  onnx_check.py quantize-ort FLOAT.onnx OUT.onnx [compare options]
                                            onnxruntime quantize_static (QDQ, int8 per-channel weights,
                                            int8 symmetric activations) on random calibration inputs
  onnx_check.py qdq-structure MODEL FORMAT  TensorRT explicit-quantization placement checks (FORMAT:
                                            int8 | fp8 | int4 | uint4); JSON summary
  onnx_check.py same-structure A B          same op type counts; every MatMul/Gemm/Conv fed through the same
                                            Q/DQ chains
  onnx_check.py dq-values MODEL REF_DIR     every weight DequantizeLinear output evaluated by onnxruntime
                                            (ORT_DISABLE_ALL) == REF_DIR/<output name>.f32 bit for bit

Exit 0 and a JSON line on success; exit 1 with a JSON line naming the first difference otherwise.
"""
import json
import os
import sys

# Tools/verify holds scripts whose names shadow standard modules (tokenize.py): keep this folder off
# the import path so numpy's own `import tokenize` finds the standard library.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402


def fail(**info):
    print(json.dumps({"ok": False, **info}, default=str))
    sys.exit(1)


def ok(**info):
    print(json.dumps({"ok": True, **info}, default=str))


# ---------------------------------------------------------------- fixtures

def typed_tensor(name, dtype, dims, vals, raw):
    """`vals` in the type's own field (int32_data, float_data, ...) or, with `raw`, in raw_data."""
    t = h.make_tensor(name, dtype, dims, vals)
    if raw:
        t = numpy_helper.from_array(numpy_helper.to_array(t), name)
        assert t.HasField("raw_data") and t.data_type == dtype, name
    return t


def fixture_encodings():
    """Initializers in every encoding; each is cast to float and summed into y = x + Σ."""
    vals = [1, 2, 3, 0, 1, 2]
    specs = [
        ("f32_float_data", T.FLOAT, False), ("f32_raw", T.FLOAT, True),
        ("f64_double_data", T.DOUBLE, False), ("f64_raw", T.DOUBLE, True),
        ("f16_int32_data", T.FLOAT16, False), ("f16_raw", T.FLOAT16, True),
        ("bf16_int32_data", T.BFLOAT16, False), ("bf16_raw", T.BFLOAT16, True),
        ("e4m3_int32_data", T.FLOAT8E4M3FN, False), ("e4m3_raw", T.FLOAT8E4M3FN, True),
        ("e5m2_int32_data", T.FLOAT8E5M2, False), ("e5m2_raw", T.FLOAT8E5M2, True),
        ("i4_int32_data", T.INT4, False), ("i4_raw", T.INT4, True),
        ("u4_int32_data", T.UINT4, False), ("u4_raw", T.UINT4, True),
        ("i8_int32_data", T.INT8, False), ("u8_int32_data", T.UINT8, False),
        ("i16_int32_data", T.INT16, False), ("u16_int32_data", T.UINT16, False),
        ("i32_int32_data", T.INT32, False), ("i32_raw", T.INT32, True),
        ("bool_int32_data", T.BOOL, False), ("bool_raw", T.BOOL, True),
        ("i64_int64_data", T.INT64, False), ("i64_raw", T.INT64, True),
        ("u32_uint64_data", T.UINT32, False), ("u64_uint64_data", T.UINT64, False), ("u64_raw", T.UINT64, True),
    ]
    inits, nodes, acc = [], [], "x"
    for i, (name, dtype, raw) in enumerate(specs):
        v = [bool(x) for x in vals] if dtype == T.BOOL else vals
        inits.append(typed_tensor(name, dtype, [2, 3], v, raw))
        nodes.append(h.make_node("Cast", [name], [name + "_f"], to=T.FLOAT))
        nodes.append(h.make_node("Add", [acc, name + "_f"], [f"acc{i}"]))
        acc = f"acc{i}"
    nodes.append(h.make_node("Identity", [acc], ["y"]))
    # A Constant node with typed int64 data and one with a raw float tensor stay Constant nodes.
    nodes.insert(0, h.make_node("Constant", [], ["k"], value=h.make_tensor("k", T.FLOAT, [2, 3], [0.5] * 6)))
    nodes.append(h.make_node("Mul", ["y", "k"], ["z"]))
    g = h.make_graph(nodes, "encodings", [h.make_tensor_value_info("x", T.FLOAT, [2, 3])],
                     [h.make_tensor_value_info("z", T.FLOAT, [2, 3])], inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 21)], ir_version=10)


def fixture_subgraphs():
    """If (branches with their own initializers), Loop (body using an outer value) and Scan."""
    then_g = h.make_graph([h.make_node("Add", ["x", "then_c"], ["then_out"])], "then",
                          [], [h.make_tensor_value_info("then_out", T.FLOAT, ["batch", 4])],
                          [numpy_helper.from_array(np.full((4,), 2.0, np.float32), "then_c")])
    else_g = h.make_graph([h.make_node("Mul", ["x", "else_c"], ["else_out"])], "else",
                          [], [h.make_tensor_value_info("else_out", T.FLOAT, ["batch", 4])],
                          [numpy_helper.from_array(np.full((4,), -3.0, np.float32), "else_c")])
    body = h.make_graph(
        [h.make_node("Add", ["acc_in", "w"], ["acc_out"]), h.make_node("Identity", ["cond_in"], ["cond_out"]),
         h.make_node("Identity", ["acc_out"], ["scan_out"])],
        "body",
        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
         h.make_tensor_value_info("acc_in", T.FLOAT, ["batch", 4])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("acc_out", T.FLOAT, ["batch", 4]),
         h.make_tensor_value_info("scan_out", T.FLOAT, ["batch", 4])])
    scan_body = h.make_graph(
        [h.make_node("Add", ["s_in", "row"], ["s_out"]), h.make_node("Identity", ["s_out"], ["row_out"])], "scan_body",
        [h.make_tensor_value_info("s_in", T.FLOAT, [4]), h.make_tensor_value_info("row", T.FLOAT, [4])],
        [h.make_tensor_value_info("s_out", T.FLOAT, [4]), h.make_tensor_value_info("row_out", T.FLOAT, [4])])
    nodes = [
        h.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        h.make_node("Greater", ["total", "zero"], ["cond"]),
        h.make_node("If", ["cond"], ["branch"], then_branch=then_g, else_branch=else_g),
        h.make_node("Loop", ["trips", "", "branch"], ["looped", "stacked"], body=body),
        h.make_node("Scan", ["s0", "looped"], ["s_final", "rows"], body=scan_body, num_scan_inputs=1),
    ]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero"), numpy_helper.from_array(np.array(3, np.int64), "trips"),
             numpy_helper.from_array(np.linspace(-1, 1, 4).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "s0")]
    g = h.make_graph(nodes, "subgraphs", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 4])],
                     [h.make_tensor_value_info("looped", T.FLOAT, ["batch", 4]), h.make_tensor_value_info("stacked", T.FLOAT, ["trips", "batch", 4]),
                      h.make_tensor_value_info("s_final", T.FLOAT, [4]), h.make_tensor_value_info("rows", T.FLOAT, ["batch", 4])],
                     inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def fixture_functions():
    """A model-local function with an attribute parameter (ref_attr_name) and a default, called twice."""
    fn = h.make_function(
        "kiln.test", "ScaledTanh", ["X"], ["Y"],
        [h.make_node("Constant", [], ["a"], value_float=1.0),
         onnx.helper.make_node("Constant", [], ["alpha_c"]),
         h.make_node("Mul", ["X", "alpha_c"], ["xa"]), h.make_node("Tanh", ["xa"], ["t"]),
         h.make_node("Mul", ["t", "a"], ["Y"])],
        opset_imports=[h.make_opsetid("", 18)], attributes=["alpha"])
    # The second Constant takes its value from the function's attribute `alpha`.
    ref = onnx.AttributeProto()
    ref.name = "value_float"
    ref.ref_attr_name = "alpha"
    ref.type = onnx.AttributeProto.FLOAT
    fn.node[1].attribute.append(ref)
    g = h.make_graph(
        [h.make_node("ScaledTanh", ["x"], ["h1"], domain="kiln.test", alpha=0.5),
         h.make_node("ScaledTanh", ["h1"], ["y"], domain="kiln.test", alpha=2.0, doc_string="second call")],
        "functions", [h.make_tensor_value_info("x", T.FLOAT, ["n", 3])], [h.make_tensor_value_info("y", T.FLOAT, ["n", 3])])
    m = h.make_model(g, functions=[fn], opset_imports=[h.make_opsetid("", 18), h.make_opsetid("kiln.test", 1)], ir_version=8)
    m.doc_string = "functions fixture"
    return m


def fixture_symbolic():
    """Symbolic and unknown dims, value_info, denotations, doc strings, metadata_props, a MatMul MLP."""
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")
    nodes = [h.make_node("MatMul", ["x", "w1"], ["h"], name="mm1", doc_string="first layer"),
             h.make_node("Add", ["h", "b1"], ["hb"], name="add1"), h.make_node("Relu", ["hb"], ["r"], name="relu"),
             h.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    x = h.make_tensor_value_info("x", T.FLOAT, ["batch", "seq", 8], doc_string="input")
    x.type.denotation = "TENSOR"
    x.type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    y = h.make_tensor_value_info("y", T.FLOAT, ["batch", None, 4])
    g = h.make_graph(nodes, "symbolic", [x], [y], [w1, b1, w2],
                     value_info=[h.make_tensor_value_info("h", T.FLOAT, ["batch", "seq", 16]),
                                 h.make_tensor_value_info("r", T.FLOAT, None)], doc_string="graph doc")
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)], ir_version=7, producer_name="fixture", model_version=3)
    h.set_model_props(m, {"author": "kiln tests", "license": "MIT"})
    return m


def fixture_unknown_domain():
    """A node of a domain nobody implements (kept as is) next to standard ones."""
    nodes = [h.make_node("Relu", ["x"], ["r"]),
             h.make_node("FancyOp", ["r"], ["y"], domain="com.example", gamma=1.5, names=["a", "b"], mode=b"fast")]
    g = h.make_graph(nodes, "unknown", [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.example", 3)], ir_version=8)


def fixture_external(out):
    """Weights in external files (one in a subfolder), saved with onnx's own external-data writer."""
    m = fixture_symbolic()
    folder = os.path.dirname(os.path.abspath(out))
    onnx.save_model(m, out, save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0)
    # Move one tensor file into a subfolder to exercise relative paths with a folder component.
    os.makedirs(os.path.join(folder, "weights"), exist_ok=True)
    m = onnx.load(out, load_external_data=False)
    for t in m.graph.initializer:
        if t.name == "w2":
            loc = next(e for e in t.external_data if e.key == "location")
            os.replace(os.path.join(folder, loc.value), os.path.join(folder, "weights", loc.value))
            loc.value = "weights/" + loc.value
    onnx.save_model(m, out)


def fixture_qdq_float():
    """A small float MLP + conv for onnxruntime's quantizer (weights as initializers)."""
    rng = np.random.default_rng(11)
    t = lambda name, shape: numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name)
    nodes = [h.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["cr"]),
             h.make_node("Flatten", ["cr"], ["f"]), h.make_node("MatMul", ["f", "w1"], ["m1"]),
             h.make_node("Add", ["m1", "b1"], ["a1"]), h.make_node("Relu", ["a1"], ["r1"]),
             h.make_node("Gemm", ["r1", "w2", "b2"], ["y"], transB=1)]
    g = h.make_graph(nodes, "qdq_float", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 4, 4])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 5])],
                     [t("cw", (4, 3, 3, 3)), t("cb", (4,)), t("w1", (64, 16)), t("b1", (16,)), t("w2", (5, 16)), t("b2", (5,))])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 13)], ir_version=7)


FIXTURES = {"encodings": fixture_encodings, "subgraphs": fixture_subgraphs, "functions": fixture_functions,
            "symbolic": fixture_symbolic, "unknown-domain": fixture_unknown_domain, "qdq-float": fixture_qdq_float}


def make(kind, out):
    if kind == "external":
        fixture_external(out)
    else:
        onnx.save_model(FIXTURES[kind](), out)
    ok(kind=kind, path=out)


# ---------------------------------------------------------------- bad inputs

def bad_model(tensor):
    g = h.make_graph([h.make_node("Identity", ["w"], ["y"])], "bad", [], [h.make_tensor_value_info("y", T.FLOAT, None)], [tensor])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)


def external_tensor(location, offset=None, length=None):
    t = T()
    t.name = "w"
    t.data_type = T.FLOAT
    t.dims.extend([2, 2])
    t.data_location = T.EXTERNAL
    for k, v in [("location", location), ("offset", offset), ("length", length)]:
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return t


def make_bad(kind, folder):
    out = os.path.join(folder, "bad.onnx")
    payload = np.arange(4, dtype=np.float32).tobytes()
    if kind == "external-absolute":
        m = bad_model(external_tensor("/etc/hostname"))
    elif kind == "external-dotdot":
        m = bad_model(external_tensor("../outside.bin"))
    elif kind == "external-symlink":
        outside = os.path.join(os.path.dirname(os.path.abspath(folder)), "outside-" + os.path.basename(os.path.abspath(folder)) + ".bin")
        with open(outside, "wb") as f:
            f.write(payload)
        os.symlink(outside, os.path.join(folder, "link.bin"))
        m = bad_model(external_tensor("link.bin"))
    elif kind == "external-past-eof":
        with open(os.path.join(folder, "w.bin"), "wb") as f:
            f.write(payload[:12])
        m = bad_model(external_tensor("w.bin", 0, 16))
    elif kind == "external-offset-past-eof":
        with open(os.path.join(folder, "w.bin"), "wb") as f:
            f.write(payload)
        m = bad_model(external_tensor("w.bin", 64))
    elif kind == "unknown-dtype":
        t = T()
        t.name, t.data_type = "w", 99
        t.dims.extend([2, 2])
        t.raw_data = payload
        m = bad_model(t)
    elif kind == "size-mismatch":
        t = T()
        t.name, t.data_type = "w", T.FLOAT
        t.dims.extend([2, 2])
        t.raw_data = payload[:12]
        m = bad_model(t)
    elif kind == "typed-size-mismatch":
        t = T()
        t.name, t.data_type = "w", T.FLOAT
        t.dims.extend([2, 2])
        t.float_data.extend([1.0, 2.0, 3.0])
        m = bad_model(t)
    elif kind == "dangling-input":
        g = h.make_graph([h.make_node("Relu", ["x"], ["r"], name="relu"), h.make_node("Add", ["r", "nowhere"], ["y"], name="add")],
                         "bad", [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("y", T.FLOAT, [2])])
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    elif kind == "cycle":
        g = h.make_graph([h.make_node("Add", ["x", "b"], ["a"], name="first"), h.make_node("Relu", ["a"], ["b"], name="second")],
                         "bad", [h.make_tensor_value_info("x", T.FLOAT, [2])], [h.make_tensor_value_info("b", T.FLOAT, [2])])
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    else:
        fail(error=f"unknown bad kind {kind}")
    with open(out, "wb") as f:
        f.write(m.SerializeToString())
    ok(kind=kind, path=out)


# ---------------------------------------------------------------- comparisons

def initializer_bits(t, folder):
    if t.data_location == T.EXTERNAL:
        onnx.external_data_helper.load_external_data_for_tensor(t, folder)
    a = numpy_helper.to_array(t)
    return t.data_type, list(t.dims), a.tobytes() if a.dtype != object else repr(a.tolist())


def normalized_graph(g, folder):
    """A comparable description of a graph (recursing into subgraphs)."""
    def attr(a):
        kind = a.type
        if kind == onnx.AttributeProto.GRAPH:
            return (a.name, "graph", normalized_graph(a.g, folder))
        if kind == onnx.AttributeProto.GRAPHS:
            return (a.name, "graphs", [normalized_graph(x, folder) for x in a.graphs])
        if kind == onnx.AttributeProto.TENSOR:
            return (a.name, "tensor", a.t.name, initializer_bits(a.t, folder))
        b = onnx.AttributeProto()
        b.CopyFrom(a)
        return (a.name, b.SerializeToString())
    nodes = [(n.name, n.op_type, n.domain, list(n.input), list(n.output), [attr(a) for a in n.attribute], n.doc_string, n.overload)
             for n in g.node]
    inits = [(t.name, initializer_bits(t, folder)) for t in g.initializer]
    vi = lambda vs: [v.SerializeToString() for v in vs]
    return dict(name=g.name, nodes=nodes, initializers=inits, inputs=vi(g.input), outputs=vi(g.output), value_info=vi(g.value_info),
                doc=g.doc_string, sparse=[s.SerializeToString() for s in g.sparse_initializer])


def same_graph(a, b):
    ma, mb = onnx.load(a, load_external_data=False), onnx.load(b, load_external_data=False)
    fa, fb = os.path.dirname(os.path.abspath(a)), os.path.dirname(os.path.abspath(b))
    checks = [
        ("opset_import", sorted((o.domain, o.version) for o in ma.opset_import), sorted((o.domain, o.version) for o in mb.opset_import)),
        ("metadata_props", sorted((p.key, p.value) for p in ma.metadata_props), sorted((p.key, p.value) for p in mb.metadata_props)),
        ("functions", [f.SerializeToString() for f in ma.functions], [f.SerializeToString() for f in mb.functions]),
        ("doc_string", ma.doc_string, mb.doc_string), ("model_version", ma.model_version, mb.model_version),
        ("domain", ma.domain, mb.domain),
    ]
    ga, gb = normalized_graph(ma.graph, fa), normalized_graph(mb.graph, fb)
    for key in ga:
        checks.append(("graph." + key, ga[key], gb[key]))
    for name, x, y in checks:
        if x != y:
            if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
                i = next(i for i in range(len(x)) if x[i] != y[i])
                fail(field=name, index=i, a=str(x[i])[:400], b=str(y[i])[:400])
            fail(field=name, a=str(x)[:400], b=str(y)[:400])
    ok(nodes=len(ma.graph.node), initializers=len(ma.graph.initializer), ir_version=[ma.ir_version, mb.ir_version])


def parse_options(args):
    opts = {"dims": {}, "shapes": {}, "int_high": 2, "opt": "all", "tol": 0.0, "min_cosine": None, "seed": 0}
    i = 0
    while i < len(args):
        k, v = args[i], args[i + 1]
        if k == "--dim":
            name, n = v.rsplit("=", 1)
            opts["dims"][name] = int(n)
        elif k == "--shape":
            name, dims = v.rsplit("=", 1)
            opts["shapes"][name] = [int(d) for d in dims.split(",")]
        elif k == "--int-high":
            opts["int_high"] = int(v)
        elif k == "--opt":
            opts["opt"] = v
        elif k == "--tol":
            opts["tol"] = float(v)
        elif k == "--min-cosine":
            opts["min_cosine"] = float(v)
        elif k == "--seed":
            opts["seed"] = int(v)
        else:
            fail(error=f"unknown option {k}")
        i += 2
    return opts


def session(path, opt):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[opt]
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


NP_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
            "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
            "tensor(bool)": np.bool_}


def random_inputs(sess, opts):
    rng = np.random.default_rng(opts["seed"])
    feeds = {}
    for i in sess.get_inputs():
        shape = opts["shapes"].get(i.name) or [d if isinstance(d, int) and d >= 0 else opts["dims"].get(d, 2) for d in i.shape]
        dtype = NP_TYPES[i.type]
        if dtype == np.bool_:
            feeds[i.name] = rng.integers(0, 2, shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            feeds[i.name] = np.ones(shape, dtype) if "mask" in i.name else rng.integers(0, opts["int_high"], shape).astype(dtype)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def compare(a, b, args):
    opts = parse_options(args)
    sa, sb = session(a, opts["opt"]), session(b, opts["opt"])
    feeds = random_inputs(sa, opts)
    names = [o.name for o in sa.get_outputs()]
    if names != [o.name for o in sb.get_outputs()]:
        fail(error="different outputs", a=names, b=[o.name for o in sb.get_outputs()])
    ra, rb = sa.run(None, feeds), sb.run(None, feeds)
    result = {}
    for name, x, y in zip(names, ra, rb):
        if x.shape != y.shape:
            fail(output=name, error="shape", a=x.shape, b=y.shape)
        xf, yf = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
        diff = float(np.max(np.abs(xf - yf))) if xf.size else 0.0
        norm = float(np.linalg.norm(xf) * np.linalg.norm(yf))
        cosine = float(np.dot(xf, yf) / norm) if norm > 0 else (1.0 if diff == 0 else 0.0)
        result[name] = {"max_abs": diff, "cosine": cosine, "shape": list(x.shape)}
        bad = cosine < opts["min_cosine"] if opts["min_cosine"] is not None else diff > opts["tol"]
        if bad:
            fail(output=name, outputs=result)
    ok(outputs=result)


def quantize_ort(src, out, args):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    opts = parse_options(args)
    sess = session(src, "disable")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = [random_inputs(sess, dict(opts, seed=s)) for s in range(8)]

        def get_next(self):
            return self.items.pop() if self.items else None

    quantize_static(src, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QInt8, extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    ok(path=out)


# ---------------------------------------------------------------- Q/DQ structure

ACT_TYPES = {"int8": T.INT8, "uint8": T.UINT8, "fp8": T.FLOAT8E4M3FN, "int4": T.FLOAT8E4M3FN, "uint4": T.FLOAT8E4M3FN}
WEIGHT_TYPES = {"int8": T.INT8, "uint8": T.UINT8, "fp8": T.FLOAT8E4M3FN, "int4": T.INT4, "uint4": T.UINT4}
MIN_OPSET = {"int8": 13, "uint8": 13, "fp8": 19, "int4": 21, "uint4": 21}


def qdq_structure(path, fmt):
    m = onnx.load(path)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    if opset < MIN_OPSET[fmt]:
        fail(error=f"opset {opset} < {MIN_OPSET[fmt]} needed for {fmt}")
    weight_dq, act_pairs, quantized_ops = 0, 0, 0
    weight_inputs = set()
    for n in g.node:
        if n.op_type in ("MatMul", "Gemm", "Conv"):
            weight_inputs.update(x for x in n.input[:2] if x in producer and producer[x].op_type == "DequantizeLinear"
                                 and producer[x].input[0] in inits)
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.output[0] in weight_inputs:
            w = inits[n.input[0]]
            if w.data_type != WEIGHT_TYPES[fmt]:
                fail(error="weight payload type", node=n.name, found=w.data_type)
            if len(consumers.get(n.input[0], [])) != 1:
                fail(error="quantized initializer feeds more than one node", tensor=n.input[0])
            attrs = {a.name: h.get_attribute_value(a) for a in n.attribute}
            if fmt in ("int4", "uint4") and attrs.get("block_size", 0) <= 0:
                fail(error="int4 weight without block_size", node=n.name)
            weight_dq += 1
        if n.op_type in ("MatMul", "Gemm", "Conv"):
            srcs = [producer.get(x) for x in n.input[:2]]
            wi = next((i for i, p in enumerate(srcs) if p is not None and p.op_type == "DequantizeLinear" and p.input[0] in inits), None)
            if wi is None:
                continue
            quantized_ops += 1
            a = srcs[1 - wi]
            if a is None or a.op_type != "DequantizeLinear":
                continue
            q = producer.get(a.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                fail(error="activation DequantizeLinear not fed by QuantizeLinear", node=n.name)
            if list(q.input[1:]) != list(a.input[1:]):
                fail(error="Q and DQ use different scale/zero point", node=n.name)
            zp = inits.get(q.input[2]) if len(q.input) > 2 else None
            if zp is None or zp.data_type != ACT_TYPES[fmt] or np.any(numpy_helper.to_array(zp).astype(np.float32) != 0):
                fail(error="activation zero point missing, non-zero or of the wrong type", node=n.name)
            if len(inits[q.input[1]].dims) != 0:
                fail(error="activation scale is not a scalar", node=n.name)
            act_pairs += 1
    for n in g.node:
        if n.op_type == "Add":
            for x in n.input:
                p = producer.get(x)
                if p is not None and p.op_type == "DequantizeLinear" and x not in inits and producer.get(p.input[0]) is not None \
                        and producer[p.input[0]].op_type == "QuantizeLinear":
                    fail(error="Q/DQ on an Add input (residual)", node=n.name)
    ok(opset=opset, weight_dq=weight_dq, activation_pairs=act_pairs, quantized_ops=quantized_ops,
       ops=sorted({n.op_type for n in g.node}))


def compare_golden(path, npz, args):
    """LLM logits for the golden ids: batch 1 full length, batch 2 (the same ids twice), and a prefix."""
    opts = parse_options(args)
    golden = np.load(npz)
    ids, logits = golden["ids"].astype(np.int64), golden["logits"].astype(np.float64)
    sess = session(path, opts["opt"])
    names = {i.name for i in sess.get_inputs()}
    scale = float(np.max(np.abs(logits)))
    result = {}
    for label, batch, n in [("full", 1, len(ids)), ("batch2", 2, len(ids)), ("prefix", 1, min(10, len(ids)))]:
        feed = {"input_ids": np.tile(ids[:n], (batch, 1))}
        if "position_ids" in names:
            feed["position_ids"] = np.tile(np.arange(n, dtype=np.int64), (batch, 1))
        out = sess.run(None, feed)[0].astype(np.float64)
        if out.shape != (batch, n, logits.shape[1]):
            fail(case=label, error="shape", found=list(out.shape))
        rel = float(np.max(np.abs(out - logits[None, :n])) / scale)
        argmax = float(np.mean(np.argmax(out, -1) == np.argmax(logits[:n], -1)))
        result[label] = {"max_rel": rel, "argmax_agreement": argmax}
        if rel > opts["tol"]:
            fail(case=label, results=result)
    ok(results=result)


def same_structure(a, b):
    """Same op type counts, and every MatMul/Gemm/Conv (in order) has inputs made by the same op types."""
    ga, gb = onnx.load(a).graph, onnx.load(b).graph
    count = lambda g: sorted(__import__("collections").Counter(n.op_type for n in g.node).items())
    if count(ga) != count(gb):
        fail(error="op counts differ", a=count(ga), b=count(gb))

    def feeds(g):
        inits = {t.name for t in g.initializer}
        producer = {o: n for n in g.node for o in n.output}
        result = []
        for n in g.node:
            if n.op_type in ("MatMul", "Gemm", "Conv"):
                chain = []
                for x in n.input:
                    p, path = producer.get(x), []
                    while p is not None and p.op_type in ("QuantizeLinear", "DequantizeLinear"):
                        path.append(p.op_type)
                        p = producer.get(p.input[0])
                    path.append("initializer" if p is None and (x in inits or path) else (p.op_type if p else "input"))
                    chain.append(path)
                result.append((n.op_type, chain))
        return result
    if feeds(ga) != feeds(gb):
        fail(error="quantized op inputs differ", a=feeds(ga), b=feeds(gb))
    ok(ops=count(ga))


def dq_values(path, ref_dir):
    m = onnx.load(path)
    inits = {t.name for t in m.graph.initializer}
    outs = [n.output[0] for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    existing = {o.name for o in m.graph.output}
    for o in outs:
        if o not in existing:
            m.graph.output.append(onnx.ValueInfoProto(name=o))
    tmp = path + ".dq.onnx"
    onnx.save_model(m, tmp)
    sess = session(tmp, "disable")
    values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, random_inputs(sess, parse_options([])))))
    os.remove(tmp)
    checked = 0
    for o in outs:
        ref_path = os.path.join(ref_dir, o + ".f32")
        if not os.path.exists(ref_path):
            fail(error="no reference", tensor=o)
        ref = np.fromfile(ref_path, dtype=np.float32)
        got = values[o].astype(np.float32).ravel()
        if ref.shape != got.shape or ref.view(np.uint32).tolist() != got.view(np.uint32).tolist():
            diff = float(np.max(np.abs(ref - got))) if ref.shape == got.shape else None
            fail(error="DequantizeLinear output differs from QuantSpec.dequantize", tensor=o, max_abs=diff)
        checked += 1
    ok(checked=checked)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(args[0], args[1])
    elif cmd == "make-bad":
        make_bad(args[0], args[1])
    elif cmd == "check":
        for p in args:
            try:
                onnx.checker.check_model(p, full_check=True)
            except Exception as e:  # noqa: BLE001 - report any checker failure
                fail(path=p, error=str(e)[:2000])
        ok(checked=len(args))
    elif cmd == "canonical":
        with open(args[0], "rb") as f:
            data = f.read()
        again = onnx.load_from_string(data).SerializeToString()
        if again != data:
            n = next((i for i in range(min(len(data), len(again))) if data[i] != again[i]), min(len(data), len(again)))
            fail(error="not canonical", first_difference=n, size=len(data), reserialized=len(again))
        ok(bytes=len(data))
    elif cmd == "same-graph":
        same_graph(args[0], args[1])
    elif cmd == "compare":
        compare(args[0], args[1], args[2:])
    elif cmd == "quantize-ort":
        quantize_ort(args[0], args[1], args[2:])
    elif cmd == "qdq-structure":
        qdq_structure(args[0], args[1])
    elif cmd == "compare-golden":
        compare_golden(args[0], args[1], args[2:])
    elif cmd == "same-structure":
        same_structure(args[0], args[1])
    elif cmd == "dq-values":
        dq_values(args[0], args[1])
    else:
        fail(error=f"unknown command {cmd}")


if __name__ == "__main__":
    main()
