"""The LLM sections of `make bench`: Kiln's quantizers and NVIDIA ModelOpt on SmolLM2-135M, same data, same run.

Usage:
  llm.py kiln KILN MODEL DATA_DIR OUT.jsonl SCRATCH
  llm.py modelopt BENCH_PYTHON ANCHOR MODEL DATA_DIR OUT.jsonl

Both use the data of ModelOpt's anchor (../shared/tools/modelopt_anchor.py): calibration on 32 x 256 tokens of
DATA_DIR/tinystories_valid_calib.txt, perplexity by protocol kiln-ppl-v1 on the first 20000 tokens of
DATA_DIR/tinystories_valid_eval.txt (seq 512). Each method runs once (they take minutes): wall time and peak RSS
of the whole `kiln quantize` / `kiln sparsify` process (load, calibrate, search, write), with a fresh empty
KILN_CACHE_DIR so no calibration statistics are reused; then `kiln eval` on the written checkpoint.
ModelOpt's anchor reports its own optimize seconds (mtq.quantize / mts.sparsify only, model load excluded) and
perplexity; the process wall time and RSS are recorded too. One JSON line per method; no thresholds.
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import run_once  # noqa: E402

CALIB = ["--calib-samples", "32", "--calib-seq-len", "256"]
EVAL_TOKENS = 20000

# id, label, kiln arguments after the model (None: the unmodified model), needs calibration,
# ModelOpt anchor config of the same method (None: no counterpart), nominal bits per linear weight.
# Bits: payload + per-group f16 scales (INT4: 4 + 16/G); 2:4 keeps half the values plus a 2-bit index each.
METHODS = [
    ("fp32", "FP32", None, False, "fp32", 32.0),
    ("fp8", "FP8 (W8A8)", ["quantize", "--algo", "fp8"], True, "FP8_DEFAULT_CFG", 8.0),
    # Kiln's most accurate FP8: MSE activation ranges, and the 8 linear groups (of 120) whose FP8 costs most
    # loss on calibration text kept in bf16 (8.5% of the decoder's linear weights: 8 × 0.915 + 16 × 0.085 bits).
    ("fp8-mse-ae8", "FP8, MSE ranges + auto-exclude=8", ["quantize", "--algo", "fp8", "--option",
     "activation-calibration=mse", "--option", "auto-exclude=8"], True, "FP8_DEFAULT_CFG", 8.68),
    ("int8-sq-auto", "INT8 SmoothQuant α=auto", ["quantize", "--algo", "int8-sq", "--alpha", "auto"], True,
     "INT8_SMOOTHQUANT_CFG", 8.0),
    ("int8-sq-0.5", "INT8 SmoothQuant α=0.5", ["quantize", "--algo", "int8-sq", "--alpha", "0.5"], True,
     "INT8_SMOOTHQUANT_CFG", 8.0),
    ("int4-rtn-g64", "INT4 RTN g64", ["quantize", "--algo", "int4-rtn", "--group-size", "64"], False,
     "INT4_RTN_G64", 4.25),
    ("int4-awq-g64", "INT4 AWQ g64", ["quantize", "--algo", "int4-awq", "--group-size", "64"], True,
     "INT4_AWQ_G64", 4.25),
    # 576-wide inputs take a partial last group (indivisible=pad); the hf-quant and TRT-LLM writers refuse partial
    # groups, ONNX's blocked DequantizeLinear (opset 21, ceil(in / 128) scales) takes them, so this one goes to ONNX.
    ("int4-awq-g128", "INT4 AWQ g128 (576-wide: partial last group, indivisible=pad, ONNX)",
     ["quantize", "--algo", "int4-awq", "--group-size", "128", "--option", "indivisible=pad", "--to", "onnx"], True, None,
     4.125),
    ("w4a8-awq-g64", "W4A8 AWQ g64 (FP8 activations)", ["quantize", "--algo", "w4a8-awq", "--group-size", "64"], True,
     None, 4.25),
    ("sparsegpt", "2:4 SparseGPT", ["sparsify", "--method", "sparsegpt"], True, "SPARSEGPT", 17.0),
    ("magnitude", "2:4 magnitude", ["sparsify", "--method", "magnitude"], False, "SPARSE_MAGNITUDE", 17.0),
    ("sparsegpt-fp8", "2:4 SparseGPT + FP8", ["sparsify", "--method", "sparsegpt", "--quantize", "fp8"], True, None, 5.0),
]
MODELOPT_CONFIGS = ["fp32", "FP8_DEFAULT_CFG", "INT8_SMOOTHQUANT_CFG", "INT4_AWQ_G64", "INT4_RTN_G64", "SPARSEGPT",
                    "SPARSE_MAGNITUDE"]


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def emit(out, record):
    record["date"] = now()
    line = json.dumps(record)
    print(line, flush=True)
    with open(out, "a") as f:
        f.write(line + "\n")


def start_output(out, key, rerun):
    """Prepare OUT for a run of the configurations RERUN (None: all of them). A subset run replaces only its own
    records and keeps the others (with their own dates), so `KILN_BENCH_MODELOPT=A,B` adds A and B to a full run."""
    kept = []
    if rerun is not None and os.path.exists(out):
        with open(out) as f:
            records = [json.loads(line) for line in f if line.strip()]
        kept = [r for r in records if key in r and r[key] not in rerun]
    with open(out, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)


def subset(variable):
    """The comma-separated subset in environment VARIABLE, or None for all."""
    chosen = os.environ.get(variable, "")
    return set(chosen.split(",")) if chosen else None


def kiln_eval(kiln, checkpoint, model, data):
    """Perplexity (kiln-ppl-v1) of CHECKPOINT, with MODEL's tokenizer."""
    proc = subprocess.run([kiln, "eval", checkpoint, "--text", os.path.join(data, "tinystories_valid_eval.txt"),
                           "--max-tokens", str(EVAL_TOKENS), "--tokenizer", model, "--json"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"llm.py: kiln eval {checkpoint} exited with {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout)


def kiln_section(kiln, model, data, out, scratch):
    calib = ["--calib", os.path.join(data, "tinystories_valid_calib.txt")] + CALIB
    chosen = subset("KILN_BENCH_METHODS")  # a subset of the ids, e.g. when time is short
    start_output(out, "id", chosen)
    for key, label, args, calibrated, counterpart, bits in METHODS:
        if chosen is not None and key not in chosen:
            continue
        record = {"section": "quantize", "id": key, "label": label, "bits": bits, "modelopt": counterpart}
        checkpoint = model
        if args is not None:
            checkpoint = os.path.join(scratch, key + (".onnx" if "onnx" in args else ""))
            cache = tempfile.mkdtemp(prefix="cache-", dir=scratch)  # fresh and empty: a cold calibration
            command = [kiln, args[0], model] + args[1:] + ["--out", checkpoint]
            if calibrated:
                command += calib
            if args[0] == "quantize" and "--to" not in args:
                command += ["--to", "hf-quant"]
            print(f"bench: quantize {key}: {' '.join(command)}", file=sys.stderr, flush=True)
            seconds, rss_kb, log = run_once(command, checkpoint, env={**os.environ, "KILN_CACHE_DIR": cache})
            shutil.rmtree(cache)
            record.update(command=" ".join(["kiln"] + command[1:]).replace(model, "MODEL"), seconds=round(seconds, 2),
                          peak_rss_mb=round(rss_kb / 1024, 1), log=log.strip().splitlines()[-3:])
        result = kiln_eval(kiln, checkpoint, model, data)
        record.update(ppl=result["perplexity"], tokens=result["tokens"], eval_s=round(result["seconds"], 2))
        if checkpoint != model:
            shutil.rmtree(checkpoint, ignore_errors=True) if os.path.isdir(checkpoint) else os.unlink(checkpoint)
        emit(out, record)


def modelopt_section(python, anchor, model, data, out):
    chosen = subset("KILN_BENCH_MODELOPT")  # a subset of MODELOPT_CONFIGS, e.g. when time is short
    start_output(out, "cfg", chosen)
    probe = subprocess.run([python, "-c", "import torch, transformers, modelopt; print(modelopt.__version__, torch.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        emit(out, {"section": "modelopt", "skipped": f"torch/transformers/nvidia-modelopt not importable in {python}: {reason}"})
        return
    modelopt_version, torch_version = probe.stdout.split()
    for cfg in [c for c in MODELOPT_CONFIGS if chosen is None or c in chosen]:
        with tempfile.TemporaryDirectory() as tmp:
            result_file = os.path.join(tmp, "anchor.jsonl")
            print(f"bench: modelopt {cfg}", file=sys.stderr, flush=True)
            seconds, rss_kb, _ = run_once([python, anchor, model, data, cfg, result_file], os.path.join(tmp, "none"))
            with open(result_file) as f:
                result = json.loads(f.readline())
        result.update(section="modelopt", modelopt_version=modelopt_version, torch_version=torch_version,
                      process_s=round(seconds, 1), process_peak_rss_mb=round(rss_kb / 1024, 1))
        emit(out, result)


def main():
    args = sys.argv[1:]
    if len(args) == 6 and args[0] == "kiln":
        kiln_section(*args[1:])
    elif len(args) == 6 and args[0] == "modelopt":
        modelopt_section(*args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
