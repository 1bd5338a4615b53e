"""PP-OCR INT8 benchmark: onnxruntime CPU latency and accuracy of Kiln's Q/DQ models vs onnxruntime's own quantizer.

  python Tools/bench/ppocr.py --kiln .build/release/kiln --models ../shared/models/ppocr-v4-onnx \
      --out Tools/bench/results/ppocr.md [--runs 30] [--calib-samples 32] [--kiln-config 'NAME:--option range=mse']

For det / rec / cls, in the same run:
  * FP32: the original model;
  * Kiln INT8: `kiln quantize MODEL --algo int8 --calib inputs/K.calib.npz --to onnx` (no opset upgrade by hand),
    with its defaults (TensorRT placement: Q/DQ on inputs only) and with `--option output-qdq=true` (Q/DQ on
    quantized outputs too, which onnxruntime's CPU provider needs to fuse QLinearConv), those pairs calibrated
    by max and the 8 or 12 most sensitive nodes (ranked on 8 or 16 calibration images) in f32
    (or the --kiln-config variants given);
  * ORT INT8: onnxruntime.quantization.quantize_static (QDQ, per-channel, QInt8 weights, QUInt8 activations,
    MinMax calibration on the same calibration images) on the model upgraded to opset 13 with
    onnx.version_converter (it writes an invalid graph for the opset-11 cls model otherwise).
Latency: onnxruntime CPU, 2 intra-op threads, all graph optimizations, one eval image (batch 1),
3 warm-up runs, median of --runs, the models' runs interleaved round-robin (a shared machine's load
falls on all of them alike). Agreement with FP32 over all `inputs/K.eval.npz` images:
  cls: top-1 agreement; rec: cosine of the softmax outputs and argmax agreement per time step;
  det: cosine of the probability maps and agreement of the text mask (p > 0.3, DBNet's threshold).
No thresholds: exits non-zero only when a step fails.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

MODELS = {"det": "ch_PP-OCRv4_det_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx", "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx"}


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def latencies_ms(paths, x, runs):
    """Median latency of each model; runs interleaved round-robin so that load from other processes
    on a shared machine falls on every model alike."""
    sessions = [session(p) for p in paths]
    names = [s.get_inputs()[0].name for s in sessions]
    for s, n in zip(sessions, names):
        for _ in range(3):
            s.run(None, {n: x})
    times = [[] for _ in paths]
    for _ in range(runs):
        for i, (s, n) in enumerate(zip(sessions, names)):
            t = time.perf_counter()
            s.run(None, {n: x})
            times[i].append((time.perf_counter() - t) * 1000)
    return [statistics.median(t) for t in times]


def outputs(path, x, batch=8):
    sess = session(path)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def agreement(kind, ref, got):
    ref = ref.astype(np.float64)
    got = got.astype(np.float64)
    a, b = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
    cosine = float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)))
    if kind == "cls":
        return {"top1": float(np.mean(ref.argmax(-1) == got.argmax(-1))), "cosine": cosine}
    if kind == "rec":
        return {"argmax": float(np.mean(ref.argmax(-1) == got.argmax(-1))), "cosine": cosine}
    return {"argmax": float(np.mean((ref > 0.3) == (got > 0.3))), "cosine": cosine}


def ort_quantize(src, calib, dst, work):
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    upgraded = os.path.join(work, os.path.basename(src).replace(".onnx", ".op13.onnx"))
    onnx.save(version_converter.convert_version(onnx.load(src), 13), upgraded)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    quantize_static(upgraded, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kiln", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--kiln-config", action="append", default=None,
                   help="NAME:ARGS: a Kiln INT8 variant, ARGS passed to kiln quantize (repeatable; "
                        "default: Kiln's defaults and three onnxruntime-oriented output-qdq configurations)")
    p.add_argument("--only", default="det,rec,cls")
    args = p.parse_args()
    configs = [c.split(":", 1) for c in (args.kiln_config or [
        "Kiln INT8:",
        "Kiln INT8 output-qdq output-range=max exclude-sensitive=8:"
        "--option output-qdq=true --option output-range=max --option exclude-sensitive=8",
        "Kiln INT8 output-qdq output-range=max exclude-sensitive=12:"
        "--option output-qdq=true --option output-range=max --option exclude-sensitive=12",
        "Kiln INT8 output-qdq output-range=max exclude-sensitive=8 batch=16:"
        "--option output-qdq=true --option output-range=max --option exclude-sensitive=8 --option batch=16"])]
    configs = [(c[0].strip(), c[1].split() if len(c) > 1 else []) for c in configs]
    metric = {"cls": "top-1", "rec": "argmax per step", "det": "text mask (p > 0.3)"}
    key = {"cls": "top1", "rec": "argmax", "det": "argmax"}

    rows = []
    seen = {}  # kind → (input shape at batch 1, eval images)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kiln-ppocr-") as work:
        for kind in args.only.split(","):
            src = os.path.join(args.models, MODELS[kind])
            calib_path = os.path.join(args.models, "inputs", f"{kind}.calib.npz")
            calib = np.load(calib_path)["x"][:args.calib_samples]
            evalx = np.load(os.path.join(args.models, "inputs", f"{kind}.eval.npz"))["x"]
            variants = []
            for i, (name, extra) in enumerate(configs):
                out = os.path.join(work, f"{kind}.kiln{i}.onnx")
                command = [args.kiln, "quantize", src, "--algo", "int8", "--calib", calib_path, "--calib-samples",
                           str(args.calib_samples), "--out", out, "--to", "onnx"] + extra
                t = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                seconds = time.perf_counter() - t
                onnx.checker.check_model(onnx.load(out), full_check=True)
                variants.append((name, out, seconds))
            ort_out = os.path.join(work, f"{kind}.ort.onnx")
            t = time.perf_counter()
            ort_quantize(src, calib, ort_out, work)
            variants.append(("ORT quantize_static", ort_out, time.perf_counter() - t))
            x1 = evalx[:1]
            seen[kind] = ("×".join(map(str, x1.shape)), len(evalx))
            fp32 = outputs(src, evalx)
            base, *measured = latencies_ms([src] + [v[1] for v in variants], x1, args.runs)
            rows.append(f"| {kind} | FP32 | {base:.2f} | 1.00× | – | – | – |")
            for (name, path, seconds), ms in zip(variants, measured):
                acc = agreement(kind, fp32, outputs(path, evalx))
                rows.append(f"| {kind} | {name} | {ms:.2f} | {base / ms:.2f}× | {acc[key[kind]]:.4f} | {acc['cosine']:.5f} | {seconds:.1f} |")
                print(kind, name, ms, acc, file=sys.stderr)

    lines = [
        "# PP-OCR INT8: Kiln vs onnxruntime's quantize_static",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · {platform.node()} · "
        f"{os.cpu_count()} CPUs · onnxruntime {ort.__version__} · 2 intra-op threads · median of {args.runs} interleaved runs at batch 1 "
        f"(input {{{', '.join(f'{k}: {v[0]}' for k, v in seen.items())}}}) · calibration: {args.calib_samples} images · "
        f"agreement with FP32 over all eval images ({', '.join(f'{k} {v[1]}' for k, v in seen.items())}) · load average {load_before:.1f} → "
        f"{os.getloadavg()[0]:.1f} (latencies on a loaded machine are noisy; the agreement columns are not)",
        "",
        "| model | quantizer | latency ms | speed vs FP32 | agreement with FP32 | output cosine | quantize s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ] + rows + [
        "",
        "Agreement: " + "; ".join(f"{k}: {v}" for k, v in metric.items()) + ".",
        "",
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
