"""Differential testing of Kiln's graph interpreter against onnxruntime (CPU).

  graph_diff.py --kiln .build/release/kiln --count 40 --seed 1 [--ops Slice,Resize] [--keep DIR]

Generates, from the seed alone, COUNT small random ONNX models per operator the interpreter
supports (one or two nodes each, spec-valid attributes and shapes, opsets 11-21, size-0 / size-1
dims, negative axes, broadcasting, int / bool inputs where allowed, ±0, NaN, ±Inf and large
magnitudes for element-wise ops). Each model runs in onnxruntime; then `kiln run` runs it on the same
.npz and the outputs are compared: shape, dtype class (float / int / bool), NaN positions, ±Inf
positions, and finite values within atol + rtol × max |onnxruntime output|.

Outcomes per model: agree; mismatch; kiln-refused (exit 1 on a model onnxruntime ran: the reason is
listed); crash (any other exit status or a signal: always a bug); ort-refused (onnxruntime rejected
the model: Kiln refusing it too is fine, Kiln running it is listed); ort-deviates (a mismatch where
Kiln agrees with the ONNX reference implementation, onnx.reference: listed); ort-no-kernel (onnxruntime's CPU
provider has no kernel for that type / opset: nothing to compare with). Models that are not `agree` are
kept under --keep DIR (model NAME.onnx, inputs NAME.npz, a NAME.txt with the details) for replay:
  kiln run DIR/NAME.onnx --inputs DIR/NAME.npz --output /tmp/out.npz
Exit status: 1 when there is a crash or a mismatch, else 0.

The models come from graph_diff_ops.py (element-wise and data-movement operators) and graph_diff_nn.py (the rest),
built with graph_diff_case.py's Case; this file runs, compares and reports.
"""
import argparse
import collections
import os
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
from onnx import TensorProto

import graph_diff_nn
import graph_diff_ops
from graph_diff_case import Case

# Operator name -> generator (graph_diff_ops.py: element-wise and data movement; graph_diff_nn.py: the rest).
GENERATORS = {**graph_diff_ops.GENERATORS, **graph_diff_nn.GENERATORS}


# ---------------------------------------------------------------------------------------------
# Running and comparing.

def ort_options():
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)
    return options, ort


def float8_outputs(model, ref):
    """onnxruntime returns float8 outputs as their uint8 bits: decode them (Kiln writes their f32 values)."""
    import ml_dtypes
    fp8 = {TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn, TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2}
    types = {t.name: t.data_type for t in model.graph.initializer}
    out = []
    for o, r in zip(model.graph.output, ref):
        node = next(n for n in model.graph.node if o.name in n.output)
        zp = types.get(node.input[2]) if node.op_type == "QuantizeLinear" and len(node.input) > 2 else None
        out.append(np.asarray(r).view(fp8[zp]).astype(np.float32) if zp in fp8 else np.asarray(r))
    return out


def reference(model, feeds, outputs):
    """The outputs of the ONNX reference implementation (onnx.reference), or None when it cannot run the model."""
    try:
        from onnx.reference import ReferenceEvaluator
        return [np.asarray(v) for v in ReferenceEvaluator(model).run(list(outputs), feeds)]
    except Exception:   # noqa: BLE001 - the reference is only a tie-breaker
        return None


def kind_of(a):
    return "bool" if a.dtype == np.bool_ else "float" if a.dtype.kind == "f" else "int"


def compare(ref, got, rtol, atol):
    """None when `got` matches `ref`, else a one-line description of the first difference."""
    if ref.shape != got.shape:
        return f"shape: ort {list(ref.shape)}, kiln {list(got.shape)}"
    if kind_of(ref) != kind_of(got):
        return f"dtype: ort {ref.dtype}, kiln {got.dtype}"
    if ref.size == 0:
        return None
    if kind_of(ref) != "float":
        bad = np.flatnonzero(ref.astype(np.int64).ravel() != got.astype(np.int64).ravel())
        return None if bad.size == 0 else f"{bad.size} values differ; first at {bad[0]}: ort {ref.ravel()[bad[0]]}, kiln {got.ravel()[bad[0]]}"
    a, b = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        i = int(np.flatnonzero(np.isnan(a) != np.isnan(b))[0])
        return f"NaN positions differ; first at {i}: ort {a[i]}, kiln {b[i]}"
    inf_a, inf_b = np.isinf(a), np.isinf(b)
    if not np.array_equal(inf_a, inf_b) or not np.array_equal(a[inf_a], b[inf_b]):
        i = int(np.flatnonzero((inf_a != inf_b) | (inf_a & (a != b)))[0])
        return f"±Inf positions differ; first at {i}: ort {a[i]}, kiln {b[i]}"
    finite = np.isfinite(a)
    if not finite.any():
        return None
    scale = float(np.max(np.abs(a[finite])))
    err = np.abs(a[finite] - b[finite])
    limit = atol + rtol * scale
    if float(err.max()) > limit:
        i = int(np.flatnonzero(finite)[int(np.argmax(err))])
        return f"max |kiln − ort| {err.max():.3g} > {limit:.3g} (scale {scale:.3g}); at {i}: ort {a[i]}, kiln {b[i]}"
    return None


# Float16 inputs or outputs round to 11 bits; everything else computes in f32.
def tolerance(model, feeds):
    half = any(v.dtype == np.float16 for v in feeds.values()) or any(
        a.t.data_type == TensorProto.FLOAT16 for n in model.graph.node for a in n.attribute if a.name == "to" or a.type == a.TENSOR)
    return (2e-3, 1e-6) if half else (1e-4, 1e-6)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kiln", required=True, help="the kiln executable (release build)")
    parser.add_argument("--count", type=int, default=20, help="models per operator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", help="comma-separated operators (default: all)")
    parser.add_argument("--keep", help="folder for the models that did not agree (with inputs and details)")
    parser.add_argument("--verbose", action="store_true", help="print every model's outcome")
    args = parser.parse_args()
    options, ort = ort_options()
    ops = args.ops.split(",") if args.ops else sorted(GENERATORS)
    unknown = [op for op in ops if op not in GENERATORS]
    if unknown:
        sys.exit(f"graph_diff.py: no generator for {', '.join(unknown)} (known: {', '.join(sorted(GENERATORS))})")
    keep = args.keep
    if keep:
        os.makedirs(keep, exist_ok=True)
    stats = collections.defaultdict(collections.Counter)
    findings = collections.defaultdict(list)     # outcome -> [(name, detail)]
    work = tempfile.mkdtemp(prefix="graph-diff-")
    for op in ops:
        for i in range(args.count):
            rng = np.random.default_rng([args.seed, zlib.crc32(op.encode()), i])
            case = Case(rng, 17)
            outputs = GENERATORS[op](case) or ("y",)
            name = f"{op}_s{args.seed}_{i}"
            model = case.model(name, outputs)
            path, inputs, out = (os.path.join(work, name + ext) for ext in (".onnx", ".npz", ".kiln.npz"))
            onnx.save(model, path)
            np.savez(inputs, **case.feeds)
            try:
                session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                ref = float8_outputs(model, session.run(list(outputs), case.feeds))
                ort_error = None
            except Exception as e:     # noqa: BLE001 - any onnxruntime refusal is an outcome here
                ref, ort_error = None, str(e).strip().splitlines()[0][:300]
            if os.path.exists(out):
                os.remove(out)
            run = subprocess.run(["nice", "-n", "10", args.kiln, "run", path, "--inputs", inputs, "--output", out],
                                 capture_output=True, text=True)
            reason = (run.stderr.strip().splitlines() or [""])[-1][:400]
            if run.returncode not in (0, 1):
                outcome, detail = "crash", f"exit status {run.returncode}: {reason}"
            elif ort_error is not None and "NOT_IMPLEMENTED" in ort_error:
                outcome, detail = "ort-no-kernel", f"ort: {ort_error}"
            elif ort_error is not None:
                outcome = "ort-refused, kiln-refused" if run.returncode == 1 else "ort-refused, kiln-ran"
                detail = f"ort: {ort_error}" + (f" | kiln: {reason}" if run.returncode == 1 else "")
            elif run.returncode == 1:
                outcome, detail = "kiln-refused", reason
            else:
                got = np.load(out)
                rtol, atol = tolerance(model, case.feeds)
                diffs = [f"{o}: {d}" for o, r in zip(outputs, ref) if (d := compare(np.asarray(r), got[o], rtol, atol))]
                outcome, detail = ("mismatch", "; ".join(diffs)) if diffs else ("agree", "")
                if diffs:
                    # Tie-break with the ONNX reference implementation: Kiln agreeing with it is an onnxruntime deviation.
                    spec = reference(model, case.feeds, outputs)
                    if spec is not None and not any(compare(r, got[o], rtol, atol) for o, r in zip(outputs, spec)):
                        outcome = "ort-deviates"
            stats[op][outcome] += 1
            if outcome != "agree":
                findings[outcome].append((name, detail))
                if keep:
                    onnx.save(model, os.path.join(keep, name + ".onnx"))
                    np.savez(os.path.join(keep, name + ".npz"), **case.feeds)
                    with open(os.path.join(keep, name + ".txt"), "w") as f:
                        f.write(f"{outcome}\n{detail}\n{onnx.printer.to_text(model.graph)}\nopset {case.opset}\n")
            if args.verbose:
                print(f"{name}: {outcome} {detail}", flush=True)
            for p in (path, inputs, out):
                if os.path.exists(p):
                    os.remove(p)
    os.rmdir(work)
    columns = ["agree", "mismatch", "ort-deviates", "kiln-refused", "crash", "ort-refused, kiln-refused", "ort-refused, kiln-ran",
               "ort-no-kernel"]
    print(f"{'op':<20}{'models':>7}" + "".join(f"{c.split(',')[-1].strip() if ',' in c else c:>14}" for c in columns))
    print(f"{'':<27}" + "".join(f"{'(ort refused)' if ',' in c else '':>14}" for c in columns))
    total = collections.Counter()
    for op in ops:
        total.update(stats[op])
        print(f"{op:<20}{sum(stats[op].values()):>7}" + "".join(f"{stats[op][c]:>14}" for c in columns))
    print(f"{'total':<20}{sum(total.values()):>7}" + "".join(f"{total[c]:>14}" for c in columns))
    for outcome in ["crash", "mismatch", "ort-deviates", "kiln-refused", "ort-refused, kiln-ran"]:
        if findings[outcome]:
            print(f"\n{outcome} ({len(findings[outcome])}):")
            for name, detail in findings[outcome]:
                print(f"  {name}: {detail}")
    sys.exit(1 if total["crash"] or total["mismatch"] else 0)


if __name__ == "__main__":
    main()
