"""PP-OCR INT8 benchmark: onnxruntime CPU latency and accuracy of Kiln's Q/DQ models vs onnxruntime's own quantizer.

  python Tools/bench/ppocr.py --kiln .build/release/kiln --models ../shared/models/ppocr-v4-onnx \
      --out Tools/bench/results/ppocr.md [--runs 30] [--calib-samples 32] [--kiln-option range=percentile]

For det / rec / cls, in the same run:
  * FP32: the original model;
  * Kiln INT8: `kiln quantize MODEL --algo int8 --calib inputs/K.calib.npz --to onnx` (no opset upgrade by hand);
  * ORT INT8: onnxruntime.quantization.quantize_static (QDQ, per-channel, QInt8 weights, QUInt8 activations,
    MinMax calibration on the same calibration images) on the model upgraded to opset 13 with
    onnx.version_converter (it writes an invalid graph for the opset-11 cls model otherwise).
Latency: onnxruntime CPU, 2 intra-op threads, all graph optimizations, one eval image (batch 1),
3 warm-up runs, median of --runs. Agreement with FP32 over all `inputs/K.eval.npz` images:
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


def latency_ms(path, x, runs):
    sess = session(path)
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


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
    p.add_argument("--kiln-option", action="append", default=[], help="extra --option KEY=VALUE for kiln quantize")
    p.add_argument("--kiln-exclude", action="append", default=[], help="--exclude NODE_GLOB for kiln quantize")
    p.add_argument("--only", default="det,rec,cls")
    args = p.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="kiln-ppocr-") as work:
        for kind in args.only.split(","):
            src = os.path.join(args.models, MODELS[kind])
            calib_path = os.path.join(args.models, "inputs", f"{kind}.calib.npz")
            calib = np.load(calib_path)["x"][:args.calib_samples]
            evalx = np.load(os.path.join(args.models, "inputs", f"{kind}.eval.npz"))["x"]
            kiln_out = os.path.join(work, f"{kind}.kiln.onnx")
            command = [args.kiln, "quantize", src, "--algo", "int8", "--calib", calib_path, "--calib-samples",
                       str(args.calib_samples), "--out", kiln_out, "--to", "onnx"]
            for o in args.kiln_option:
                command += ["--option", o]
            for e in args.kiln_exclude:
                command += ["--exclude", e]
            t = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            kiln_seconds = time.perf_counter() - t
            onnx.checker.check_model(onnx.load(kiln_out), full_check=True)
            ort_out = os.path.join(work, f"{kind}.ort.onnx")
            t = time.perf_counter()
            ort_quantize(src, calib, ort_out, work)
            ort_seconds = time.perf_counter() - t
            x1 = evalx[:1]
            fp32 = outputs(src, evalx)
            lat = {name: latency_ms(path, x1, args.runs) for name, path in [("fp32", src), ("kiln", kiln_out), ("ort", ort_out)]}
            acc = {name: agreement(kind, fp32, outputs(path, evalx)) for name, path in [("kiln", kiln_out), ("ort", ort_out)]}
            rows.append((kind, x1.shape, lat, acc, kiln_seconds, ort_seconds, len(evalx)))
            print(kind, lat, acc, file=sys.stderr)

    metric = {"cls": "top-1", "rec": "argmax/step", "det": "mask p>0.3"}
    key = {"cls": "top1", "rec": "argmax", "det": "argmax"}
    lines = [
        "# PP-OCR INT8: Kiln vs onnxruntime's quantize_static",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} · {platform.node()} · "
        f"{os.cpu_count()} CPUs · onnxruntime {ort.__version__} · 2 intra-op threads · median of {args.runs} runs, batch 1 · "
        f"calibration: {args.calib_samples} images · kiln options: {' '.join(args.kiln_option + ['exclude=' + e for e in args.kiln_exclude]) or 'defaults'}",
        "",
        "| model | input | FP32 ms | Kiln INT8 ms (× FP32) | ORT INT8 ms (× FP32) | agreement metric | Kiln INT8 | ORT INT8 | cosine Kiln | cosine ORT | quantize s (Kiln / ORT) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for kind, shape, lat, acc, ks, os_, n in rows:
        lines.append(
            f"| {kind} | {list(shape)} | {lat['fp32']:.2f} | {lat['kiln']:.2f} ({lat['fp32'] / lat['kiln']:.2f}× speed) | "
            f"{lat['ort']:.2f} ({lat['fp32'] / lat['ort']:.2f}× speed) | {metric[kind]} over {n} eval images | "
            f"{acc['kiln'][key[kind]]:.4f} | {acc['ort'][key[kind]]:.4f} | {acc['kiln']['cosine']:.5f} | {acc['ort']['cosine']:.5f} | "
            f"{ks:.1f} / {os_:.1f} |")
    lines += ["", "Speed columns: FP32 latency / quantized latency (above 1 = faster than FP32).", ""]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
