#!/usr/bin/env python3
"""Independent references for Kiln's GPT-2 and BERT templates (numpy, onnx, onnxruntime, tokenizers).

  arch_check.py gpt2-make OUT_DIR TEXT        a tiny random GPT2LMHeadModel folder: model.safetensors (HF names,
                                              Conv1D weights [in, out], attn.bias buffers), config.json, and a
                                              byte-level BPE tokenizer.json trained on TEXT with `tokenizers`
  arch_check.py gpt2-forward DIR IDS OUT      logits of HF's GPT2LMHeadModel forward, written here in numpy f64
                                              from transformers' modeling_gpt2 (not from Kiln), for the
                                              sequences of IDS (JSON list of lists, equal lengths) → OUT
                                              (float32 [batch, seq, vocab])
  arch_check.py gpt2-ppl DIR TEXT MAX SEQ_LEN perplexity by protocol kiln-ppl-v1 (ids of TEXT by `tokenizers`, no
                                              special tokens, first MAX; [BOS] + chunks of SEQ_LEN − 1, every
                                              chunk id scored once) with the numpy forward above
  arch_check.py bert-extract MODEL.onnx OUT_DIR
                                              the weights of a BertModel ONNX export as a HF BertModel folder:
                                              initializers renamed to HF names, MatMul weights transposed to
                                              nn.Linear's [out, in], config.json from the graph's dims
  arch_check.py bert-ort MODEL.onnx IDS OUT_PREFIX
                                              the third-party MiniLM export in onnxruntime for IDS (right-padded
                                              with 0, attention_mask of the real tokens): token embeddings
                                              [batch, seq, hidden] → OUT_PREFIX.hidden, pooled → OUT_PREFIX.pooled
  arch_check.py ort-run MODEL.onnx IDS OUT_PREFIX
                                              a Kiln export in onnxruntime: input_ids (right-padded with 0),
                                              position_ids, and token_type_ids (0) / attention_mask when the
                                              model has them; every output → OUT_PREFIX.<name> (float32)

Prints one JSON line; exit 1 with {"error": ...} on failure.
"""
import json
import math
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import numpy as np  # noqa: E402

GPT2_SHAPE = {"n_embd": 32, "n_head": 4, "n_layer": 2, "n_positions": 48}


def fail(**info):
    print(json.dumps({"error": info}))
    sys.exit(1)


def ok(**info):
    print(json.dumps(info))


# ---------------------------------------------------------------- GPT-2

def gpt2_make(out, text_path):
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    os.makedirs(out, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    with open(text_path, encoding="utf-8") as f:
        lines = f.read().splitlines()[:2000]
    tok.train_from_iterator(lines, trainer)
    tok.save(os.path.join(out, "tokenizer.json"))
    vocab, eot = tok.get_vocab_size(), tok.token_to_id("<|endoftext|>")

    e, layers, positions = GPT2_SHAPE["n_embd"], GPT2_SHAPE["n_layer"], GPT2_SHAPE["n_positions"]
    rng = np.random.default_rng(2019)

    def normal(*shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    w = {"transformer.wte.weight": normal(vocab, e, std=0.5), "transformer.wpe.weight": normal(positions, e, std=0.3)}
    for i in range(layers):
        p = f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            w[p + ln + ".weight"] = (1 + normal(e, std=0.1)).astype(np.float32)
            w[p + ln + ".bias"] = normal(e, std=0.1)
        for name, shape in (("attn.c_attn", (e, 3 * e)), ("attn.c_proj", (e, e)), ("mlp.c_fc", (e, 4 * e)), ("mlp.c_proj", (4 * e, e))):
            w[p + name + ".weight"] = normal(*shape, std=0.25)  # Conv1D: [in, out]
            w[p + name + ".bias"] = normal(shape[1], std=0.1)
        w[p + "attn.bias"] = np.tril(np.ones((positions, positions), np.float32))[None, None]  # HF's mask buffer
    w["transformer.ln_f.weight"] = (1 + normal(e, std=0.1)).astype(np.float32)
    w["transformer.ln_f.bias"] = normal(e, std=0.1)
    save_file(w, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab, "n_embd": e,
              "n_head": GPT2_SHAPE["n_head"], "n_layer": layers, "n_positions": positions, "n_ctx": positions,
              "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
              "scale_attn_weights": True, "tie_word_embeddings": True, "bos_token_id": eot, "eos_token_id": eot}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    ok(vocab=vocab, tensors=len(w))


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu_new(x):
    # transformers.activations.NewGELUActivation
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * np.power(x, 3.0))))


def gpt2_load(folder):
    from safetensors.numpy import load_file
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(folder, "model.safetensors")).items()}
    return cfg, w


def gpt2_logits(cfg, w, ids):
    """transformers' GPT2LMHeadModel.forward (eval mode, no cache) for ids [batch, seq], float64."""
    e, nh, eps = cfg["n_embd"], cfg["n_head"], cfg["layer_norm_epsilon"]
    hd = e // nh
    batch, seq = ids.shape
    # GPT2Model.forward: inputs_embeds + position_embeds
    h = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][np.arange(seq)][None]
    causal = np.tril(np.ones((seq, seq), bool))
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        # GPT2Block: residual + attn(ln_1(x)); Conv1D(x) = x @ W + b with W [in, out]
        x = layer_norm(h, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = x @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = np.split(qkv, 3, axis=-1)  # GPT2Attention: query, key, value = c_attn(x).split(split_size, dim=2)
        heads = lambda t: t.reshape(batch, seq, nh, hd).transpose(0, 2, 1, 3)
        q, k, v = heads(q), heads(k), heads(v)
        scores = q @ k.transpose(0, 1, 3, 2)
        if cfg.get("scale_attn_weights", True):
            scores = scores / math.sqrt(hd)
        if cfg.get("scale_attn_by_inverse_layer_idx", False):
            scores = scores / float(i + 1)
        scores = np.where(causal, scores, np.finfo(np.float64).min)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        a = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, e)
        h = h + (a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"])
        x = layer_norm(h, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        m = gelu_new(x @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        h = h + (m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"])
    h = layer_norm(h, w["transformer.ln_f.weight"], w["transformer.ln_f.bias"], eps)
    return h @ w["transformer.wte.weight"].T  # tied lm_head


def gpt2_forward(folder, ids_path, out):
    cfg, w = gpt2_load(folder)
    with open(ids_path) as f:
        ids = np.asarray(json.load(f), dtype=np.int64)
    logits = gpt2_logits(cfg, w, ids)
    logits.astype("<f4").tofile(out)
    ok(shape=list(logits.shape))


def gpt2_ppl(folder, text_path, max_tokens, seq_len):
    from tokenizers import Tokenizer
    cfg, w = gpt2_load(folder)
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    with open(text_path, encoding="utf-8") as f:
        ids = tok.encode(f.read(), add_special_tokens=False).ids[:int(max_tokens)]
    chunk, nll, count = int(seq_len) - 1, 0.0, 0
    for start in range(0, len(ids), chunk):
        seq = [cfg["bos_token_id"]] + ids[start:start + chunk]
        logits = gpt2_logits(cfg, w, np.asarray([seq]))[0]
        logp = logits - logits.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        nll -= sum(logp[t - 1, seq[t]] for t in range(1, len(seq)))
        count += len(seq) - 1
    ok(perplexity=math.exp(nll / count), tokens=count)


# ---------------------------------------------------------------- BERT

def bert_extract(model_path, out):
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import save_file

    m = onnx.load(model_path)
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    prefix = "model.0.auto_model."
    tensors = {}
    for name, a in inits.items():
        if name.startswith(prefix):
            tensors[name[len(prefix):]] = a.astype(np.float32)
    # Dense weights are MatMul initializers [in, out]; the node name says which module they belong to.
    head_dim, eps, act = None, None, "gelu_new"
    for n in g.node:
        if n.op_type == "MatMul" and n.input[1] in inits:
            module = n.name.split("/auto_model/", 1)[1].rsplit("/MatMul", 1)[0].replace("/", ".")
            tensors[module + ".weight"] = np.ascontiguousarray(inits[n.input[1]].T.astype(np.float32))
        elif n.op_type == "Div" and "layer.0/attention/self" in n.name and head_dim is None:
            const = next(c for c in g.node if c.output and c.output[0] == n.input[1])
            head_dim = int(round(float(numpy_helper.to_array(const.attribute[0].t)) ** 2))
        elif n.op_type == "LayerNormalization" and eps is None:
            eps = next(a.f for a in n.attribute if a.name == "epsilon")
        elif n.op_type == "Erf" and "intermediate_act_fn" in n.name:
            act = "gelu"
    vocab, hidden = tensors["embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer."))
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": int(vocab), "hidden_size": int(hidden),
        "num_hidden_layers": layers, "num_attention_heads": int(hidden) // head_dim,
        "intermediate_size": int(tensors["encoder.layer.0.intermediate.dense.weight"].shape[0]),
        "max_position_embeddings": int(tensors["embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(tensors["embeddings.token_type_embeddings.weight"].shape[0]),
        "hidden_act": act, "layer_norm_eps": float(eps), "position_embedding_type": "absolute",
    }
    os.makedirs(out, exist_ok=True)
    save_file(dict(sorted(tensors.items())), os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    ok(tensors=len(tensors), config=config)


def padded(ids_path):
    with open(ids_path) as f:
        seqs = json.load(f)
    seq = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), seq), np.int64)
    mask = np.zeros((len(seqs), seq), np.int64)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = s
        mask[b, :len(s)] = 1
    return ids, mask


def session(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def bert_ort(model_path, ids_path, out):
    ids, mask = padded(ids_path)
    sess = session(model_path)
    outs = sess.run(None, {"input_ids": ids, "attention_mask": mask})
    # Outputs: padded ids, padded mask, token embeddings [batch, max(seq, 128), hidden], pooled [batch, hidden].
    hidden = next(o for o in outs if o.dtype == np.float32 and o.ndim == 3)[:, :ids.shape[1]]
    pooled = next(o for o in outs if o.dtype == np.float32 and o.ndim == 2)
    hidden.astype("<f4").tofile(out + ".hidden")
    pooled.astype("<f4").tofile(out + ".pooled")
    ok(hidden=list(hidden.shape), pooled=list(pooled.shape))


def ort_run(model_path, ids_path, out):
    ids, mask = padded(ids_path)
    sess = session(model_path)
    feeds = {"input_ids": ids}
    names = {i.name for i in sess.get_inputs()}
    if "position_ids" in names:
        feeds["position_ids"] = np.tile(np.arange(ids.shape[1], dtype=np.int64), (ids.shape[0], 1))
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    if "attention_mask" in names:
        feeds["attention_mask"] = mask
    result = {}
    for o, v in zip(sess.get_outputs(), sess.run(None, feeds)):
        v.astype("<f4").tofile(out + "." + o.name)
        result[o.name] = list(v.shape)
    ok(outputs=result)


def main():
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    commands = {"gpt2-make": (gpt2_make, 2), "gpt2-forward": (gpt2_forward, 3), "gpt2-ppl": (gpt2_ppl, 4), "bert-extract": (bert_extract, 2),
                "bert-ort": (bert_ort, 3), "ort-run": (ort_run, 3)}
    if cmd not in commands or len(args) != commands[cmd][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    commands[cmd][0](*args)


if __name__ == "__main__":
    main()
