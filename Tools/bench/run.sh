#!/usr/bin/env bash
# `make bench`: measure Kiln against its peers, section by section, then write BENCHMARKS.md.
#
# Sections (in this order; each writes Tools/bench/results/NAME.md and NAME.jsonl, or a fragment saying why
# it was skipped; a failing section is reported and the others still run):
#   convert     kiln convert f32 → bf16 on a 1 GB file vs cp and python (convert.sh)            ~5 min
#   bigconvert  kiln convert of a 3 GB sharded checkpoint inside a 1 GiB memory cgroup (root)   ~3 min
#   gemm        executor linear path vs one direct cblas_sgemm, SmolLM2 shapes, 2 threads        ~1 min
#   prefill     512-token forward of SmolLM2-135M: kiln executor vs PyTorch CPU f32, 2 threads  ~2 min
#   quantize    kiln quantize / sparsify on SmolLM2-135M: time, peak RSS, perplexity             ~25 min
#   modelopt    NVIDIA ModelOpt on the same model, data and protocol (../shared/tools)          ~35 min
#   ppocr       Tools/bench/ppocr.py (onnxruntime PP-OCR latency/agreement) when it exists
# Then report.py-style assembly: assemble.py → BENCHMARKS.md (repo root) + results/ppl_vs_bits.png.
# No thresholds: exits non-zero only when a section fails (a run fails or an output check mismatches).
#
# Environment:
#   KILN_BENCH_ONLY    comma-separated sections to run (default: all); the others keep their last results
#   KILN_BENCH_SKIP    comma-separated sections not to run
#   KILN_BENCH_PYTHON  python with numpy, ml_dtypes, safetensors (default: .venv/bin/python)
#   KILN_BENCH_TORCH_PYTHON  the bench venv's python: torch, transformers, nvidia-modelopt, matplotlib
#                      (default: .venv-bench/bin/python; `make bench` creates it)
#   KILN_BENCH_KILN    kiln binary (default: .build/release/kiln; kiln-bench beside it)
#   KILN_SMOLLM2_DIR   SmolLM2-135M checkpoint (default: ~/.cache/kiln/SmolLM2-135M; `make smollm2`)
#   KILN_BENCH_DIR     scratch parent folder (default: $TMPDIR or /tmp); needs ~5 GB free
#   KILN_BENCH_THREADS threads for gemm and prefill (default: 2)
#   KILN_BENCH_MODELOPT comma-separated subset of the ModelOpt configurations (default: all; llm.py lists them);
#                       a subset run replaces only its own records in results/modelopt.jsonl
#   KILN_BENCH_METHODS  comma-separated subset of the Kiln quantize method ids (default: all; llm.py lists them);
#                       a subset run replaces only its own records in results/quantize.jsonl
#   BENCH_REPEAT       measured runs per convert contender (default: 3)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/Tools/bench"
RESULTS="$HERE/results"
SHARED="$(cd "$ROOT/.." && pwd)/shared"
PY="${KILN_BENCH_PYTHON:-$ROOT/.venv/bin/python}"
TORCH_PY="${KILN_BENCH_TORCH_PYTHON:-$ROOT/.venv-bench/bin/python}"
KILN="${KILN_BENCH_KILN:-$ROOT/.build/release/kiln}"
KILN_BENCH="$(dirname "$KILN")/kiln-bench"
SMOLLM2="${KILN_SMOLLM2_DIR:-$HOME/.cache/kiln/SmolLM2-135M}"
DATA="$SHARED/data"
THREADS="${KILN_BENCH_THREADS:-2}"
SECTIONS=(convert bigconvert gemm prefill quantize modelopt ppocr)

die() { echo "bench: $*" >&2; exit 2; }
[[ -x $PY ]] || die "no python at $PY (run 'make venv' or set KILN_BENCH_PYTHON)"
[[ -x $KILN ]] || die "no kiln binary at $KILN (run 'make release' or set KILN_BENCH_KILN)"
mkdir -p "$RESULTS"

wanted() {  # NAME: selected by KILN_BENCH_ONLY / KILN_BENCH_SKIP?
    local only=",${KILN_BENCH_ONLY:-},", skip=",${KILN_BENCH_SKIP:-},"
    [[ $only == ",," || $only == *",$1,"* ]] && [[ $skip != *",$1,"* ]]
}

# skip NAME REASON: the section's fragment says why it did not run (and the reason is printed).
skip() {
    echo "bench: skipping $1: $2" >&2
    printf '{"section": "%s", "skipped": %s}\n' "$1" "$("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")" \
        > "$RESULTS/$1.jsonl"
    rm -f "$RESULTS/$1.md"
}

smollm2_ready() { [[ -f $SMOLLM2/config.json && -f $SMOLLM2/tokenizer.json ]]; }
torch_ready() { [[ -x $TORCH_PY ]] && "$TORCH_PY" -c 'import torch, transformers' 2>/dev/null; }

section_convert() { KILN_BENCH_REPORT="$RESULTS/convert.md" bash "$HERE/convert.sh"; }

section_bigconvert() {
    local work
    work="$(mktemp -d "${KILN_BENCH_DIR:-${TMPDIR:-/tmp}}/kiln-bigconvert.XXXXXX")" || return 1
    : > "$RESULTS/bigconvert.jsonl"
    "$PY" "$HERE/bigconvert.py" "$KILN" "$work" "$RESULTS/bigconvert.jsonl"
    local status=$?
    rm -rf "$work"
    return $status
}

section_gemm() {
    [[ -x $KILN_BENCH ]] || { skip gemm "no kiln-bench at $KILN_BENCH (swift build -c release builds it)"; return 0; }
    "$KILN_BENCH" gemm --threads "$THREADS" --repeat 10 --shapes 512x576x1536,512x576x576,512x576x192,512x1536x576,512x576x49152 \
        > "$RESULTS/gemm.jsonl"
}

section_prefill() {
    [[ -x $KILN_BENCH ]] || { skip prefill "no kiln-bench at $KILN_BENCH (swift build -c release builds it)"; return 0; }
    smollm2_ready || { skip prefill "no SmolLM2-135M at $SMOLLM2 (make smollm2)"; return 0; }
    local text="$DATA/tinystories_valid_eval.txt"
    "$KILN_BENCH" prefill "$SMOLLM2" --text "$text" --tokens 512 --threads "$THREADS" > "$RESULTS/prefill.jsonl" || return 1
    if torch_ready; then
        "$TORCH_PY" "$HERE/torch_prefill.py" "$SMOLLM2" "$text" 512 "$THREADS" 3 >> "$RESULTS/prefill.jsonl"
    else
        echo '{"section": "prefill", "engine": "torch", "skipped": "torch/transformers not installable here (bench venv '"$TORCH_PY"')"}' \
            >> "$RESULTS/prefill.jsonl"
    fi
}

section_quantize() {
    smollm2_ready || { skip quantize "no SmolLM2-135M at $SMOLLM2 (make smollm2)"; return 0; }
    local work status
    work="$(mktemp -d "${KILN_BENCH_DIR:-${TMPDIR:-/tmp}}/kiln-quantize.XXXXXX")" || return 1
    "$PY" "$HERE/llm.py" kiln "$KILN" "$SMOLLM2" "$DATA" "$RESULTS/quantize.jsonl" "$work"
    status=$?
    rm -rf "$work"
    return $status
}

section_modelopt() {
    smollm2_ready || { skip modelopt "no SmolLM2-135M at $SMOLLM2 (make smollm2)"; return 0; }
    local anchor="$SHARED/tools/modelopt_anchor.py"
    [[ -f $anchor ]] || { skip modelopt "no ModelOpt anchor script at $anchor"; return 0; }
    [[ -x $TORCH_PY ]] || { skip modelopt "not installable here: no bench venv at $TORCH_PY (make bench creates it)"; return 0; }
    "$PY" "$HERE/llm.py" modelopt "$TORCH_PY" "$anchor" "$SMOLLM2" "$DATA" "$RESULTS/modelopt.jsonl"
}

section_ppocr() {
    [[ -f $HERE/ppocr.py ]] || { skip ppocr "Tools/bench/ppocr.py is absent (written on another branch)"; return 0; }
    local models="$SHARED/models/ppocr-v4-onnx"
    [[ -d $models ]] || { skip ppocr "no PP-OCR models at $models"; return 0; }
    rm -f "$RESULTS/ppocr.jsonl"
    "$PY" "$HERE/ppocr.py" --kiln "$KILN" --models "$models" --out "$RESULTS/ppocr.md"
}

failed=()
for s in "${SECTIONS[@]}"; do
    wanted "$s" || continue
    echo "bench: ── section $s ──" >&2
    started=$SECONDS
    read -r load_start _ < /proc/loadavg
    if ! "section_$s"; then
        echo "bench: section $s FAILED" >&2
        failed+=("$s")
    fi
    read -r load_end _ < /proc/loadavg
    # The machine's 1-minute load average around the section: how shared the CPU was (assemble.py prints it).
    echo "{\"load_start\": $load_start, \"load_end\": $load_end, \"seconds\": $((SECONDS - started)), \"date\": \"$(date -u '+%Y-%m-%d %H:%M UTC')\"}" > "$RESULTS/$s.load.json"
    echo "bench: section $s took $((SECONDS - started)) s" >&2
done

plot_python="$PY"
[[ -x $TORCH_PY ]] && "$TORCH_PY" -c "import matplotlib" 2>/dev/null && plot_python="$TORCH_PY"  # matplotlib: bench venv
"$plot_python" "$HERE/assemble.py" "$RESULTS" "$ROOT/BENCHMARKS.md" "${failed[@]}" || failed+=(assemble)
echo "bench: wrote BENCHMARKS.md" >&2
if ((${#failed[@]})); then
    echo "bench: failed sections: ${failed[*]}" >&2
    exit 1
fi
