"""PyTorch's side of the prefill benchmark: one forward of transformers' AutoModelForCausalLM (f32, CPU) over
BOS + the first N-1 tokens of TEXT, batch 1, torch.set_num_threads(THREADS); best of REPEAT after a warm-up.
The same two measurements as `kiln-bench prefill`: every position's logits (model(input_ids)) and the last
position's only (logits_to_keep=1, with the KV cache, as generation's prefill). Wall and process CPU seconds
(all threads). Prints one JSON line.

Usage: torch_prefill.py MODEL TEXT TOKENS THREADS REPEAT
"""

import json
import os
import sys
import time

import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


def best(repeat, body):
    """(wall, process CPU) seconds of the fastest run, each minimum on its own, after a warm-up."""
    body()
    wall = cpu = float("inf")
    for _ in range(repeat):
        start = time.perf_counter(), time.process_time()
        body()
        wall = min(wall, time.perf_counter() - start[0])
        cpu = min(cpu, time.process_time() - start[1])
    return wall, cpu


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    model_dir, text, tokens, threads, repeat = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
    torch.set_num_threads(threads)
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    bos = json.load(open(os.path.join(model_dir, "config.json")))["bos_token_id"]
    ids = [bos] + tok.encode(open(text).read(), add_special_tokens=False).ids[:tokens - 1]
    if len(ids) != tokens:
        sys.exit(f"torch_prefill.py: {text}: expected at least {tokens - 1} tokens, found {len(ids) - 1}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    x = torch.tensor([ids])
    with torch.inference_mode():
        full = best(repeat, lambda: model(x, use_cache=False))
        last = best(repeat, lambda: model(x, use_cache=True, logits_to_keep=1))
    print(json.dumps({
        "section": "prefill", "engine": "torch", "tokens": tokens, "threads": threads, "full_s": full[0], "last_s": last[0],
        "full_cpu_s": full[1], "last_cpu_s": last[1],
        "full_tokens_per_s": tokens / full[0], "last_tokens_per_s": tokens / last[0],
        "torch_version": torch.__version__, "transformers_version": transformers.__version__,
    }))


if __name__ == "__main__":
    main()
