#!/bin/bash
# Build the libFuzzer targets of Tools/fuzz (instrumented with -sanitize=fuzzer,address, in
# .build-fuzz) and run each for SECONDS seconds, one after the other (one core).
#
# Usage: Tools/fuzz/run.sh SECONDS [FuzzTarget ...]      (make fuzz SECONDS=N)
#
# Inputs: seeds from Tools/fuzz/make_seeds.py (with $KILN_FUZZ_PYTHON, skipped when unset), plus the
# corpus each target grew in earlier runs (.build-fuzz/corpus/<target>, kept). Crashes, timeouts
# and out-of-memory inputs land in .build-fuzz/findings/<target>/ (not "artifacts": SwiftPM owns
# <scratch>/artifacts and empties it when it resolves the package); after a finding the target is
# restarted for the rest of its SECONDS, and the script exits 1 when any run found one.
# Replay one with: .build-fuzz/debug/<target> <finding>
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
shift || true
all=(FuzzSafetensors FuzzIndex FuzzONNX FuzzJSON FuzzTokenizer FuzzTRTLLM FuzzHFQuant FuzzCalibCache FuzzPlugin FuzzNPZ FuzzGraphRun)
targets=("${@:-${all[@]}}")
scratch="$root/.build-fuzz"

mkdir -p "$scratch"
echo "building the fuzz targets into $scratch"
if ! (cd "$root/Tools/fuzz" && ${SWIFT:-swift} build -c debug --scratch-path "$scratch" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library >"$scratch/fuzz-build.log" 2>&1); then
    grep -v "Cannot export local symbol '__asan" "$scratch/fuzz-build.log" | tail -40
    exit 2
fi

if [ -n "${KILN_FUZZ_PYTHON:-}" ]; then
    # Written aside and swapped in, so a run.sh already fuzzing other targets never reads a half-written folder.
    rm -rf "$scratch/seeds.new" "$scratch/seeds.old"
    "$KILN_FUZZ_PYTHON" "$root/Tools/fuzz/make_seeds.py" "$scratch/seeds.new" >/dev/null
    [ -d "$scratch/seeds" ] && mv "$scratch/seeds" "$scratch/seeds.old"
    mv "$scratch/seeds.new" "$scratch/seeds"
    rm -rf "$scratch/seeds.old"
else
    echo "no seeds: KILN_FUZZ_PYTHON is not set (make fuzz sets it to the venv's python)"
fi

found=0
for t in "${targets[@]}"; do
    corpus="$scratch/corpus/$t"
    artifacts="$scratch/findings/$t"
    mkdir -p "$corpus" "$artifacts"
    dirs=("$corpus")
    [ -d "$scratch/seeds/$t" ] && dirs+=("$scratch/seeds/$t")
    dict=()
    case $t in
        FuzzIndex|FuzzJSON|FuzzTokenizer|FuzzTRTLLM|FuzzHFQuant|FuzzSafetensors) dict=(-dict="$root/Tools/fuzz/dicts/json.dict") ;;
    esac
    echo "== $t: ${seconds}s"
    # libFuzzer stops at its first finding; the target is restarted (its corpus kept) until SECONDS are used,
    # so one known crash does not end a long unattended run. Each run's log is appended to <target>.log.
    : > "$scratch/$t.log"
    deadline=$((SECONDS + seconds))
    while [ $((deadline - SECONDS)) -gt 0 ]; do
        before=$(ls "$artifacts" | wc -l)
        set +e
        # The Swift runtime's backtracer reads memory in ways ASan reports; libFuzzer prints the stack itself.
        SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "$scratch/debug/$t" "${dirs[@]}" "${dict[@]}" \
            -max_total_time=$((deadline - SECONDS)) -timeout=20 -rss_limit_mb=3072 -max_len=65536 -print_final_stats=1 \
            -artifact_prefix="$artifacts/" >"$scratch/$t.run.log" 2>&1
        status=$?
        set -e
        cat "$scratch/$t.run.log" >> "$scratch/$t.log"
        grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$scratch/$t.run.log" | tr '\n' ' '
        echo
        after=$(ls "$artifacts" | wc -l)
        if [ "$status" != 0 ] || [ "$after" != "$before" ]; then
            echo "   FOUND: exit $status, findings in $artifacts (log: $scratch/$t.log)"
            grep -m3 -E "SUMMARY|Fatal error|ERROR: libFuzzer|runtime failure" "$scratch/$t.run.log" | sed 's/^/   /' || true
            found=1
            [ "$after" != "$before" ] || break  # a failure that left no input (e.g. a bad flag) would repeat
        fi
    done
    rm -f "$scratch/$t.run.log"
done
exit $found
