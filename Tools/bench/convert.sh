#!/usr/bin/env bash
# `make bench` section "convert" (run by Tools/bench/run.sh): time `kiln convert` against cp and against
# Python on a ~1 GB f32 safetensors file.
#
# Contenders (same input, same run, warm page cache, best of $BENCH_REPEAT after one warm-up):
#   cp                          raw I/O baseline
#   kiln convert                f32 → f32, bytes through the reader and writer
#   kiln convert --dtype bf16   the cast
#   python natural              load_file + astype(ml_dtypes.bfloat16) + save_file
#   python stream               safe_open, one tensor at a time
# Then checks kiln's bf16 output against Python's bit for bit, prints a table of seconds,
# GB/s, peak RSS and ratios, and writes it to Tools/bench/results/convert.md (+ convert.jsonl).
# No thresholds: exits non-zero only when a run fails or an output check mismatches.
#
# Environment:
#   KILN_BENCH_PYTHON  python with numpy, ml_dtypes, safetensors (default: .venv/bin/python)
#   KILN_BENCH_KILN    kiln binary (default: .build/release/kiln)
#   KILN_BENCH_DIR     scratch parent folder (default: $TMPDIR or /tmp); needs ~5 GB free
#   KILN_BENCH_REPORT  markdown output (default: Tools/bench/results/convert.md)
#   BENCH_REPEAT       measured runs per contender (default: 3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/Tools/bench"
PY="${KILN_BENCH_PYTHON:-$ROOT/.venv/bin/python}"
KILN="${KILN_BENCH_KILN:-$ROOT/.build/release/kiln}"
REPORT="${KILN_BENCH_REPORT:-$HERE/results/convert.md}"
REPEAT="${BENCH_REPEAT:-3}"
BASE="${KILN_BENCH_DIR:-${TMPDIR:-/tmp}}"
NEED_BYTES=$((5 * 1000 * 1000 * 1000))

die() { echo "bench: $*" >&2; exit 2; }
[[ -x $PY ]] || die "no python at $PY (run 'make venv' or set KILN_BENCH_PYTHON)"
[[ -x $KILN ]] || die "no kiln binary at $KILN (run 'make release' or set KILN_BENCH_KILN)"
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEAT must be a positive integer (found '$REPEAT')"
"$PY" -c 'import numpy, ml_dtypes, safetensors' 2>/dev/null || die "$PY lacks numpy, ml_dtypes or safetensors"

mkdir -p "$BASE"
WORK="$(mktemp -d "$BASE/kiln-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
avail=$(df --output=avail -B1 "$WORK" | tail -n 1 | tr -d ' ')
((avail >= NEED_BYTES)) || die "$WORK has $((avail / 1000000)) MB free, needs $((NEED_BYTES / 1000000)) MB"

IN="$WORK/input.safetensors"
echo "bench: scratch $WORK; making the input (fixed seed)…" >&2
"$PY" "$HERE/make_input.py" "$IN" > "$WORK/made.json"
"$PY" - "$WORK/made.json" "$WORK/input.json" "$(stat -c %s "$IN")" "$REPEAT" \
    "$(findmnt -n -o FSTYPE -T "$WORK" 2>/dev/null || echo '?')" \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" <<'EOF'
import json, sys
made, out, size, repeat, fs, rev = sys.argv[1:]
info = json.load(open(made))
info.update(file_bytes=int(size), repeat=int(repeat), scratch_fs=fs, kiln_rev=rev)
json.dump(info, open(out, "w"))
EOF

RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
measure() {  # NAME OUTPUT -- COMMAND...
    local name=$1 output=$2
    shift 3
    echo "bench: $name (1 warm-up + $REPEAT runs)…" >&2
    "$PY" "$HERE/measure.py" "$name" "$REPEAT" "$output" -- "$@" | tee -a "$RESULTS" >&2
}

measure cp "$WORK/cp.safetensors" -- cp "$IN" "$WORK/cp.safetensors"
rm -f "$WORK/cp.safetensors"
measure kiln-f32 "$WORK/kiln-f32.safetensors" -- "$KILN" convert "$IN" "$WORK/kiln-f32.safetensors"
measure kiln-bf16 "$WORK/kiln-bf16.safetensors" -- "$KILN" convert "$IN" "$WORK/kiln-bf16.safetensors" --dtype bf16
measure py-natural "$WORK/py-natural.safetensors" -- "$PY" "$HERE/python_cast.py" natural "$IN" "$WORK/py-natural.safetensors"
measure py-stream "$WORK/py-stream.safetensors" -- "$PY" "$HERE/python_cast.py" stream "$IN" "$WORK/py-stream.safetensors"

echo "bench: checking outputs…" >&2
CHECKS="$WORK/checks.txt"
status=0
"$PY" "$HERE/compare.py" "kiln bf16 vs python natural bf16" "$WORK/kiln-bf16.safetensors" "$WORK/py-natural.safetensors" >> "$CHECKS" || status=1
"$PY" "$HERE/compare.py" "python stream bf16 vs python natural bf16" "$WORK/py-stream.safetensors" "$WORK/py-natural.safetensors" >> "$CHECKS" || status=1
"$PY" "$HERE/compare.py" "kiln f32 → f32 vs input" "$WORK/kiln-f32.safetensors" "$IN" >> "$CHECKS" || status=1

echo >&2
"$PY" "$HERE/report.py" "$RESULTS" "$WORK/input.json" "$CHECKS" "$REPORT"
cp "$RESULTS" "${REPORT%.md}.jsonl"
echo "bench: wrote ${REPORT#"$ROOT/"}" >&2
if ((status != 0)); then
    echo "bench: OUTPUT MISMATCH (see checks above)" >&2
    exit 1
fi
