#!/usr/bin/env python3
"""Seed inputs for the fuzz targets of Tools/fuzz (valid files, so mutations start deep).

Usage: make_seeds.py OUT_DIR

Writes OUT_DIR/<FuzzTarget>/<name> for every target in Tools/fuzz/Package.swift, in the input
layout each target's main.swift documents (e.g. FuzzTRTLLM: one selector byte + config.json).
The malformed corpus (Tools/corpus/make_corpus.py) adds its cases as seeds too.
Deterministic. Needs numpy and onnx.
"""

import importlib.util
import io
import json
import os
import shutil
import struct
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import numpy as np  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

_spec = importlib.util.spec_from_file_location("make_corpus", os.path.join(_HERE, "..", "corpus", "make_corpus.py"))
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

OUT = ""


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def corpus_files(root, prefix, name_filter):
    """Files of the malformed corpus under `prefix` whose name passes `name_filter`, as (seed name, bytes)."""
    out = []
    for dirpath, _, files in sorted(os.walk(os.path.join(root, prefix))):
        for f in sorted(files):
            full = os.path.join(dirpath, f)
            if name_filter(f) and not os.path.islink(full):
                with open(full, "rb") as h:
                    out.append((os.path.relpath(full, root).replace("/", "_"), h.read()))
    return out


def elf_with_dynsym(symbols, stamp):
    """A minimal little-endian ELF64 shared object: header, .dynsym, .dynstr and a stamp string."""
    strtab = b"\x00"
    offsets = []
    for s in symbols:
        offsets.append(len(strtab))
        strtab += s.encode() + b"\x00"
    syms = bytes(24)  # the null symbol
    for off in offsets:
        syms += struct.pack("<IBBHQQ", off, 0x12, 0, 7, 0x1000, 8)
    body = stamp.encode() + b"\x00"
    dynsym_at = 64 + len(body)
    dynstr_at = dynsym_at + len(syms)
    shoff = dynstr_at + len(strtab)
    shoff += (8 - shoff % 8) % 8
    sections = bytes(64)  # SHT_NULL
    sections += struct.pack("<IIQQQQIIQQ", 0, 11, 2, 0, dynsym_at, len(syms), 2, 1, 8, 24)  # .dynsym, link → 2
    sections += struct.pack("<IIQQQQIIQQ", 0, 3, 2, 0, dynstr_at, len(strtab), 0, 0, 1, 0)  # .dynstr
    header = bytearray(corpus.elf_header(shoff=shoff, shnum=3))
    data = bytes(header) + body + syms + strtab
    data += bytes(shoff - len(data))
    return data + sections


def graph_run_seeds():
    """FuzzGraphRun: small runnable models, one per operator family the interpreter executes, plus the
    single-op models Tools/verify/graph_check.py compares with onnxruntime."""
    import tempfile
    spec = importlib.util.spec_from_file_location("graph_check", os.path.join(_HERE, "..", "verify", "graph_check.py"))
    graph_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph_check)
    with tempfile.TemporaryDirectory() as tmp:
        graph_check.ops(tmp)
        for f in sorted(os.listdir(tmp)):
            if f.endswith(".onnx"):
                with open(os.path.join(tmp, f), "rb") as h:
                    seed("FuzzGraphRun", "check-" + f[:-5], h.read())

    def model(name, nodes, inputs, inits=(), opset=17):
        vi = [helper.make_tensor_value_info(n, t, shape) for n, t, shape in inputs]
        graph = helper.make_graph(nodes, name, vi, [helper.make_empty_tensor_value_info("y")],
                                  initializer=[helper.make_tensor(n, t, list(np.shape(v)), np.asarray(v).flatten().tolist())
                                               for n, t, v in inits])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        seed("FuzzGraphRun", name, m.SerializeToString())

    F, I = TensorProto.FLOAT, TensorProto.INT64
    x = ("x", F, [2, 3, 4])
    for op in ["Relu", "Sigmoid", "Sqrt", "Erf", "Exp", "Tanh", "Neg", "Abs", "Reciprocal", "Cos", "Sin", "Log",
               "HardSigmoid", "HardSwish", "LeakyRelu", "Identity", "Softmax", "Flatten", "Shape", "GlobalAveragePool",
               "GlobalMaxPool"]:
        model("op-" + op, [helper.make_node(op, ["x"], ["y"])], [x])
    for op in ["Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "MatMul"]:
        model("op-" + op, [helper.make_node(op, ["x", "b"], ["y"])], [x, ("b", F, [4] if op != "MatMul" else [4, 2])])
    model("op-Where", [helper.make_node("Less", ["x", "b"], ["c"]), helper.make_node("Where", ["c", "x", "b"], ["y"])],
          [x, ("b", F, ["n", 1, 1])])
    model("op-Clip", [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [x], [("lo", F, 0.0), ("hi", F, 1.0)])
    model("op-Cast", [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32)], [x])
    model("op-Reshape", [helper.make_node("Reshape", ["x", "s"], ["y"])], [x], [("s", I, [0, -1])])
    model("op-Transpose", [helper.make_node("Transpose", ["x"], ["y"], perm=[2, 0, 1])], [x])
    model("op-Squeeze", [helper.make_node("Unsqueeze", ["x", "a"], ["u"]), helper.make_node("Squeeze", ["u", "a"], ["y"])],
          [x], [("a", I, [1])])
    model("op-Concat", [helper.make_node("Concat", ["x", "x"], ["y"], axis=-1)], [x])
    model("op-Split", [helper.make_node("Split", ["x", "s"], ["y", "z"], axis=2)], [x], [("s", I, [1, 3])])
    model("op-Gather", [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)], [x, ("i", I, [2, 2])])
    model("op-ConstantOfShape", [helper.make_node("ConstantOfShape", ["s"], ["y"], value=helper.make_tensor("v", F, [1], [1.5]))],
          [("s", I, [3])])
    model("op-Expand", [helper.make_node("Expand", ["x", "s"], ["y"])], [x], [("s", I, [3, 2, 3, 4])])
    model("op-Gemm", [helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1)], [("a", F, ["n", 4])],
          [("w", F, np.ones((3, 4))), ("c", F, [1.0, 2.0, 3.0])])
    model("op-ReduceMean", [helper.make_node("ReduceMean", ["x", "a"], ["y"], keepdims=0)], [x], [("a", I, [-1])], opset=18)
    model("op-ReduceSum", [helper.make_node("ReduceSum", ["x", "a"], ["y"])], [x], [("a", I, [0, 2])])
    model("op-LayerNormalization", [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)], [x],
          [("g", F, [1.0] * 4), ("b", F, [0.0] * 4)])
    model("op-Trilu", [helper.make_node("Trilu", ["x", "k"], ["y"], upper=0)], [x], [("k", I, 1)])
    model("op-BatchNormalization", [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
          [("x", F, [1, 2, 3, 3])], [(n, F, [0.5, 1.0]) for n in "sbmv"])
    model("op-MaxPool", [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[1, 2])], [("x", F, [1, 2, 5, 5])])
    model("op-AveragePool", [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 1], pads=[1, 0, 1, 0])],
          [("x", F, [1, 1, 4, 4])])
    model("op-Conv", [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [("x", F, [1, 2, 4, 4])],
          [("w", F, np.ones((3, 2, 3, 3)))])
    model("op-Slice", [helper.make_node("Slice", ["x", "s", "e"], ["y"])], [x], [("s", I, [1]), ("e", I, [-1])])
    model("op-QDQ", [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                     helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])], [x],
          [("s", F, 0.1), ("z", TensorProto.INT8, 0)])
    model("op-QDQ-axis", [helper.make_node("QuantizeLinear", ["x", "s"], ["q"], axis=2, output_dtype=TensorProto.FLOAT8E4M3FN),
                          helper.make_node("DequantizeLinear", ["q", "s"], ["y"], axis=2)], [x], [("s", F, [0.1, 0.2, 0.3, 0.4])],
          opset=21)
    model("op-Resize", [helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest")], [("x", F, [1, 1, 2, 3])],
          [("sc", F, [1.0, 1.0, 2.0, 1.5])])
    # A transformer-ish block: attention scores with a causal mask, softmax, weighted sum.
    model("attention", [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("Transpose", ["q"], ["k"], perm=[0, 2, 1]),
                        helper.make_node("MatMul", ["q", "k"], ["s"]), helper.make_node("Trilu", ["s"], ["m"], upper=0),
                        helper.make_node("Softmax", ["m"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "q"], ["y"])],
          [("x", F, ["b", "t", 4])], [("wq", F, np.eye(4))])


def main():
    global OUT
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    OUT = os.path.abspath(sys.argv[1])
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    bad = os.path.join(OUT, ".corpus")
    corpus.OUT = bad
    os.makedirs(bad)
    for make in [corpus.safetensors_cases, corpus.index_cases, corpus.hf_folder_cases, corpus.onnx_cases, corpus.trt_cases,
                 corpus.hf_quant_cases, corpus.tokenizer_cases, corpus.plugin_cases]:
        make()

    # Safetensors files.
    seed("FuzzSafetensors", "valid-small", corpus.st_file(corpus.small_tensors(), {"format": "pt"}))
    seed("FuzzSafetensors", "valid-llama", corpus.st_file(corpus.hf_llama_tensors()))
    seed("FuzzSafetensors", "valid-mixed", corpus.st_file([("i", np.arange(6, dtype=np.int32).reshape(2, 3)),
                                                           ("h", np.ones((3,), np.float16)), ("e", np.zeros((0, 4), np.float32))]))
    for name, data in corpus_files(bad, "st", lambda f: f.endswith(".safetensors")):
        if len(data) < 20000:
            seed("FuzzSafetensors", name, data)

    # Index files (shards a, b, sub/c and link.safetensors exist beside them).
    seed("FuzzIndex", "valid", json.dumps({"metadata": {"total_size": 28},
                                           "weight_map": {"a": "a.safetensors", "b": "b.safetensors", "c": "sub/c.safetensors"}}))
    seed("FuzzIndex", "link", json.dumps({"weight_map": {"d": "link.safetensors"}}))
    seed("FuzzIndex", "dotdot", json.dumps({"weight_map": {"d": "../outside.safetensors", "a": "a.safetensors"}}))

    # ONNX models (w.bin, sub/x.bin and link.bin exist beside them).
    seed("FuzzONNX", "valid", corpus.onnx_bytes(corpus.onnx_model()))
    m = corpus.onnx_model()
    m.graph.initializer[0].CopyFrom(corpus.external_tensor("W", [4, 4], "w.bin", 0, 64))
    seed("FuzzONNX", "external", corpus.onnx_bytes(m))
    m = corpus.onnx_model()
    m.graph.initializer[0].CopyFrom(corpus.external_tensor("W", [4, 4], "sub/x.bin", 0, 64))
    seed("FuzzONNX", "external-sub", corpus.onnx_bytes(m))
    m = corpus.onnx_model()
    m.graph.initializer[0].ClearField("raw_data")
    m.graph.initializer[0].float_data.extend([float(i) for i in range(16)])
    seed("FuzzONNX", "typed", corpus.onnx_bytes(m))
    q = helper.make_tensor("Wq", TensorProto.INT8, [4, 4], np.arange(16, dtype=np.int8).tobytes(), raw=True)
    s = helper.make_tensor("Ws", TensorProto.FLOAT, [4], np.full(4, 0.5, np.float32).tobytes(), raw=True)
    z = helper.make_tensor("Wz", TensorProto.INT8, [4], bytes(4), raw=True)
    b = helper.make_tensor("B", TensorProto.FLOAT, [4], bytes(16), raw=True)
    nodes = [helper.make_node("DequantizeLinear", ["Wq", "Ws", "Wz"], ["W"], axis=0, name="dq"),
             helper.make_node("MatMul", ["X", "W"], ["XW"], name="mm"), helper.make_node("Add", ["XW", "B"], ["Y"], name="add")]
    seed("FuzzONNX", "qdq", corpus.onnx_bytes(corpus.onnx_model(initializers=[q, s, z, b], nodes=nodes)))
    seed("FuzzONNX", "deep-if", corpus.deep_if_model(4))
    for name, data in corpus_files(bad, "onnx", lambda f: f.endswith(".onnx")):
        if len(data) < 20000:
            seed("FuzzONNX", name, data)

    graph_run_seeds()

    # JSON (flag byte: 1 = reject duplicate keys).
    seed("FuzzJSON", "hf-llama", b"\x01" + json.dumps(corpus.HF_LLAMA_CONFIG).encode())
    seed("FuzzJSON", "trt-config", b"\x01" + json.dumps(corpus.TRT_CONFIG).encode())
    seed("FuzzJSON", "rope", b"\x00" + json.dumps(dict(corpus.HF_LLAMA_CONFIG, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}, head_dim=4, sliding_window=16)).encode())
    seed("FuzzJSON", "strings", b"\x01" + '["\\u00e9\\ud83d\\ude00", "\\n\\t\\"", -0.0, 1e-320, 123456789012345678901234]'.encode())

    # Tokenizers (selector byte: 0 = tokenizer.json, 1 = tokenizer.model).
    seed("FuzzTokenizer", "bpe", b"\x00" + json.dumps(corpus.bpe_tokenizer()).encode())
    byte_level = corpus.bpe_tokenizer()
    byte_level["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    byte_level["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    byte_level["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}
    byte_level["added_tokens"] = [{"id": 16, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
                                   "normalized": False, "special": True}]
    byte_level["post_processor"] = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                            {"Sequence": {"id": "A", "type_id": 0}}],
                                    "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [16], "tokens": ["<s>"]}}}
    seed("FuzzTokenizer", "byte-level", b"\x00" + json.dumps(byte_level).encode())
    wordpiece = {"version": "1.0", "added_tokens": [], "normalizer": {"type": "BertNormalizer", "clean_text": True,
                 "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
                 "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None,
                 "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
                 "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                           "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "hello": 1, "##lo": 2, "hel": 3, "world": 4}}}
    seed("FuzzTokenizer", "wordpiece", b"\x00" + json.dumps(wordpiece).encode())
    sp = b""
    for piece, score, kind in [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("▁", -1.0, 1), ("a", -2.0, 1),
                               ("b", -3.0, 1), ("▁a", -1.5, 1), ("<0x41>", 0.0, 6)]:
        entry = corpus.pb_field(1, piece) + b"\x15" + struct.pack("<f", score) + corpus.pb_varint_field(3, kind)
        sp += corpus.pb_field(1, entry)
    sp += corpus.pb_field(2, corpus.pb_varint_field(3, 2) + corpus.pb_varint_field(35, 1))  # trainer_spec: BPE, byte_fallback
    seed("FuzzTokenizer", "sentencepiece", b"\x01" + sp)
    for name, data in corpus_files(bad, "tokenizer", lambda f: f.startswith("tokenizer")):
        if len(data) < 20000:
            seed("FuzzTokenizer", name, (b"\x01" if name.endswith(".model") else b"\x00") + data)

    # TensorRT-LLM config.json (selector: 0 tp 1, 1 tp 2, 2 tp 1 INT8 SmoothQuant).
    tp2 = json.loads(json.dumps(corpus.TRT_CONFIG))
    tp2["mapping"] = {"world_size": 2, "tp_size": 2, "pp_size": 1}
    sq = json.loads(json.dumps(corpus.TRT_CONFIG))
    sq["quantization"]["quant_algo"] = "W8A8_SQ_PER_CHANNEL"
    seed("FuzzTRTLLM", "tp1", b"\x00" + json.dumps(corpus.TRT_CONFIG).encode())
    seed("FuzzTRTLLM", "tp2", b"\x01" + json.dumps(tp2).encode())
    seed("FuzzTRTLLM", "int8", b"\x02" + json.dumps(sq).encode())
    emb = json.loads(json.dumps(tp2))
    emb["use_parallel_embedding"] = True
    seed("FuzzTRTLLM", "tp2-embedding", b"\x01" + json.dumps(emb).encode())

    # Unified HF quantized checkpoints: u16 length + hf_quant_config.json + model.safetensors.
    def hfq(name, qconfig, tensors=None, raw=None):
        q = json.dumps(qconfig).encode()
        st = raw if raw is not None else corpus.st_file(tensors)
        seed("FuzzHFQuant", name, struct.pack("<H", len(q)) + q + st)

    r = np.random.default_rng(1)
    lin = "model.layers.0.mlp.down_proj."
    w8 = np.clip(np.round(r.standard_normal((8, 16)) * 40), -127, 127).astype(np.int8)
    hfq("int8", {"quantization": {"quant_algo": "W8A8_SQ_PER_CHANNEL"}},
        [(lin + "weight", w8), (lin + "weight_scale", np.full((8,), 0.02, np.float32)), (lin + "input_scale", np.array(0.1, np.float32)),
         (lin + "pre_quant_scale", np.ones(16, np.float32))])
    hfq("int4", {"quantization": {"quant_algo": "W4A16_AWQ", "group_size": 4}},
        [(lin + "weight", r.integers(0, 255, (4, 16), dtype=np.uint8)), (lin + "weight_scale", np.full((8, 4), 0.1, np.float32))])
    h = {lin + "weight": {"dtype": "F8_E4M3", "shape": [8, 16], "data_offsets": [0, 128]},
         lin + "weight_scale": {"dtype": "F32", "shape": [], "data_offsets": [128, 132]}}
    hfq("fp8", {"quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}}, raw=corpus.st_pack(json.dumps(h), bytes(132)))

    # Calibration cache (mode 1: the payload, which the harness compresses).
    header = json.dumps({"tokens": 4, "linears": [{"weight": "w", "in": 2, "tokens": 4, "out": 3, "rows": 1}],
                         "kv": [{"prefix": "model.layers.0.self_attn", "k": 1.5, "v": 2.5}]}).encode()
    floats = np.arange(2 + 2 + 3 + 2, dtype=np.float32).tobytes()
    seed("FuzzCalibCache", "payload", b"\x01" + struct.pack("<I", len(header)) + header + floats)
    seed("FuzzCalibCache", "magic", b"\x00KILNCAL1\x28\xb5\x2f\xfd\x00\x00\x00\x00")

    # Plugin files.
    seed("FuzzPlugin", "elf-dynsym", elf_with_dynsym(["kiln_plugin_descriptor", "other"],
                                                     "KILN-ABI-STAMP{abi=1;sdk=0.1.0;toolchain=clang}"))
    for name, data in corpus_files(bad, "plugin", lambda f: f.endswith(".so")):
        seed("FuzzPlugin", name, data)

    # numpy .npz archives (kiln run --inputs, ONNX calibration): stored and deflated.
    for name, compress in [("stored", False), ("deflated", True)]:
        buf = io.BytesIO()
        arrays = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "ids": np.arange(5, dtype=np.int64)}
        (np.savez_compressed if compress else np.savez)(buf, **arrays)
        seed("FuzzNPZ", name, buf.getvalue())

    shutil.rmtree(bad)
    print(f"seeds in {OUT}")


if __name__ == "__main__":
    main()
