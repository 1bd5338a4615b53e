"""Turn measure.py results into a table (stdout) and a markdown fragment.

Usage: report.py RESULTS.jsonl INPUT.json CHECKS.txt OUT.md

RESULTS.jsonl  one measure.py line per contender
INPUT.json     make_input.py's line plus "file_bytes", "repeat", "scratch_fs", "kiln_rev"
CHECKS.txt     compare.py's lines (OK / MISMATCH)

Throughput is input-file bytes / best wall time for every contender, so a ratio above 1×
means "faster than". MB and GB are decimal (10^6, 10^9 bytes). No thresholds: numbers only.
"""

import datetime
import json
import os
import platform
import sys

LABELS = {
    "cp": ("`cp`", "f32 copy (raw I/O baseline)"),
    "kiln-f32": ("`kiln convert`", "f32 → f32 through reader/writer"),
    "kiln-bf16": ("`kiln convert --dtype bf16`", "f32 → bf16"),
    "py-natural": ("python natural", "`load_file` + `astype(bfloat16)` + `save_file`"),
    "py-stream": ("python stream", "`safe_open`, one tensor at a time, appended"),
}

RATIOS = [
    ("kiln f32 → f32 / cp", "kiln-f32", "cp"),
    ("kiln bf16 / cp", "kiln-bf16", "cp"),
    ("kiln bf16 / python natural", "kiln-bf16", "py-natural"),
    ("kiln bf16 / python stream", "kiln-bf16", "py-stream"),
]


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for mod in ("numpy", "ml_dtypes", "safetensors"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - report whatever is importable
            versions[mod] = "?"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "nproc": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: report.py RESULTS.jsonl INPUT.json CHECKS.txt OUT.md")
    with open(sys.argv[1]) as f:
        results = {r["name"]: r for r in map(json.loads, filter(str.strip, f))}
    with open(sys.argv[2]) as f:
        inp = json.load(f)
    with open(sys.argv[3]) as f:
        checks = [line.rstrip() for line in f if line.strip()]
    m = machine()
    size = inp["file_bytes"]
    largest_mb = inp["largest_bytes"] / 1e6

    def rate(name):
        return size / results[name]["best"]

    lines = [
        "## `kiln convert` benchmark",
        "",
        f"Input: {inp['tensors']} f32 tensors (Llama-7B shapes), {size / 1e9:.3f} GB file; "
        f"largest tensor `{inp['largest_name']}` {largest_mb:.1f} MB. "
        f"Each contender ran once to warm the page cache, then best of {inp['repeat']} "
        "with a warm cache (input cached; output deleted and `sync` before each run, outside the timing).",
        "",
        "| contender | what | best s | median s | GB/s (input) | peak RSS MB | RSS − largest tensor MB | throughput vs cp |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (label, what) in LABELS.items():
        if name not in results:
            continue
        r = results[name]
        rss = r["peak_rss_kb"] * 1024 / 1e6
        vs_cp = f"{rate(name) / rate('cp'):.2f}×" if "cp" in results else "-"
        lines.append(f"| {label} | {what} | {r['best']:.3f} | {r['median']:.3f} | {rate(name) / 1e9:.2f} "
                     f"| {rss:.0f} | {rss - largest_mb:+.0f} | {vs_cp} |")
    lines += ["", "Peak RSS counts mapped input pages still resident: kiln releases them behind each chunk, "
              "python stream (safetensors' mmap backend) keeps the whole input mapped."]
    lines += ["", "Throughput ratios (higher = kiln faster):", ""]
    for label, a, b in RATIOS:
        if a in results and b in results:
            lines.append(f"- {label}: **{rate(a) / rate(b):.2f}×**")
    lines += ["", "Output checks:", ""] + [f"- {c}" for c in checks]
    lines += [
        "",
        f"Machine: {m['cpu']}, nproc {m['nproc']}, Linux {m['kernel']}, scratch on {inp.get('scratch_fs', '?')}; "
        f"kiln {inp.get('kiln_rev', '?')}; Python {m['python']}, numpy {m['numpy']}, "
        f"ml_dtypes {m['ml_dtypes']}, safetensors {m['safetensors']}; {m['date']}.",
        "Shared machine: absolute figures are noisy, compare ratios from the same run.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(sys.argv[4])), exist_ok=True)
    with open(sys.argv[4], "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
