#!/usr/bin/env python3
"""Malformed-input corpus for Kiln's readers (issue 10, DESIGN §9).

Usage: make_corpus.py OUT_DIR

Writes one bad input per case into OUT_DIR (a file or a folder), plus
OUT_DIR/manifest.json:

  {"cases": [{"name": ..., "category": ..., "path": "st/truncated-header/model.safetensors",
              "command": "inspect" | "convert" | "eval", "file": "<the file the error must name>",
              "expect": "<substring of the error message naming the problem>",
              "plugin": "<optional: a file passed as --plugin>",
              "args": [<optional: more kiln arguments, e.g. "--from", "trtllm">]}, ...]}

Paths are relative to OUT_DIR. `kiln inspect PATH` / `kiln convert PATH OUT` (or, for a
tokenizer case, `kiln eval PATH --text PATH/text.txt`) must fail on each case with exit code 1, one line `error: ...` on stderr naming OUT_DIR/file and
containing `expect`, and leave nothing in OUT's folder (Tests/CLITests/MalformedCorpusTests.swift).

Categories: safetensors files (truncations, bit flips in the header length and JSON,
lying sizes, huge dims, overflowing shapes, deep nesting, non-UTF-8, duplicate keys),
sharded checkpoints (index.json path tricks, missing shards, wrong types), HF folders
(config.json nonsense), ONNX (truncated protobuf, bit flips, lying dims, external data
path tricks and ranges, unknown data types, huge dims, deep subgraphs), TensorRT-LLM
checkpoints (missing/extra rank files, config lying about tp and sizes, wrong types),
unified HF quantized checkpoints (hf_quant_config nonsense, scale shape lies), side files
linked out of the model folder (writers would copy them), tokenizer.json / tokenizer.model
(unknown types, invalid merges, bad ids, deep nesting), and plugin libraries given with
--plugin (not ELF, no stamp, bad stamp).

Deterministic: fixed seeds, no timestamps. Needs numpy and onnx.
"""

import json
import os
import shutil
import struct
import sys

# Other tools live beside this script; its directory must not shadow stdlib modules.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

SEED = 20241010
CASES = []
OUT = ""


# ---------------------------------------------------------------- helpers


def case(name, category, path, expect, command="inspect", file=None, plugin=None, args=None):
    """Register a case (paths relative to OUT)."""
    entry = {"name": name, "category": category, "path": path, "command": command,
             "file": file if file is not None else path, "expect": expect}
    if plugin is not None:
        entry["plugin"] = plugin
    if args:
        entry["args"] = args
    assert not any(c["name"] == name for c in CASES), name
    CASES.append(entry)


def out(rel):
    p = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def write(rel, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(out(rel), "wb") as f:
        f.write(data)


def write_json(rel, obj):
    write(rel, json.dumps(obj, indent=2) + "\n")


def flip(data, offset, bit):
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int8): "I8",
             np.dtype(np.uint8): "U8", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64"}


def st_header(tensors, metadata=None):
    """(header dict, data bytes) of a valid safetensors file holding `tensors` [(name, array)]."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, a in tensors:
        raw = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": ST_DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return header, data


def st_pack(header_bytes, data, length=None, pad=True):
    """A safetensors file from raw header bytes (padded with spaces to 8) and data."""
    if isinstance(header_bytes, str):
        header_bytes = header_bytes.encode("utf-8")
    if pad:
        header_bytes += b" " * ((8 - len(header_bytes) % 8) % 8)
    n = len(header_bytes) if length is None else length
    return struct.pack("<Q", n) + header_bytes + data


def st_file(tensors, metadata=None):
    header, data = st_header(tensors, metadata)
    return st_pack(json.dumps(header, separators=(",", ":")), data)


def rng():
    return np.random.default_rng(SEED)


def small_tensors():
    r = rng()
    return [("a", r.standard_normal((4, 4)).astype(np.float32)),
            ("b", r.standard_normal((8,)).astype(np.float32))]


# ---------------------------------------------------------------- safetensors files


def safetensors_cases():
    cat = "safetensors"
    good = st_file(small_tensors(), {"format": "pt"})
    header_len = struct.unpack("<Q", good[:8])[0]

    def st(name, data, expect, command="inspect"):
        rel = f"st/{name}/model.safetensors"
        write(rel, data)
        case(f"st-{name}", cat, rel, expect, command)

    st("empty", b"", "expected at least 8 bytes")
    st("truncated-length", good[:5], "expected at least 8 bytes")
    st("truncated-header", good[:8 + header_len // 2], "truncated file or lying header")
    st("truncated-data", good[:-20], "truncated file", command="convert")
    st("truncated-one-byte", good[:-1], "truncated file")
    st("length-bit-62", flip(good, 7, 6), "header length: expected at most 100000000 bytes")
    st("length-bit-40", flip(good, 5, 0), "header length: expected at most 100000000 bytes")
    st("length-bit-20", flip(good, 2, 4), "truncated file or lying header")
    st("length-too-short", st_pack(good[8:8 + header_len], good[8 + header_len:], length=header_len - 9, pad=False),
       "header")
    st("length-zero", struct.pack("<Q", 0) + good[8:], "an empty header")
    # Bit flips inside the header JSON.
    st("json-open-brace", flip(good, 8, 1), "a JSON object starting with '{'")
    quote = good.index(b'"dtype"', 8)
    st("json-quote-flip", flip(good, quote, 0), "header")
    colon = good.index(b":", quote)
    st("json-colon-flip", flip(good, colon, 3), "header")
    digit = good.index(b'"data_offsets":[0,', 8) + len('"data_offsets":[0,')
    st("json-offset-digit-flip", flip(good, digit, 1), "data_offsets")
    # Lying sizes.
    h, d = st_header(small_tensors())
    h["a"]["data_offsets"] = [0, 60]
    st("offsets-lie-size", st_pack(json.dumps(h), d), "data_offsets: expected 64 bytes")
    h, d = st_header(small_tensors())
    h["b"]["data_offsets"] = [32, 64]
    h["a"]["data_offsets"] = [0, 64]
    st("offsets-overlap", st_pack(json.dumps(h), d), "overlaps tensor")
    h, d = st_header(small_tensors())
    h["b"]["data_offsets"] = [72, 104]
    st("offsets-gap", st_pack(json.dumps(h), d + bytes(8)), "gap of 8 bytes")
    h, d = st_header(small_tensors())
    st("trailing-data", st_pack(json.dumps(h), d + bytes(16)), "16 bytes after the last tensor")
    h, d = st_header(small_tensors())
    h["a"]["data_offsets"] = [64, 0]
    st("offsets-reversed", st_pack(json.dumps(h), d), "0 ≤ begin ≤ end")
    h, d = st_header(small_tensors())
    h["a"]["data_offsets"] = [0, 2**63 - 1]
    st("offsets-huge", st_pack(json.dumps(h), d), "data_offsets")
    h, d = st_header(small_tensors())
    h["a"]["data_offsets"] = [0.5, 64]
    st("offsets-float", st_pack(json.dumps(h), d), "[begin, end] integers")
    h, d = st_header(small_tensors())
    h["a"]["data_offsets"] = [0, 99999999999999999999999]
    st("offsets-bignum", st_pack(json.dumps(h), d), "[begin, end] integers")
    # Huge dims and overflowing shapes.
    h, d = st_header(small_tensors())
    h["a"]["shape"] = [2**40, 2**40]
    st("huge-dims", st_pack(json.dumps(h), d), "overflows")
    h, d = st_header(small_tensors())
    h["a"]["shape"] = [2**62, 4]
    st("shape-bytes-overflow", st_pack(json.dumps(h), d), "overflows")
    h, d = st_header(small_tensors())
    h["a"]["shape"] = [2**63 - 1, 2]
    st("shape-elements-overflow", st_pack(json.dumps(h), d), "overflows")
    h, d = st_header(small_tensors())
    h["a"]["shape"] = [4, -4]
    st("negative-dim", st_pack(json.dumps(h), d), "shape")
    h, d = st_header(small_tensors())
    h["a"]["shape"] = [4, "4"]
    st("dim-wrong-type", st_pack(json.dumps(h), d), "shape")
    h, d = st_header(small_tensors())
    h["a"]["shape"] = [1] * 65
    st("rank-65", st_pack(json.dumps(h), d), "at most 64 dimensions")
    h, d = st_header(small_tensors())
    h["a"]["dtype"] = "F128"
    st("unknown-dtype", st_pack(json.dumps(h), d), "dtype")
    h, d = st_header(small_tensors())
    h["a"]["dtype"] = 7
    st("dtype-wrong-type", st_pack(json.dumps(h), d), "dtype: expected a string")
    h, d = st_header(small_tensors())
    h["a"] = [1, 2]
    st("entry-not-object", st_pack(json.dumps(h), d), "an object with dtype, shape, data_offsets")
    h, d = st_header(small_tensors(), {"format": "pt"})
    h["__metadata__"] = {"format": 1}
    st("metadata-not-string", st_pack(json.dumps(h), d), "__metadata__")
    st("header-array", st_pack("[1, 2, 3]", b""), "a JSON object starting with '{'")
    st("header-bom", st_pack(b"\xef\xbb\xbf{}", b""), "a JSON object starting with '{'")
    # Deep nesting (in the metadata, where a lax parser would recurse).
    deep = '{"__metadata__":' + "[" * 100000 + "]" * 100000 + "}"
    st("deep-nesting", st_pack(deep, b""), "nesting depth")
    deep_obj = '{"__metadata__":' + '{"a":' * 20 + "1" + "}" * 20 + "}"
    st("nested-objects", st_pack(deep_obj, b""), "nesting depth")
    # Non-UTF-8 and control characters.
    h, d = st_header(small_tensors())
    text = json.dumps(h).replace('"b"', '"b\udcff"', 1).encode("utf-8", "surrogateescape")
    st("non-utf8-name", st_pack(text, d), "UTF-8")
    text = json.dumps(h).replace('"b"', '"b\x01"', 1).encode("utf-8")
    st("control-char-name", st_pack(text, d), "control character")
    text = json.dumps(h).replace('"b"', '"b\\ud800"', 1).encode("utf-8")
    st("lone-surrogate-name", st_pack(text, d), "surrogate")
    # Duplicate keys.
    h, d = st_header(small_tensors())
    text = json.dumps(h)
    text = text[:-1] + ', "a": ' + json.dumps(h["a"]) + "}"
    st("duplicate-tensor", st_pack(text, d), "a")
    text = json.dumps(h)
    text = text.replace('"dtype": "F32"', '"dtype": "F32", "dtype": "F16"', 1)
    st("duplicate-field", st_pack(text, d), "dtype")
    st("number-nan", st_pack('{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}', b""),
       "NaN and Infinity are not JSON")
    st("trailing-garbage", st_pack('{} x', b""), "header")


# ---------------------------------------------------------------- sharded checkpoints and HF folders


def shard_folder(rel, shards):
    """Write shards {file: [(name, array)]} and return the weight map."""
    weight_map = {}
    for fname, tensors in shards.items():
        write(f"{rel}/{fname}", st_file(tensors))
        for n, _ in tensors:
            weight_map[n] = fname
    return weight_map


def index_cases():
    cat = "sharded"
    r = rng()
    s1 = [("a", r.standard_normal((4, 4)).astype(np.float32))]
    s2 = [("b", r.standard_normal((8,)).astype(np.float32))]
    index = "model.safetensors.index.json"
    names = {"model-00001-of-00002.safetensors": s1, "model-00002-of-00002.safetensors": s2}

    def idx(name, weight_map, expect, command="inspect", shards=names, raw=None):
        rel = f"index/{name}"
        shard_folder(rel, shards)
        if raw is not None:
            write(f"{rel}/{index}", raw)
        else:
            write_json(f"{rel}/{index}", {"metadata": {"total_size": 96}, "weight_map": weight_map})
        case(f"index-{name}", cat, rel, expect, command, file=f"{rel}/{index}")

    base = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    # A valid shard outside every case folder: the target of path tricks.
    write("index/outside/model-00001-of-00001.safetensors", st_file(s1))
    idx("dotdot", dict(base, a="../outside/model-00001-of-00001.safetensors"), "a file name inside the checkpoint folder")
    idx("dotdot-middle", dict(base, a="sub/../../outside/model-00001-of-00001.safetensors"),
        "a file name inside the checkpoint folder", command="convert")
    idx("absolute", dict(base, a="/etc/hostname"), "a file name inside the checkpoint folder")
    idx("empty-name", dict(base, a=""), "a file name inside the checkpoint folder")
    idx("symlink-out", dict(base, a="linked.safetensors"), "leads outside the checkpoint folder", command="convert")
    os.symlink("../outside/model-00001-of-00001.safetensors", out("index/symlink-out/linked.safetensors"))
    idx("dir-symlink-out", dict(base, a="sub/model-00001-of-00001.safetensors"), "leads outside the checkpoint folder")
    os.symlink("../outside", out("index/dir-symlink-out/sub"))
    idx("missing-shard", dict(base, b="model-00003-of-00002.safetensors"), "does not exist")
    idx("weight-map-list", None, "weight_map: expected an object", raw=json.dumps({"weight_map": ["a", "b"]}))
    idx("weight-map-missing", None, "weight_map: expected an object", raw=json.dumps({"metadata": {}}))
    idx("shard-name-int", dict(base, a=5), "a shard file name")
    idx("tensor-not-in-shard", dict(base, c="model-00001-of-00002.safetensors"), "tensor is not in its shard")
    idx("index-truncated", None, "expected", raw=json.dumps({"weight_map": base})[:30])
    idx("index-not-utf8", None, "UTF-8", raw=b'{"weight_map": {"a\xff": "x"}}')
    idx("index-deep", None, "nesting depth", raw='{"weight_map": ' + "[" * 5000 + "]" * 5000 + "}")
    idx("index-duplicate-key", None, "a", raw='{"weight_map": {"a": "model-00001-of-00002.safetensors", '
        '"a": "model-00002-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}')
    idx("shard-is-folder", dict(base, a="adir"), "not a regular file")
    os.makedirs(out("index/shard-is-folder/adir/x"))
    CASES[-1]["file"] = "index/shard-is-folder/adir"
    # A shard whose own header is broken: the error names the shard.
    rel = "index/shard-truncated"
    shard_folder(rel, names)
    write_json(f"{rel}/{index}", {"weight_map": base})
    good = st_file(s2)
    write(f"{rel}/model-00002-of-00002.safetensors", good[:-4])
    case("index-shard-truncated", cat, rel, "truncated file", "convert", file=f"{rel}/model-00002-of-00002.safetensors")
    # Same tensor in two single files of an index-less folder.
    rel = "index/duplicate-across-files"
    write(f"{rel}/a.safetensors", st_file(s1))
    write(f"{rel}/b.safetensors", st_file(s1))
    case("folder-duplicate-tensor", cat, rel, "duplicate tensor name", file=f"{rel}/b.safetensors")


def hf_folder_cases():
    cat = "config.json"
    model = st_file(small_tensors())

    def folder(name, config_bytes, expect, command="inspect"):
        rel = f"hf/{name}"
        write(f"{rel}/model.safetensors", model)
        write(f"{rel}/config.json", config_bytes)
        case(f"config-{name}", cat, rel, expect, command, file=f"{rel}/config.json")

    folder("truncated", '{"architectures": ["LlamaForCausalLM"], "hidden_size": 6', "found end of input")
    folder("not-json", "hidden_size = 64\n", "expected")
    folder("deep", "[" * 100000 + "]" * 100000, "nesting depth", command="convert")
    folder("non-utf8", b'{"model_type": "ll\xc0\xafama"}', "UTF-8")
    folder("empty", "", "expected a JSON value")
    folder("nan", '{"rms_norm_eps": NaN}', "NaN and Infinity are not JSON")
    folder("huge-number", '{"rms_norm_eps": 1e999}', "within the range of Double")
    folder("bad-escape", '{"model_type": "\\q"}', "escape")
    folder("trailing-comma", '{"model_type": "llama",}', "expected")

    # Side files travel into the output: a link out of the folder would copy a stranger's file.
    cat = "side files"
    write("hf/outside/secret.txt", "not for the output\n")
    for name, side, command in [("tokenizer-symlink-out", "tokenizer.json", "convert"),
                                ("config-symlink-out", "config.json", "inspect"),
                                ("tokenizer-is-folder", "tokenizer_config.json", "convert")]:
        rel = f"hf/{name}"
        write(f"{rel}/model.safetensors", model)
        if name.endswith("is-folder"):
            os.makedirs(out(f"{rel}/{side}/x"))
            expect = "not a regular file"
        else:
            os.symlink("../outside/secret.txt", out(f"{rel}/{side}"))
            expect = "leads outside the model folder"
        case(f"side-{name}", cat, rel, expect, command, file=f"{rel}/{side}")
    rel = "onnx/tokenizer-symlink-out"
    write(f"{rel}/model.onnx", onnx_bytes(onnx_model()))
    os.symlink("../../hf/outside/secret.txt", out(f"{rel}/tokenizer.json"))
    case("side-onnx-tokenizer-symlink-out", cat, f"{rel}/model.onnx", "leads outside the model folder", "convert",
         file=f"{rel}/tokenizer.json")
    rel = "trtllm/tokenizer-symlink-out"
    write_json(f"{rel}/config.json", TRT_CONFIG)
    write(f"{rel}/rank0.safetensors", st_file(trt_rank()))
    os.symlink("../../hf/outside/secret.txt", out(f"{rel}/tokenizer.json"))
    case("side-trtllm-tokenizer-symlink-out", cat, rel, "leads outside the model folder", "convert",
         file=f"{rel}/tokenizer.json")


# ---------------------------------------------------------------- ONNX


def onnx_model(initializers=None, nodes=None, extra_graph=None):
    """A small valid model: Y = X @ W + B."""
    r = rng()
    w = r.standard_normal((4, 4)).astype(np.float32)
    b = r.standard_normal((4,)).astype(np.float32)
    inits = initializers if initializers is not None else [
        helper.make_tensor("W", TensorProto.FLOAT, [4, 4], w.tobytes(), raw=True),
        helper.make_tensor("B", TensorProto.FLOAT, [4], b.tobytes(), raw=True)]
    nodes = nodes if nodes is not None else [
        helper.make_node("MatMul", ["X", "W"], ["XW"], name="mm"),
        helper.make_node("Add", ["XW", "B"], ["Y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])], inits)
    if extra_graph:
        extra_graph(graph)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
                             producer_name="kiln-corpus")


def onnx_bytes(model):
    return model.SerializeToString(deterministic=True)


def external_tensor(name, dims, location, offset=None, length=None, data_type=TensorProto.FLOAT):
    t = TensorProto()
    t.name = name
    t.data_type = data_type
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in [("location", location), ("offset", offset), ("length", length)]:
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    return t


def onnx_cases():
    cat = "onnx"

    def ox(name, data, expect, command="inspect", file_name="model.onnx"):
        rel = f"onnx/{name}/{file_name}"
        write(rel, data)
        case(f"onnx-{name}", cat, rel, expect, command)

    good = onnx_bytes(onnx_model())
    ox("empty", b"", "empty file")
    ox("truncated-half", good[: len(good) // 2], "truncated file?")
    ox("truncated-tail", good[:-3], "invalid protobuf", command="convert")
    ox("truncated-1", good[:1], "invalid protobuf")
    ox("not-protobuf", b"\x00\x01\x02 plain text, not a model\n", "invalid protobuf")
    # Bit flips: the first tag (field 1 → field 0), the graph's length varint, a wire type.
    ox("flip-first-tag", flip(good, 0, 3), "invalid protobuf")
    graph_at = good.index(b"\x3a")  # field 7 (graph), wire type 2
    ox("flip-graph-length", flip(good, graph_at + 1, 6), "invalid protobuf")
    ox("flip-wire-type", flip(good, graph_at, 2), "invalid protobuf")
    # Lying dims vs raw_data size.
    m = onnx_model()
    m.graph.initializer[0].dims[:] = [4, 5]
    ox("dims-lie", onnx_bytes(m), "initializer size does not match its dims", command="convert")
    m = onnx_model()
    m.graph.initializer[1].raw_data = m.graph.initializer[1].raw_data[:-2]
    ox("raw-data-short", onnx_bytes(m), "initializer size does not match its dims")
    m = onnx_model()
    del m.graph.initializer[0].dims[:]
    m.graph.initializer[0].dims.extend([2**40, 2**40])
    ox("huge-dims", onnx_bytes(m), "overflows")
    m = onnx_model()
    del m.graph.initializer[0].dims[:]
    m.graph.initializer[0].dims.extend([2**62, 2**2])
    ox("dims-bytes-overflow", onnx_bytes(m), "overflows")
    # Typed field (float_data) of one value under dims claiming 2^59 elements: refused before allocating
    # (FuzzONNX crash-faec875d: the reader allocated the dims' bytes first and aborted).
    m = onnx_model()
    m.graph.initializer[0].ClearField("raw_data")
    m.graph.initializer[0].float_data.append(1.0)
    m.graph.initializer[0].dims[:] = [2**29, 2**30]
    ox("typed-data-huge-dims", onnx_bytes(m), "initializer size does not match its dims")
    m = onnx_model()
    m.graph.initializer[0].dims[:] = [-4, 4]
    ox("negative-dim", onnx_bytes(m), "a non-negative size")
    m = onnx_model()
    del m.graph.initializer[0].dims[:]
    m.graph.initializer[0].dims.extend([1] * 65)
    ox("rank-65", onnx_bytes(m), "at most 64 dimensions")
    m = onnx_model()
    for _ in range(70):
        m.graph.input[0].type.tensor_type.shape.dim.add().dim_value = 1
    ox("input-rank-72", onnx_bytes(m), "at most 64 dimensions")
    m = onnx_model()
    m.graph.initializer[0].data_type = 99
    ox("unknown-dtype", onnx_bytes(m), "unknown data type")
    m = onnx_model()
    m.graph.initializer[0].data_type = 0
    ox("undefined-dtype", onnx_bytes(m), "unknown data type")
    m = onnx_model()
    m.graph.initializer[0].ClearField("raw_data")
    m.graph.initializer[0].float_data.extend([1.0] * 3)
    ox("typed-data-short", onnx_bytes(m), "initializer size does not match its dims")
    m = onnx_model()
    m.ClearField("ir_version")
    ox("no-ir-version", onnx_bytes(m), "ir_version")
    m = onnx_model()
    m.ir_version = 99
    ox("ir-version-99", onnx_bytes(m), "newer than the newest Kiln reads")
    m = onnx_model()
    m.ClearField("graph")
    ox("no-graph", onnx_bytes(m), "the model has no graph")
    m = onnx_model()
    m.graph.node[1].input[1] = "nowhere"
    ox("dangling-input", onnx_bytes(m), "names no value")
    m = onnx_model()
    m.graph.initializer[1].name = "W"
    ox("duplicate-initializer", onnx_bytes(m), "already defined")
    m = onnx_model()
    m.opset_import[0].version = -3
    ox("negative-opset", onnx_bytes(m), "a positive opset version")

    # External data.
    def ext(name, location, expect, offset=None, length=None, setup=None, command="inspect", data_len=64):
        m = onnx_model()
        m.graph.initializer[0].CopyFrom(external_tensor("W", [4, 4], location, offset, length))
        rel = f"onnx/{name}"
        write(f"{rel}/model.onnx.data", bytes(data_len))
        if setup:
            setup(rel)
        write(f"{rel}/model.onnx", onnx_bytes(m))
        case(f"onnx-{name}", cat, f"{rel}/model.onnx", expect, command)

    write("onnx/outside.bin", bytes(64))
    ext("external-dotdot", "../outside.bin", '".." leads outside')
    ext("external-dotdot-deep", "sub/../../outside.bin", '".." leads outside', command="convert")
    ext("external-absolute", "/etc/hostname", "absolute path")
    ext("external-symlink", "link.bin", "symbolic link",
        setup=lambda rel: os.symlink("../outside.bin", out(f"{rel}/link.bin")))
    ext("external-missing", "nothere.bin", "does not exist")
    ext("external-past-eof", "model.onnx.data", "runs past the end", offset=32, length=64)
    ext("external-offset-past-eof", "model.onnx.data", "is past the end", offset=4096, length=64)
    ext("external-offset-text", "model.onnx.data", "expected a non-negative integer", offset="ten")
    ext("external-offset-negative", "model.onnx.data", "expected a non-negative integer", offset=-8)
    ext("external-offset-huge", "model.onnx.data", "is past the end", offset=2**63 - 1, length=64)
    ext("external-length-lie", "model.onnx.data", "found 32 bytes", offset=0, length=32)
    ext("external-no-location", "", "location: missing")
    ext("external-is-folder", "adir", "not a regular file",
        setup=lambda rel: os.makedirs(out(f"{rel}/adir/x")))
    ext("external-short-file", "model.onnx.data", "expected 64 bytes", data_len=12)

    # Deeply nested subgraphs (If inside If ...) and deep messages, written at the wire level:
    # python's protobuf refuses to build messages nested deeper than 100.
    ox("deep-subgraphs", deep_if_model(90), "nested more than 64")
    t = pb_field(1, pb_varint_field(1, TensorProto.FLOAT))  # TypeProto{tensor_type{elem_type FLOAT}}
    for _ in range(400):
        t = pb_field(4, pb_field(1, t))  # TypeProto{sequence_type{elem_type: t}}
    graph = onnx_model().graph.SerializeToString(deterministic=True) + pb_field(13, pb_field(1, b"XW") + pb_field(2, t))
    ox("deep-type-nesting", pb_model(graph), "invalid protobuf")


def pb_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field(number, payload):
    """A length-delimited field (wire type 2)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload


def pb_varint_field(number, value):
    return pb_varint(number << 3) + pb_varint(value)


def pb_model(graph):
    """ModelProto{ir_version 8, opset_import {"" 17}, graph}."""
    return pb_varint_field(1, 8) + pb_field(8, pb_field(1, "") + pb_varint_field(2, 17)) + pb_field(7, graph)


def deep_if_model(depth):
    """A graph whose If node's then_branch holds an If node whose then_branch ... `depth` graphs deep."""
    def value_info(name):
        return pb_field(1, name)

    graph = pb_field(1, pb_field(1, "X") + pb_field(2, "Z0") + pb_field(4, "Identity")) + pb_field(2, "g0") + pb_field(12, value_info("Z0"))
    for d in range(1, depth):
        attr = pb_field(1, "then_branch") + pb_field(6, graph) + pb_varint_field(20, 5)
        node = pb_field(1, "C") + pb_field(2, f"Z{d}") + pb_field(4, "If") + pb_field(5, attr)
        graph = pb_field(1, node) + pb_field(2, f"g{d}") + pb_field(12, value_info(f"Z{d}"))
    graph += pb_field(11, value_info("C")) + pb_field(11, value_info("X"))
    return pb_model(graph)


# ---------------------------------------------------------------- TensorRT-LLM checkpoints


TRT_CONFIG = {
    "architecture": "LlamaForCausalLM", "dtype": "float32", "logits_dtype": "float32", "vocab_size": 16,
    "max_position_embeddings": 64, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "head_size": 4, "intermediate_size": 16, "hidden_act": "silu",
    "norm_epsilon": 1e-05, "position_embedding_type": "rope_gpt_neox", "rotary_base": 10000.0,
    "use_parallel_embedding": False, "embedding_sharding_dim": 0, "tie_word_embeddings": False,
    "mapping": {"world_size": 1, "tp_size": 1, "pp_size": 1},
    "quantization": {"quant_algo": None, "kv_cache_quant_algo": None, "group_size": 128,
                     "has_zero_point": False, "pre_quant_scale": False, "exclude_modules": None},
}


def trt_rank(tp=1, rank=0, quant=None, overrides=None):
    """Tensors of one rank of a tiny Llama checkpoint (H 8, 2 heads, 1 KV head, I 16, V 16)."""
    H, I, V, hd, NH, KV = 8, 16, 16, 4, 2, 1
    r = np.random.default_rng(SEED + rank)
    f = lambda *s: r.standard_normal(s).astype(np.float32)  # noqa: E731
    q_r, kv_r = NH * hd // tp, KV * hd
    t = {
        "transformer.vocab_embedding.weight": f(V, H),
        "transformer.layers.0.input_layernorm.weight": np.ones(H, np.float32),
        "transformer.layers.0.attention.qkv.weight": f(q_r + 2 * kv_r, H),
        "transformer.layers.0.attention.dense.weight": f(H, NH * hd // tp),
        "transformer.layers.0.post_layernorm.weight": np.ones(H, np.float32),
        "transformer.layers.0.mlp.fc.weight": f(I // tp, H),
        "transformer.layers.0.mlp.gate.weight": f(I // tp, H),
        "transformer.layers.0.mlp.proj.weight": f(H, I // tp),
        "transformer.ln_f.weight": np.ones(H, np.float32),
        "lm_head.weight": f(V // tp, H),
    }
    if quant == "int8":
        for m in ["attention.qkv", "attention.dense", "mlp.fc", "mlp.gate", "mlp.proj"]:
            name = "transformer.layers.0." + m
            w = t[name + ".weight"]
            t[name + ".weight"] = np.clip(np.round(w * 40), -127, 127).astype(np.int8)
            rows = w.shape[0] if m not in ["attention.dense", "mlp.proj"] else H
            t[name + ".weights_scaling_factor"] = np.full((rows,), 0.025, np.float32)
            t[name + ".activation_scaling_factor"] = np.full((1,), 0.1, np.float32)
    for k, v in (overrides or {}).items():
        if v is None:
            t.pop(k, None)
        else:
            t[k] = v
    return sorted(t.items())


def trt_cases():
    cat = "trtllm"

    def trt(name, expect, config=None, ranks=None, command="inspect", file="config.json", raw_config=None, args=None):
        rel = f"trtllm/{name}"
        if raw_config is not None:
            write(f"{rel}/config.json", raw_config)
        else:
            write_json(f"{rel}/config.json", config if config is not None else TRT_CONFIG)
        for i, tensors in enumerate(ranks if ranks is not None else [trt_rank()]):
            if tensors is not None:
                write(f"{rel}/rank{i}.safetensors", tensors if isinstance(tensors, bytes) else st_file(tensors))
        case(f"trtllm-{name}", cat, rel, expect, command, file=f"{rel}/{file}", args=args)

    def cfg(**changes):
        c = json.loads(json.dumps(TRT_CONFIG))
        for k, v in changes.items():
            if "." in k:
                a, b = k.split(".")
                c[a][b] = v
            elif v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    tp2 = cfg(**{"mapping.world_size": 2, "mapping.tp_size": 2})
    trt("missing-rank1", "missing: config.json says world_size 2", tp2, [trt_rank(2, 0), None], file="rank1.safetensors")
    trt("extra-rank", "unexpected rank file", None, [trt_rank(), trt_rank()], file="rank1.safetensors")
    trt("world-size-lie", "world_size", cfg(**{"mapping.world_size": 3, "mapping.tp_size": 2}), [trt_rank(2, 0), trt_rank(2, 1)])
    trt("tp-huge", "tp_size: expected at most 64", cfg(**{"mapping.world_size": 4096, "mapping.tp_size": 4096}))
    trt("tp-zero", "tp_size", cfg(**{"mapping.world_size": 0, "mapping.tp_size": 0}))
    trt("tp-string", "tp_size", cfg(**{"mapping.tp_size": "2"}))
    trt("tp-int64-max", "tp_size", cfg(**{"mapping.tp_size": 2**63 - 1, "mapping.world_size": 2**63 - 1}))
    trt("pp-2", "pipeline-parallel", cfg(**{"mapping.pp_size": 2, "mapping.world_size": 2}))
    trt("mapping-list", "mapping", cfg(mapping=[1, 1, 1]))
    trt("hidden-string", "hidden_size", cfg(hidden_size="eight"))
    trt("hidden-float", "hidden_size", cfg(hidden_size=8.5))
    trt("hidden-negative", "hidden_size", cfg(hidden_size=-8))
    trt("hidden-lie", "shape", cfg(hidden_size=16, head_size=8), command="convert", file="rank0.safetensors")
    trt("vocab-lie", "shape", cfg(vocab_size=32), file="rank0.safetensors")
    trt("layers-lie", "missing", cfg(num_hidden_layers=2), file="rank0.safetensors")
    trt("layers-huge", "at most 10000", cfg(num_hidden_layers=2**31 - 1))
    trt("heads-zero", "num_attention_heads", cfg(num_attention_heads=0))
    trt("kv-heads-not-divisor", "key/value heads", cfg(num_key_value_heads=3, num_attention_heads=2))
    trt("heads-not-divisible-by-tp", "not divisible by tp", cfg(**{"mapping.world_size": 4, "mapping.tp_size": 4,
                                                                    "num_attention_heads": 2}),
        [trt_rank()] * 4)
    trt("unknown-architecture", "found \"BertModel\"", cfg(architecture="BertModel"))
    # Without an architecture the folder is no TensorRT-LLM checkpoint to the probe: name the reader.
    trt("architecture-missing", "architecture", cfg(architecture=None), args=["--from", "trtllm"])
    trt("dtype-int", "dtype", cfg(dtype="int8"))
    trt("unknown-quant-algo", "quant_algo", cfg(**{"quantization.quant_algo": "W3A3_MAGIC"}))
    trt("quant-not-object", "quantization", cfg(quantization="FP8"))
    trt("exclude-not-list", "exclude_modules", cfg(**{"quantization.exclude_modules": "lm_head"}))
    trt("zero-point", "zero-point", cfg(**{"quantization.has_zero_point": True}))
    trt("config-not-object", "a JSON object", raw_config="[1, 2, 3]", args=["--from", "trtllm"])
    trt("config-truncated", "end of input", raw_config=json.dumps(TRT_CONFIG)[:100])
    trt("config-deep", "nesting depth", raw_config='{"architecture": "LlamaForCausalLM", "x": ' + "[" * 3000 + "]" * 3000 + "}")
    trt("tensor-missing", "missing (expected from config.json", None,
        [trt_rank(overrides={"transformer.ln_f.weight": None})], file="rank0.safetensors")
    trt("tensor-wrong-shape", "shape", None,
        [trt_rank(overrides={"transformer.layers.0.mlp.fc.weight": np.zeros((15, 8), np.float32)})],
        command="convert", file="rank0.safetensors")
    trt("rank-dtype-mismatch", "as on rank 0", tp2,
        [trt_rank(2, 0), trt_rank(2, 1, overrides={"transformer.layers.0.mlp.fc.weight": np.zeros((8, 8), np.float16)})],
        command="convert", file="rank1.safetensors")
    trt("rank-truncated", "truncated file", None, [st_file(trt_rank())[:-7]], file="rank0.safetensors")
    # Quantized checkpoints with lying scales.
    int8 = cfg(**{"quantization.quant_algo": "W8A8_SQ_PER_CHANNEL"})
    trt("int8-scale-lie", "shape", int8,
        [trt_rank(quant="int8", overrides={"transformer.layers.0.mlp.fc.weights_scaling_factor": np.ones(5, np.float32)})],
        file="rank0.safetensors")
    trt("int8-no-scale", "I8 weight without weights_scaling_factor", int8,
        [trt_rank(quant="int8", overrides={"transformer.layers.0.mlp.fc.weights_scaling_factor": None})],
        file="rank0.safetensors")
    trt("int4-group-lie", "group", int8,
        [trt_rank(quant="int8", overrides={"transformer.layers.0.mlp.fc.weights_scaling_factor": np.ones((16, 3), np.float32)})],
        file="rank0.safetensors")
    trt("scale-3d", "not a layout TensorRT-LLM defines", int8,
        [trt_rank(quant="int8", overrides={"transformer.layers.0.mlp.fc.weights_scaling_factor": np.ones((1, 1, 16), np.float32)})],
        file="rank0.safetensors")
    trt("act-scale-vector", "activation_scaling_factor", int8,
        [trt_rank(quant="int8", overrides={"transformer.layers.0.mlp.fc.activation_scaling_factor": np.ones(4, np.float32)})],
        file="rank0.safetensors")


# ---------------------------------------------------------------- unified HF quantized checkpoints


def hf_quant_cases():
    cat = "hf-quant"
    r = rng()
    w8 = np.clip(np.round(r.standard_normal((8, 16)) * 40), -127, 127).astype(np.int8)

    def hfq(name, expect, tensors, quant_config=None, config=None, command="inspect", file="model.safetensors", raw=None):
        rel = f"hfquant/{name}"
        write(f"{rel}/model.safetensors", raw if raw is not None else st_file(tensors))
        if quant_config is not None:
            write(f"{rel}/hf_quant_config.json", quant_config if isinstance(quant_config, str) else json.dumps(quant_config))
        if config is not None:
            write_json(f"{rel}/config.json", config)
        case(f"hfquant-{name}", cat, rel, expect, command,
             file=f"{rel}/{file}" if file else rel)

    good_q = {"producer": {"name": "modelopt", "version": "0.19"},
              "quantization": {"quant_algo": "W8A8_SQ_PER_CHANNEL", "kv_cache_quant_algo": None, "exclude_modules": ["lm_head"]}}
    lin = "model.layers.0.mlp.down_proj."
    base = [(lin + "weight", w8), (lin + "weight_scale", np.full((8,), 0.02, np.float32)),
            (lin + "input_scale", np.array(0.1, np.float32))]

    def with_(**changes):
        d = dict(base)
        for k, v in changes.items():
            k = lin + k
            if v is None:
                d.pop(k)
            else:
                d[k] = v
        return sorted(d.items())

    hfq("quantization-list", "quantization: expected an object", base, {"quantization": ["FP8"]}, file="hf_quant_config.json")
    hfq("quantization-missing", "quantization: expected an object", base, {"producer": {}}, file="hf_quant_config.json")
    hfq("unknown-algo", "quant_algo", base, {"quantization": {"quant_algo": "NVFP3"}}, file="hf_quant_config.json")
    hfq("algo-number", "quant_algo", base, {"quantization": {"quant_algo": 8}}, file="hf_quant_config.json")
    hfq("group-negative", "group_size", base, {"quantization": {"quant_algo": "W4A16_AWQ", "group_size": -128}},
        file="hf_quant_config.json")
    hfq("group-string", "group_size", base, {"quantization": {"quant_algo": "W4A16_AWQ", "group_size": "128"}},
        file="hf_quant_config.json")
    hfq("exclude-string", "exclude_modules", base, {"quantization": {"quant_algo": "FP8", "exclude_modules": "lm_head"}},
        file="hf_quant_config.json")
    hfq("quant-config-truncated", "end of input", base, '{"quantization": {"quant_algo": "FP8"', file="hf_quant_config.json")
    hfq("quant-config-deep", "nesting depth", base, '{"quantization": ' + "[" * 2000 + "]" * 2000 + "}",
        file="hf_quant_config.json")
    hfq("scale-shape-lie", "per-channel INT8 scale", with_(weight_scale=np.ones(7, np.float32)), good_q, file="")
    hfq("scale-rank-lie", "per-channel INT8 scale", with_(weight_scale=np.ones((8, 1), np.float32)), good_q,
        command="convert", file="")
    h = {lin + "weight": {"dtype": "F8_E4M3", "shape": [8, 16], "data_offsets": [0, 128]},
         lin + "weight_scale": {"dtype": "F32", "shape": [3, 3], "data_offsets": [128, 164]}}
    hfq("fp8-scale-vector", "per-tensor FP8 scale", None, good_q, raw=st_pack(json.dumps(h), bytes(164)), file="")
    hfq("int4-scale-lie", "INT4 group scales",
        [(lin + "weight", np.zeros((4, 16), np.uint8)), (lin + "weight_scale", np.ones((8, 5), np.float32))],
        {"quantization": {"quant_algo": "W4A16_AWQ", "group_size": 4}}, file="")
    hfq("int4-scale-zero-groups", "INT4 group scales",
        [(lin + "weight", np.zeros((4, 16), np.uint8)), (lin + "weight_scale", np.ones((8, 0), np.float32))],
        {"quantization": {"quant_algo": "W4A16_AWQ", "group_size": 4}}, file="")
    hfq("weight-1d", "[out, in] (a quantized linear weight)", with_(weight=np.zeros(128, np.int8)), good_q, file="")
    hfq("weight-f32", "must be F8_E4M3, I8 or U8", with_(weight=np.zeros((8, 16), np.float32)), good_q, file="")
    hfq("orphan-scale", "without a quantized weight", with_(weight=None), good_q, file="")
    hfq("pre-quant-lie", "pre_quant_scale", with_(pre_quant_scale=np.ones(15, np.float32)), good_q, file="")
    # A packed int4 weight whose row count doubled overflows: [2^62 + 1, 0] holds no bytes.
    h = {lin + "weight": {"dtype": "U8", "shape": [2**62 + 1, 0], "data_offsets": [0, 0]},
         lin + "weight_scale": {"dtype": "F32", "shape": [2, 1], "data_offsets": [0, 8]}}
    hfq("int4-rows-overflow", "INT4 group scales", None, good_q, raw=st_pack(json.dumps(h), bytes(8)), file="")
    # config.json is re-serialized into the output: a link out of the folder is refused.
    write_json("hfquant/outside/config.json", {"secret": "not for the output"})
    hfq("config-symlink-out", "leads outside the model folder", base, good_q, file="config.json")
    os.symlink("../outside/config.json", out("hfquant/config-symlink-out/config.json"))
    # The modelopt quantization_config inside config.json instead of hf_quant_config.json.
    hfq("config-quantization-nonsense", "quant_algo", base, None,
        {"architectures": ["LlamaForCausalLM"], "quantization_config": {"quant_method": "modelopt", "quant_algo": ["FP8"]}},
        file="config.json")


# ---------------------------------------------------------------- tokenizers (kiln eval loads them)


HF_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}


def hf_llama_tensors():
    """A tiny valid Llama checkpoint matching HF_LLAMA_CONFIG."""
    H, I, V, hd = 8, 16, 16, 4
    r = rng()
    f = lambda *s: (r.standard_normal(s) * 0.1).astype(np.float32)  # noqa: E731
    p = "model.layers.0."
    return [("model.embed_tokens.weight", f(V, H)), (p + "input_layernorm.weight", np.ones(H, np.float32)),
            (p + "self_attn.q_proj.weight", f(2 * hd, H)), (p + "self_attn.k_proj.weight", f(hd, H)),
            (p + "self_attn.v_proj.weight", f(hd, H)), (p + "self_attn.o_proj.weight", f(H, 2 * hd)),
            (p + "post_attention_layernorm.weight", np.ones(H, np.float32)), (p + "mlp.gate_proj.weight", f(I, H)),
            (p + "mlp.up_proj.weight", f(I, H)), (p + "mlp.down_proj.weight", f(H, I)),
            ("model.norm.weight", np.ones(H, np.float32)), ("lm_head.weight", f(V, H))]


def bpe_tokenizer(**model_changes):
    vocab = {c: i for i, c in enumerate("abcdefghijklmno")}
    vocab["ab"] = 15
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": ["a b"]}
    model.update(model_changes)
    return {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": None, "decoder": None, "model": model}


def tokenizer_cases():
    cat = "tokenizer"
    weights = st_file(hf_llama_tensors())

    def tok(name, content, expect, file="tokenizer.json", extra=None):
        rel = f"tokenizer/{name}"
        write(f"{rel}/model.safetensors", weights)
        write_json(f"{rel}/config.json", HF_LLAMA_CONFIG)
        write(f"{rel}/text.txt", "abc def ghi jkl mno " * 8)
        if content is not None:
            write(f"{rel}/{file}", content if isinstance(content, (str, bytes)) else json.dumps(content))
        for k, v in (extra or {}).items():
            write(f"{rel}/{k}", v)
        case(f"tokenizer-{name}", cat, rel, expect, "eval", file=f"{rel}/{file}")

    good = bpe_tokenizer()
    tok("unknown-model-type", bpe_tokenizer(type="BPE2"), "BPE2")
    tok("model-missing", dict(good, model=None), "model")
    tok("merge-unknown-token", bpe_tokenizer(merges=["a zz"]), "merges")
    tok("merge-no-space", bpe_tokenizer(merges=["abc"]), "merges")
    tok("merge-wrong-type", bpe_tokenizer(merges=[5]), "merges")
    tok("merge-pair-of-three", bpe_tokenizer(merges=[["a", "b", "c"]]), "merges")
    tok("vocab-not-object", bpe_tokenizer(vocab=["a", "b"]), "vocab")
    tok("vocab-id-huge", bpe_tokenizer(vocab={"a": 2**40, "b": 1}), "vocab")
    tok("vocab-id-negative", bpe_tokenizer(vocab={"a": -1, "b": 1}), "vocab")
    tok("vocab-id-float", bpe_tokenizer(vocab={"a": 0.5, "b": 1}), "vocab")
    tok("unknown-pre-tokenizer", dict(good, pre_tokenizer={"type": "Telepathy"}), "Telepathy")
    tok("bad-split-regex", dict(good, pre_tokenizer={"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated",
                                                     "invert": False}), "pre_tokenizer")
    tok("added-token-not-object", dict(good, added_tokens=[5]), "added_tokens")
    tok("added-tokens-not-list", dict(good, added_tokens={"<s>": 0}), "added_tokens")
    tok("truncated", json.dumps(good)[:80], "end of input")
    tok("non-utf8", json.dumps(good).encode().replace(b'"ab": 15', b'"a\xff": 15'), "UTF-8")
    tok("deep-nesting", '{"model": ' + "[" * 100000 + "]" * 100000 + "}", "nesting depth")
    seq = {"type": "Lowercase"}
    for _ in range(300):
        seq = {"type": "Sequence", "normalizers": [seq]}
    tok("deep-normalizers", dict(good, normalizer=seq), "nesting depth")
    tok("sentencepiece-garbage", bytes(range(256)) * 4, "tokenizer.model", file="tokenizer.model")
    tok("tokenizer-config-bad-json", good, "expected", file="tokenizer_config.json",
        extra={"tokenizer.json": json.dumps(good)})
    CASES[-1]["file"] = "tokenizer/tokenizer-config-bad-json/tokenizer_config.json"
    write("tokenizer/tokenizer-config-bad-json/tokenizer_config.json", '{"bos_token": ')


# ---------------------------------------------------------------- plugin libraries (--plugin)


def elf_header(e_type=3, shoff=0, shnum=0, shentsize=64):
    h = bytearray(64)
    h[0:4] = b"\x7fELF"
    h[4], h[5], h[6] = 2, 1, 1
    struct.pack_into("<H", h, 16, e_type)
    struct.pack_into("<H", h, 18, 62)
    struct.pack_into("<Q", h, 0x28, shoff)
    struct.pack_into("<H", h, 0x3A, shentsize)
    struct.pack_into("<H", h, 0x3C, shnum)
    return bytes(h)


def plugin_cases():
    cat = "plugin"
    model = "plugin/model.safetensors"
    write(model, st_file(small_tensors()))

    def plug(name, data, expect):
        rel = f"plugin/lib{name}.so"
        write(rel, data)
        case(f"plugin-{name}", cat, model, expect, "inspect", file=rel, plugin=rel)

    plug("empty", b"", "no ELF header")
    plug("text", b"#!/bin/sh\necho not a library\n" * 4, "no ELF header")
    plug("elf-executable", elf_header(e_type=2) + bytes(64), "expected 3 = ET_DYN")
    plug("no-stamp", elf_header() + bytes(256), "no KILN-ABI-STAMP")
    plug("unterminated-stamp", elf_header() + b"KILN-ABI-STAMP{abi=1;sdk=0.1.0", "unterminated KILN-ABI-STAMP")
    plug("malformed-stamp", elf_header() + b"KILN-ABI-STAMP{garbage}\x00", "malformed KILN-ABI-STAMP")
    plug("other-abi", elf_header() + b"KILN-ABI-STAMP{abi=999;sdk=0.0.1;toolchain=none}\x00", "different Kiln ABI")
    plug("huge-section-table", elf_header(shoff=2**63 - 1, shnum=65535) + b"KILN-ABI-STAMP{abi=999;sdk=0;toolchain=x}\x00",
         "different Kiln ABI")


def main():
    global OUT
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    OUT = os.path.abspath(sys.argv[1])
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    safetensors_cases()
    index_cases()
    hf_folder_cases()
    onnx_cases()
    trt_cases()
    hf_quant_cases()
    tokenizer_cases()
    plugin_cases()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"generator": "Tools/corpus/make_corpus.py", "cases": CASES}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(CASES)} cases in {OUT}")


if __name__ == "__main__":
    main()
