"""Assemble BENCHMARKS.md from the sections' results (the last step of `make bench`).

Usage: assemble.py RESULTS_DIR BENCHMARKS.md [FAILED_SECTION...]

Reads RESULTS_DIR/NAME.jsonl of each section (written by run.sh's sections), writes the markdown fragment
RESULTS_DIR/NAME.md of the sections that only leave JSON (convert.md and ppocr.md are written by their own
scripts), then BENCHMARKS.md: the machine, a summary of every ratio (each with its section's date), the
fragments, and RESULTS_DIR/ppl_vs_bits.png (perplexity vs bits per weight, Kiln and ModelOpt, when matplotlib
imports). A section without results is listed as not run; a skipped one gives its reason. No thresholds.
"""

import datetime
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llm import METHODS  # noqa: E402

# ModelOpt 0.47 figures measured earlier on this machine (the issues' references), shown beside this run's.
MODELOPT_REFERENCE = {"fp32": (7.5662, None), "FP8_DEFAULT_CFG": (7.7806, 442), "INT8_SMOOTHQUANT_CFG": (8.0732, 51),
                      "INT4_AWQ_G64": (9.0689, 490), "INT4_RTN_G64": (10.7355, None), "SPARSEGPT": (33.69, 112),
                      "SPARSE_MAGNITUDE": (1136.3, None)}
SECTIONS = ["convert", "bigconvert", "gemm", "prefill", "quantize", "modelopt", "ppocr"]


def machine():
    cpu, mem = "unknown CPU", 0
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    with open("/proc/meminfo") as f:
        mem = next((int(line.split()[1]) for line in f if line.startswith("MemTotal")), 0)
    return f"{cpu}, {os.cpu_count()} cores, {mem / 1024 / 1024:.0f} GiB RAM, Linux {platform.release()}"


def load(results, name):
    path = os.path.join(results, name + ".jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def times(ratio):
    """A ratio as `1.6×`, with two decimals below 1 (`0.04×`) so a slower result never reads as 0.0×."""
    return f"{ratio:.1f}×" if ratio >= 1 else f"{ratio:.2f}×"


def skipped(rows):
    return next((r["skipped"] for r in rows or [] if "skipped" in r and "engine" not in r), None)


def date(rows):
    """When the rows were measured: one date, or the first and last when a subset re-run added some."""
    dates = sorted({r["date"] for r in rows or [] if "date" in r})
    return "" if not dates else dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


def modified(path):
    """The file's modification time as a date, or "" when it does not exist."""
    if not os.path.exists(path):
        return ""
    t = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M UTC")


def fmt(x, digits=2):
    return "–" if x is None else f"{x:,.{digits}f}"


class Report:
    def __init__(self, results, m, failed):
        self.results, self.machine, self.failed = results, m, failed
        self.ratios = []  # (section, what, value text, goal, date)
        self.when = ""  # date of the section being assembled

    def ratio(self, section, what, value, goal, when=None):
        self.ratios.append((section, what, value, goal, when or self.when))

    # Fragments of the JSON-only sections ---------------------------------------------------------------

    def convert(self, rows):
        best = {r["name"]: r["best"] for r in rows}
        for what, other in (("f32 → f32 vs `cp`", "cp"), ("f32 → bf16 vs `cp`", "cp"),
                            ("f32 → bf16 vs python (load/astype/save)", "py-natural"),
                            ("f32 → bf16 vs python (safe_open stream)", "py-stream")):
            kiln = "kiln-f32" if what.startswith("f32 → f32") else "kiln-bf16"
            if kiln in best and other in best:
                self.ratio("convert", f"`kiln convert` {what}: throughput ×", f"{best[other] / best[kiln]:.2f}×", "")
        return None  # convert.md is written by report.py

    def bigconvert(self, rows):
        r = rows[-1]
        lines = ["## Bigger than RAM: `kiln convert --dtype bf16` under a memory limit", ""]
        if "input_bytes" not in r:
            return lines + [f"Not run: {r.get('skipped', 'no result')}.", ""]
        ok = r["exit_code"] == 0 and not r.get("mismatched")
        peak = r.get("cgroup_peak_bytes")
        lines += [
            f"A synthetic sharded f32 checkpoint ({r['tensors']} tensors [4096, 4096] in {r['shards']} shards, fixed seed, "
            f"streamed to disk) converted as the only process of a {r['how']} memory cgroup.", "",
            "| checkpoint | memory limit | result | wall s | process peak RSS | cgroup peak usage (incl. page cache) |",
            "|---:|---:|---|---:|---:|---:|",
            f"| {r['input_bytes'] / 1e9:.2f} GB | {r['limit_bytes'] / 2**20:.0f} MiB | "
            f"{'succeeded' if ok else 'FAILED (exit ' + str(r['exit_code']) + ')'} | {r['seconds']:.1f} | "
            f"{r['peak_rss_bytes'] / 2**20:.0f} MiB | {fmt(peak and peak / 2**20, 0)} MiB |", "",
            f"Command: `{r['command']}`.",
        ]
        if r.get("checked") is not None:
            state = "bit-identical" if not r["mismatched"] else f"MISMATCH in {r['mismatched']}"
            lines.append(f"Checked {len(r['checked'])} output tensors against numpy `astype(ml_dtypes.bfloat16)` of the "
                         f"input: {state}.")
        if r.get("error"):
            lines.append(f"Error: `{r['error']}`")
        self.ratio("bigconvert", "checkpoint size / memory limit (succeeded)" if ok else "checkpoint / limit (FAILED)",
                   f"{r['input_bytes'] / r['limit_bytes']:.1f}×", "> 1× and succeeds", r["date"])
        return lines + [f"\n{r['date']}.", ""]

    def gemm(self, rows):
        lines = ["## GEMM: the executor's linear path vs a direct OpenBLAS call", "",
                 "`kiln-bench gemm`: y = x · wᵀ (x [M×K], w [N×K] as a Hugging Face weight), f32. Kiln: "
                 "`Executor.linear`, the path of every `kiln.Linear` (tiles of single-threaded `cblas_sgemm` spread over "
                 "the executor's threads, deterministic for any thread count). OpenBLAS: one `cblas_sgemm` with "
                 "OpenBLAS set to the same number of threads. Best of 10 after a warm-up; the results agree to the "
                 "relative difference shown. *CPU*: the same ratio on process CPU seconds (all threads), steadier "
                 "than wall time on a busy machine.", "",
                 "| M×K×N | threads | kiln GFLOP/s | OpenBLAS GFLOP/s | kiln / OpenBLAS (wall) | (CPU) | max rel. diff |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['shape']} | {r['threads']} | {r['kiln_gflops']:.1f} | {r['blas_gflops']:.1f} | "
                         f"**{r['ratio']:.2f}×** | {r['cpu_ratio']:.2f}× | {r['max_rel_diff']:.1e} |")
            self.ratio("gemm", f"GEMM {r['shape']} kiln / OpenBLAS GFLOP/s (wall; CPU)",
                       f"{r['ratio']:.2f}×; {r['cpu_ratio']:.2f}×", "≥ 0.9×")
        return lines + ["", "On an oversubscribed machine the wall ratio favours Kiln: one multi-threaded sgemm waits for "
                        "its slowest thread at every step, while Kiln's independent tiles are picked up by whichever "
                        "worker runs. The CPU ratio compares the arithmetic itself.", "", f"{self.when}.", ""]

    def prefill(self, rows):
        kiln = next((r for r in rows if r.get("engine") == "kiln"), None)
        torch = next((r for r in rows if r.get("engine") == "torch"), None)
        lines = ["## Prefill: Kiln's executor vs PyTorch CPU f32 on SmolLM2-135M", "",
                 f"One forward of BOS + 511 tokens of tinystories_valid_eval.txt, batch 1, f32, "
                 f"{kiln['threads']} threads (kiln: `Executor.threads`; torch: `torch.set_num_threads`). *All logits*: "
                 "scores for every position (what `model(input_ids)` returns); *last logits*: the last position's "
                 "only (generation's prefill: KV cache filled, `logits_to_keep=1`). Best of 3 after a warm-up.", "",
                 "Tokens per CPU-second (process CPU time, all threads) is the steadier figure on a busy machine.", "",
                 "| engine | all logits tokens/s | last logits tokens/s | all logits tokens/CPU-s | last logits tokens/CPU-s |",
                 "|---|---:|---:|---:|---:|",
                 self.prefill_row("kiln `kiln-bench prefill`", kiln)]
        if torch and "skipped" not in torch:
            lines.append(self.prefill_row(f"PyTorch {torch['torch_version']} / transformers {torch['transformers_version']}",
                                          torch))
            for mode in ("full", "last"):
                v = torch[f"{mode}_s"] / kiln[f"{mode}_s"]
                c = torch[f"{mode}_cpu_s"] / kiln[f"{mode}_cpu_s"]
                label = "all logits" if mode == "full" else "last logits"
                self.ratio("prefill", f"prefill 512 tokens ({label}) kiln / PyTorch tokens/s (wall; CPU)",
                           f"{v:.2f}×; {c:.2f}×", "≥ 1×")
        else:
            lines.append(f"| PyTorch | {(torch or {}).get('skipped', 'not run')} | |")
        total = sum(kiln["op_seconds"].values())
        lines += ["", f"Where Kiln's time goes (one all-logits forward, wall seconds by op; linear layers at "
                  f"{kiln['linear_gflops']:.1f} GFLOP/s):", "",
                  "| op | seconds | share |", "|---|---:|---:|"]
        lines += [f"| `{op}` | {s:.3f} | {s / total:.0%} |" for op, s in kiln["op_seconds"].items() if s / total >= 0.005]
        return lines + ["", f"{self.when}.", ""]

    def recorded(self, name):
        """When run.sh ran the section (its NAME.load.json), or "" — a file's mtime changes on every checkout."""
        path = os.path.join(self.results, name + ".load.json")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return json.load(f).get("date", "")

    def load_note(self, name):
        """The machine's load around the section's run (run.sh records it), as a line of the fragment."""
        path = os.path.join(self.results, name + ".load.json")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            load = json.load(f)
        if "load_start" not in load:
            return []
        last = f" (its last run, {load['date']})" if "date" in load else ""
        return [f"Load average (1 min) of the {os.cpu_count()}-core machine when the section{last} started / ended: "
                f"{load['load_start']:.1f} / {load['load_end']:.1f}; that run took {load['seconds']} s.", ""]

    @staticmethod
    def prefill_row(label, r):
        n = r["tokens"]
        return (f"| {label} | {n / r['full_s']:.0f} | {n / r['last_s']:.0f} | {n / r['full_cpu_s']:.0f} | "
                f"{n / r['last_cpu_s']:.0f} |")

    def quantize(self, rows, modelopt):
        by_cfg = {r["cfg"]: r for r in modelopt or [] if "cfg" in r}
        fp32 = next((r["ppl"] for r in rows if r["id"] == "fp32"), None)
        mo_fp32 = by_cfg.get("fp32", {}).get("ppl")
        lines = ["## Quantization and sparsity on SmolLM2-135M: Kiln vs NVIDIA ModelOpt", "",
                 "Same model, data and protocol for both: calibration on 32 × 256 tokens of "
                 "tinystories_valid_calib.txt, perplexity by kiln-ppl-v1 on the first 20000 tokens of "
                 "tinystories_valid_eval.txt (seq 512). Kiln: wall time and peak RSS of the whole `kiln quantize` / "
                 "`kiln sparsify` process (load, calibrate, search, write the hf-quant / safetensors checkpoint), "
                 "one run, with an empty `KILN_CACHE_DIR` (cold calibration); perplexity by `kiln eval` of the written "
                 "checkpoint. ModelOpt: `mtq.quantize` / `mts.sparsify` seconds as its anchor script measures them "
                 "(model load excluded) and its perplexity, fake-quantized in PyTorch, from the modelopt section of `make bench` "
                 "(run after the quantize section by one `make bench`; sections run separately with `KILN_BENCH_ONLY` may "
                 "overlap in time and slow each other: compare the dates and load averages).",
                 ""]
        if skipped(modelopt):
            lines += [f"ModelOpt in this run: **not installable here** ({skipped(modelopt)}); its column shows the "
                      "figures measured earlier on this machine (ModelOpt 0.47, from the issues), marked *ref*.", ""]
        elif not by_cfg:
            lines += ["ModelOpt was not measured to completion in this run (`KILN_BENCH_ONLY=modelopt make bench` runs "
                      "it); its column shows the figures measured earlier on this machine (ModelOpt 0.47, from the "
                      "issues), marked *ref*.", ""]
        elif any(r["modelopt"] and r["modelopt"] not in by_cfg for r in rows):
            lines += ["ModelOpt configurations not measured in this run (a `KILN_BENCH_MODELOPT` subset, or a run stopped "
                      "for time) show the figures measured earlier on this machine (ModelOpt 0.47, from the issues), "
                      "marked *ref*.", ""]
        if any(r["modelopt"] and r["modelopt"] not in by_cfg for r in rows):
            lines += ["Figures marked *ref* were not measured in this run, so no time ratio is formed from them "
                      "(`KILN_BENCH_MODELOPT=FP8_DEFAULT_CFG,INT4_AWQ_G64 make bench` measures them).", ""]
        lines += ["| method | bits/weight | kiln s | kiln peak RSS MB | kiln ppl | Δ vs FP32 | ModelOpt s | ModelOpt ppl | "
                  "Δ vs FP32 | ModelOpt s / kiln s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            mo = by_cfg.get(r["modelopt"]) if r["modelopt"] else None
            ref = MODELOPT_REFERENCE.get(r["modelopt"]) if r["modelopt"] and not mo else None
            mo_s = mo["optimize_s"] if mo else (ref[1] if ref else None)
            mo_ppl = mo["ppl"] if mo else (ref[0] if ref else None)
            tag = " *ref*" if ref else ""
            delta = f"{(r['ppl'] / fp32 - 1):+.1%}" if fp32 and r["id"] != "fp32" else "–"
            mo_base = (mo_fp32 if mo else None) or MODELOPT_REFERENCE["fp32"][0]
            mo_delta = f"{(mo_ppl / mo_base - 1):+.1%}" if mo_ppl and r["id"] != "fp32" else "–"
            # A ratio only against ModelOpt measured in this run; an earlier reference is shown, never divided.
            speed = f"**{times(mo_s / r['seconds'])}**" if mo and mo_s and r.get("seconds") else "–"
            lines.append(f"| {r['label']} | {r['bits']:g} | {fmt(r.get('seconds'), 1)} | {fmt(r.get('peak_rss_mb'), 0)} | "
                         f"{r['ppl']:.4f} | {delta} | {fmt(mo_s, 1)}{tag if mo_s else ''} | "
                         f"{fmt(mo_ppl, 4)}{tag if mo_ppl else ''} | {mo_delta} | {speed} |")
            if mo and mo_s and r.get("seconds"):
                self.ratio("quantize", f"{r['label']}: ModelOpt time / kiln time",
                           f"{times(mo_s / r['seconds'])}; ppl {r['ppl']:.4f} vs {mo_ppl:.4f}", "faster, lower ppl",
                           r["date"])
        missing = [label for key, label, *_ in METHODS if key not in {r["id"] for r in rows}]
        if missing:
            lines += ["", "Not measured in this run (a `KILN_BENCH_METHODS` subset, or the method failed: `make bench`'s "
                      "output says why): " + "; ".join(missing) + "."]
        lines += ["", "bits/weight: nominal bits per linear weight as deployed — payload plus f16 group scales "
                  "(INT4: 4 + 16/G), 2:4 sparsity keeps half the values plus a 2-bit index each (from f32: 17, with FP8: "
                  "5). Embeddings and lm_head stay in f32 in every method.", "",
                  "Kiln commands (MODEL = SmolLM2-135M, plus `--calib tinystories_valid_calib.txt --calib-samples 32 "
                  "--calib-seq-len 256` for the calibrated ones):", ""]
        lines += [f"- `{r['command'].split(' --out ')[0]}`" for r in rows if r.get("command")]
        if modelopt and not skipped(modelopt):
            v = next(iter(by_cfg.values()), {})
            lines += ["", f"ModelOpt {v.get('modelopt_version', '?')}, torch {v.get('torch_version', '?')} (CPU), "
                      f"process wall s including load and evaluation: "
                      + ", ".join(f"{c} {r['process_s']:.0f}" for c, r in by_cfg.items()) + "."]
        return lines + ["", f"{self.when}.", ""]

    def plot(self, rows, modelopt, path):
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            import matplotlib.ticker
        except ImportError as e:
            return f"(no plot: matplotlib not importable: {e})"
        by_cfg = {r["cfg"]: r for r in modelopt or [] if "cfg" in r}
        # Points are numbered (K1 … for Kiln, M1 … for ModelOpt) and listed beside the axes: methods of the same
        # bits/weight sit on top of each other, where full names would overlap.
        fig, ax = plt.subplots(figsize=(12, 6.5), dpi=110)
        key = []
        for i, r in enumerate(rows, 1):
            ax.scatter(r["bits"], r["ppl"], color="tab:red", marker="o", s=30, zorder=4)
            ax.annotate(f"K{i}", (r["bits"], r["ppl"]), textcoords="offset points", xytext=(5, 2 + 7 * (i % 3)),
                        fontsize=7.5, color="tab:red")
            key.append((f"K{i}", f"{r['label'].split(' (')[0]}: {r['ppl']:.2f}", "tab:red"))
        shown = []
        for r in rows:
            cfg = r["modelopt"]
            if not cfg or cfg in shown:
                continue
            shown.append(cfg)
            ppl, label = (by_cfg[cfg]["ppl"], cfg) if cfg in by_cfg else (MODELOPT_REFERENCE[cfg][0], cfg + " (ref)")
            name = f"M{len(shown)}"
            ax.scatter(r["bits"], ppl, facecolors="none", edgecolors="tab:blue", marker="s", s=110, linewidths=1.5, zorder=3)
            ax.annotate(name, (r["bits"], ppl), textcoords="offset points", xytext=(-18, -12 - 7 * (len(shown) % 2)),
                        fontsize=7.5, color="tab:blue")
            key.append((name, f"ModelOpt {label}: {ppl:.2f}", "tab:blue"))
        for n, (name, text, color) in enumerate(key):
            ax.text(1.02, 1 - n * 0.045, f"{name}  {text}", transform=ax.transAxes, fontsize=8, color=color, va="top")
        ax.scatter([], [], color="tab:red", marker="o", label="Kiln")
        ax.scatter([], [], facecolors="none", edgecolors="tab:blue", marker="s", s=110, linewidths=1.5,
                   label="NVIDIA ModelOpt ((ref) = earlier run, from the issues)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xticks([4, 5, 8, 16, 32])
        ax.set_xticklabels(["4", "5", "8", "16", "32"])
        ax.set_xlim(3.5, 48)
        ax.set_xlabel("bits per linear weight (nominal, as deployed)")
        ax.set_ylabel("perplexity (kiln-ppl-v1, 20000 tokens, log scale)")
        ax.set_title("SmolLM2-135M on TinyStories: perplexity vs bits/weight per method")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return None

    def assemble(self, out):
        parts = []
        for name in SECTIONS:
            rows = load(self.results, name)
            fragment = os.path.join(self.results, name + ".md")
            if name in self.failed:
                parts.append(f"## Section `{name}`\n\nFAILED in the last run (see `make bench`'s output).\n")
            if name == "modelopt":
                continue  # side by side with Kiln's rows in the quantize fragment
            if name == "ppocr" and os.path.exists(fragment):
                parts.append(open(fragment).read())
                continue
            self.when = date(rows) or self.recorded(name) or modified(os.path.join(self.results, name + ".jsonl"))
            if rows is None:
                parts.append(f"## Section `{name}`\n\nNot run yet (`KILN_BENCH_ONLY={name} make bench`).\n")
                continue
            if skipped(rows):
                parts.append(f"## Section `{name}`\n\nSkipped: {skipped(rows)}.\n")
                continue
            if name == "quantize":
                order = [key for key, *_ in METHODS]
                rows.sort(key=lambda r: order.index(r["id"]) if r.get("id") in order else len(order))
                modelopt = load(self.results, "modelopt")
                lines = self.quantize(rows, modelopt)
                note = self.plot(rows, modelopt, os.path.join(self.results, "ppl_vs_bits.png"))
                lines += [note or "![perplexity vs bits per weight](Tools/bench/results/ppl_vs_bits.png)", ""]
            else:
                lines = getattr(self, name)(rows)
            if lines is not None:
                lines += self.load_note(name)
                with open(fragment, "w") as f:
                    f.write("\n".join(lines))
            if os.path.exists(fragment):
                parts.append(open(fragment).read())
        header = [
            "# Kiln benchmarks", "",
            "Generated by `make bench` (Tools/bench/run.sh; README › Benchmarks) — regenerate, do not edit. "
            f"Machine: **{self.machine}**. Assembled {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
            "each section gives the date it ran.", "",
            "The machine is shared with other engineers building Swift code while these ran: wall times are "
            "pessimistic and noisy (both sides of a ratio ran in the same session, minutes apart). No figure here is "
            "a test threshold.", "",
            "## Every ratio", "",
            "| section | ratio | value | goal | date |", "|---|---|---:|---|---|",
        ]
        for section, what, value, goal, when in self.ratios:
            header.append(f"| {section} | {what} | {value} | {goal or '–'} | {when or '–'} |")
        with open(out, "w") as f:
            f.write("\n".join(header) + "\n\n" + "\n".join(p.rstrip() + "\n" for p in parts))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    Report(sys.argv[1], machine(), set(sys.argv[3:])).assemble(sys.argv[2])


if __name__ == "__main__":
    main()
