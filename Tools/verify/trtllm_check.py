#!/usr/bin/env python3
"""Independent cross-check of Kiln's quantized checkpoint writers, with numpy + safetensors + ml_dtypes only.

  trtllm_check.py trtllm CKPT_DIR EXPECTED    TensorRT-LLM checkpoint: merge the ranks, dequantize,
                                              rebuild the Hugging Face tensors, compare with EXPECTED
  trtllm_check.py hfquant DIR EXPECTED        unified HF checkpoint: dequantize, compare with EXPECTED

EXPECTED is a .safetensors file or HF folder with Hugging Face names: float tensors as they should
come back (compared bit for bit, dtype included) and, for every quantized linear, its dequantized
weight q·s in float32 (compared bit for bit). Every .safetensors file of the checkpoint is loaded.

Written from the format descriptions (TensorRT-LLM's checkpoint docs and convert scripts, ModelOpt's
export docs), not from Kiln's Swift code:

- TensorRT-LLM: config.json mapping.tp_size ranks rank{r}.safetensors. Llama names:
  transformer.vocab_embedding, transformer.layers.N.{input_layernorm, attention.qkv, attention.dense,
  post_layernorm, mlp.fc (= gate_proj), mlp.gate (= up_proj), mlp.proj (= down_proj)}, transformer.ln_f,
  lm_head. qkv on rank r = its query heads, then its key heads, then its value heads; when there are
  fewer KV heads than ranks each KV head is repeated on tp/kv consecutive ranks. Column-parallel
  (qkv, fc, gate, lm_head) tensors concatenate on dim 0, row-parallel (dense, proj) on dim 1; lm_head
  and a dim-0-sharded embedding are zero-padded to a multiple of tp. GPT-2: Conv1D weights are stored
  transposed ([out, in]) and position_embedding is added.
  Dequantization: FP8 weight · weights_scaling_factor[0]; INT8 weight · weights_scaling_factor[:, None];
  INT4: I8 [out/2, in], low nibble = row 2k, high nibble = row 2k+1 (two's complement),
  · weights_scaling_factor repeated over groups of in / scale_cols.
- Unified HF: X.weight with X.weight_scale: F8_E4M3 · scale; I8 · scale[:, None]; U8 packed as above.
Exit 0 with a JSON line on success; exit 1 with a JSON line naming the first difference.
"""
import json
import os
import sys

# Do not let sibling scripts (e.g. a tokenize.py) shadow standard modules numpy imports.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402

np.float8_e4m3fn = ml_dtypes.float8_e4m3fn  # safetensors' numpy loader looks the fp8 type up on numpy
np.float8_e5m2 = ml_dtypes.float8_e5m2
from safetensors import safe_open  # noqa: E402

F32 = np.float32
SCALE_SUFFIXES = (".weight_scale", ".weight_scale_2", ".input_scale", ".pre_quant_scale")


def fail(**info):
    print(json.dumps({"ok": False, **info}, default=str))
    sys.exit(1)


def load(path):
    f = safe_open(path, framework="np")
    return {k: f.get_tensor(k) for k in f.keys()}


def load_folder(path):
    if os.path.isfile(path):
        return load(path)
    out = {}
    for n in sorted(os.listdir(path)):
        if n.endswith(".safetensors") and not n.startswith("."):
            out.update(load(os.path.join(path, n)))
    return out


def unpack_int4_rows(packed):
    u = packed.view(np.uint8).astype(np.int16)
    lo, hi = u & 0xF, u >> 4
    lo = np.where(lo > 7, lo - 16, lo)
    hi = np.where(hi > 7, hi - 16, hi)
    q = np.empty((2 * u.shape[0], u.shape[1]), dtype=np.int16)
    q[0::2], q[1::2] = lo, hi
    return q


def dequantize(w, scale):
    if w.dtype == ml_dtypes.float8_e4m3fn:
        return w.astype(F32) * scale.astype(F32).reshape(-1)[0]
    if w.dtype == np.int8 and scale.ndim == 1:
        return w.astype(F32) * scale.astype(F32)[:, None]
    # int4 packed along the output dim (I8 in TensorRT-LLM, U8 in the unified HF checkpoint)
    q = unpack_int4_rows(w)
    group = q.shape[1] // scale.shape[1]
    return q.astype(F32) * np.repeat(scale.astype(F32), group, axis=1)


def trtllm(ckpt):
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    tp = cfg["mapping"]["tp_size"]
    ranks = [load(os.path.join(ckpt, f"rank{r}.safetensors")) for r in range(tp)]
    gpt2 = cfg["architecture"] in ("GPT2LMHeadModel", "GPTForCausalLM")
    H, KV = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    D = cfg.get("head_size", cfg["hidden_size"] // H)
    vocab = cfg["vocab_size"]

    def weight(name, r):
        w = ranks[r][name + ".weight"]
        s = ranks[r].get(name + ".weights_scaling_factor")
        return w if s is None else dequantize(w, s)

    def column(name):
        return np.concatenate([weight(name, r) for r in range(tp)], axis=0)

    def row(name):
        return np.concatenate([weight(name, r) for r in range(tp)], axis=1)

    def bias(name, col):
        if name + ".bias" not in ranks[0]:
            return None
        return np.concatenate([ranks[r][name + ".bias"] for r in range(tp)]) if col else ranks[0][name + ".bias"]

    def split_qkv(parts):
        """parts: per-rank arrays with q, k, v rows of that rank -> full q, k, v."""
        qr, kvr = H // tp * D, (KV // tp if KV >= tp else 1) * D
        q = np.concatenate([p[:qr] for p in parts])
        keep = range(tp) if KV >= tp else range(0, tp, tp // KV)
        k = np.concatenate([parts[r][qr:qr + kvr] for r in keep])
        v = np.concatenate([parts[r][qr + kvr:qr + 2 * kvr] for r in keep])
        return q, k, v

    def embedding(name, rows):
        if not cfg.get("use_parallel_embedding", False) or tp == 1:
            return ranks[0][name]
        dim = cfg.get("embedding_sharding_dim", 0)
        return np.concatenate([ranks[r][name] for r in range(tp)], axis=dim)[:rows]

    out = {}
    L = cfg["num_hidden_layers"]
    if gpt2:
        out["transformer.wte.weight"] = embedding("transformer.vocab_embedding.weight", vocab)
        out["transformer.wpe.weight"] = embedding("transformer.position_embedding.weight", cfg["max_position_embeddings"])
    else:
        out["model.embed_tokens.weight"] = embedding("transformer.vocab_embedding.weight", vocab)
    for i in range(L):
        t = f"transformer.layers.{i}."
        q, k, v = split_qkv([weight(t + "attention.qkv", r) for r in range(tp)])
        qkv_b = None
        if t + "attention.qkv.bias" in ranks[0]:
            qkv_b = split_qkv([ranks[r][t + "attention.qkv.bias"] for r in range(tp)])
        if gpt2:
            h = f"transformer.h.{i}."
            for src, dst in (("input_layernorm", "ln_1"), ("post_layernorm", "ln_2")):
                out[h + dst + ".weight"] = ranks[0][t + src + ".weight"]
                out[h + dst + ".bias"] = ranks[0][t + src + ".bias"]
            out[h + "attn.c_attn.weight"] = np.concatenate([q, k, v]).T
            out[h + "attn.c_attn.bias"] = np.concatenate(qkv_b)
            out[h + "attn.c_proj.weight"] = row(t + "attention.dense").T
            out[h + "attn.c_proj.bias"] = bias(t + "attention.dense", False)
            out[h + "mlp.c_fc.weight"] = column(t + "mlp.fc").T
            out[h + "mlp.c_fc.bias"] = bias(t + "mlp.fc", True)
            out[h + "mlp.c_proj.weight"] = row(t + "mlp.proj").T
            out[h + "mlp.c_proj.bias"] = bias(t + "mlp.proj", False)
            continue
        h = f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = ranks[0][t + "input_layernorm.weight"]
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), (q, k, v), qkv_b or (None, None, None)):
            out[h + f"self_attn.{name}.weight"] = w
            if b is not None:
                out[h + f"self_attn.{name}.bias"] = b
        if t + "attention.k_cache_scaling_factor" in ranks[0]:
            out[h + "self_attn.k_proj.k_scale"] = ranks[0][t + "attention.k_cache_scaling_factor"].reshape(())
            out[h + "self_attn.v_proj.v_scale"] = ranks[0][t + "attention.v_cache_scaling_factor"].reshape(())
        out[h + "self_attn.o_proj.weight"] = row(t + "attention.dense")
        out[h + "post_attention_layernorm.weight"] = ranks[0][t + "post_layernorm.weight"]
        out[h + "mlp.gate_proj.weight"] = column(t + "mlp.fc")
        out[h + "mlp.up_proj.weight"] = column(t + "mlp.gate")
        out[h + "mlp.down_proj.weight"] = row(t + "mlp.proj")
    if gpt2:
        out["transformer.ln_f.weight"] = ranks[0]["transformer.ln_f.weight"]
        out["transformer.ln_f.bias"] = ranks[0]["transformer.ln_f.bias"]
    else:
        out["model.norm.weight"] = ranks[0]["transformer.ln_f.weight"]
    if "lm_head.weight" in ranks[0] and not cfg.get("tie_word_embeddings", False):
        out["lm_head.weight"] = column("lm_head")[:vocab]
    return out


def hfquant(folder):
    raw = load_folder(folder)
    json.load(open(os.path.join(folder, "hf_quant_config.json")))
    out = {}
    for k, v in raw.items():
        if k.endswith(SCALE_SUFFIXES):
            continue
        scale = raw.get(k[: -len(".weight")] + ".weight_scale") if k.endswith(".weight") else None
        out[k] = v if scale is None else dequantize(v, scale)
    return out


def compare(found, expected):
    if sorted(found) != sorted(expected):
        fail(reason="different tensor names", only_found=sorted(set(found) - set(expected))[:8],
             only_expected=sorted(set(expected) - set(found))[:8])
    for k, e in expected.items():
        f = np.array(found[k], order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        if f.dtype != e.dtype or f.shape != e.shape:
            fail(tensor=k, expected=f"{e.dtype}{list(e.shape)}", found=f"{f.dtype}{list(f.shape)}")
        if f.tobytes() != e.tobytes():
            a, b = f.reshape(-1).astype(F32), e.reshape(-1).astype(F32)
            i = int(np.nonzero(f.reshape(-1).view(np.uint8) != e.reshape(-1).view(np.uint8))[0][0]) // max(1, f.itemsize)
            fail(tensor=k, index=i, expected=float(b[i]), found=float(a[i]))
    return len(expected)


def main():
    cmd, path, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
    files = [n for n in os.listdir(path) if n.endswith(".safetensors")]
    for n in files:  # every written file loads with the reference library
        load(os.path.join(path, n))
    found = {"trtllm": trtllm, "hfquant": hfquant}[cmd](path)
    n = compare(found, load_folder(expected_path))
    print(json.dumps({"ok": True, "tensors": n, "files": len(files)}))


if __name__ == "__main__":
    main()
