"""Bigger than RAM: `kiln convert --dtype bf16` of a sharded f32 checkpoint inside a memory cgroup smaller than it.

Usage: bigconvert.py KILN SCRATCH OUT.jsonl [GB [LIMIT_MB]]      (defaults: 3 GB checkpoint, 1024 MB limit)

1. Streams a synthetic Hugging Face checkpoint to SCRATCH/input: shards of 8 f32 tensors [4096, 4096] (512 MiB)
   plus model.safetensors.index.json, values N(0, 0.02) from a fixed seed, written one tensor at a time (the
   generator never holds more than one tensor).
2. Runs `kiln convert SCRATCH/input SCRATCH/output --to safetensors --dtype bf16 --max-shard-size 512MB` as the only process of a
   new memory cgroup limited to LIMIT_MB: cgroup v1 (/sys/fs/cgroup/memory, memory.limit_in_bytes), else v2
   (memory.max), else `systemd-run --scope -p MemoryMax=`. Page cache is charged to the cgroup too, so the
   kernel must reclaim it as the conversion streams. Skips (one JSON line with the reason) when none is
   writable.
3. Checks the exit status, then compares a sample of output tensors (first, last and two in between) with
   numpy's `astype(ml_dtypes.bfloat16)` of the input, bit for bit.
Records size, limit, the cgroup's peak usage (v1 memory.max_usage_in_bytes / v2 memory.peak, where the kernel has
it), the process's peak RSS (wait4), wall seconds. The cgroup is removed afterwards.
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import time

import ml_dtypes
import numpy as np
from safetensors import safe_open

SEED = 20251126
ROWS = COLS = 4096
PER_SHARD = 8
MIB = 1 << 20


def write_checkpoint(folder, total_bytes):
    """Shards of PER_SHARD tensors until total_bytes; returns (tensor names, bytes written)."""
    os.makedirs(folder)
    rng = np.random.default_rng(SEED)
    tensor_bytes = ROWS * COLS * 4
    count = max(1, -(-total_bytes // tensor_bytes))  # at least total_bytes
    names = [f"model.layers.{i // 4}.mlp.{('gate', 'up', 'down', 'extra')[i % 4]}_proj.weight" for i in range(count)]
    shards = [names[i:i + PER_SHARD] for i in range(0, count, PER_SHARD)]
    weight_map = {}
    for s, members in enumerate(shards):
        file = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
        header = {n: {"dtype": "F32", "shape": [ROWS, COLS], "data_offsets": [j * tensor_bytes, (j + 1) * tensor_bytes]}
                  for j, n in enumerate(members)}
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(os.path.join(folder, file), "wb") as f:
            f.write(len(text).to_bytes(8, "little") + text)
            for n in members:
                t = rng.standard_normal((ROWS, COLS), dtype=np.float32)
                t *= np.float32(0.02)
                f.write(t.tobytes())
                weight_map[n] = file
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": count * tensor_bytes}, "weight_map": weight_map}, f)
    return names, count * tensor_bytes


def make_cgroup(limit):
    """(how, directory, peak file) of a new cgroup limited to `limit` bytes, or (None, reason, None)."""
    v1 = "/sys/fs/cgroup/memory"
    if os.path.isfile(os.path.join(v1, "memory.limit_in_bytes")) and os.access(v1, os.W_OK):
        d = os.path.join(v1, f"kiln-bench-{os.getpid()}")
        os.mkdir(d)
        with open(os.path.join(d, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit))
        return "cgroup v1", d, "memory.max_usage_in_bytes"
    if os.path.isfile("/sys/fs/cgroup/cgroup.controllers") and os.access("/sys/fs/cgroup", os.W_OK):
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            if "memory" in f.read().split():
                d = f"/sys/fs/cgroup/kiln-bench-{os.getpid()}"
                os.mkdir(d)
                with open(os.path.join(d, "memory.max"), "w") as f2:
                    f2.write(str(limit))
                return "cgroup v2", d, "memory.peak"
    if shutil.which("systemd-run") and os.path.isdir("/run/systemd/system"):
        return "systemd-run", None, None
    return None, "no writable memory cgroup (v1 /sys/fs/cgroup/memory, v2 /sys/fs/cgroup) and no running systemd", None


def run_limited(command, how, cgroup, limit):
    """Run command inside the limit; (exit code, seconds, peak RSS kB, stderr)."""
    if how == "systemd-run":
        command = ["systemd-run", "--scope", "--quiet", "-p", f"MemoryMax={limit}"] + command

    def enter():
        if cgroup:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=enter)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss, err


def tensor(folder, name):
    """Tensor `name` of a checkpoint folder: sharded (index.json) or a single model.safetensors."""
    index = os.path.join(folder, "model.safetensors.index.json")
    file = "model.safetensors"
    if os.path.exists(index):
        with open(index) as f:
            file = json.load(f)["weight_map"][name]
    with safe_open(os.path.join(folder, file), framework="np") as st:
        return st.get_tensor(name)


def main():
    if not 4 <= len(sys.argv) <= 6:
        sys.exit(__doc__)
    kiln, scratch, out = sys.argv[1:4]
    gb = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    limit = int(sys.argv[5]) * MIB if len(sys.argv) > 5 else 1024 * MIB
    record = {"section": "bigconvert", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "limit_bytes": limit}
    how, cgroup, peak_file = make_cgroup(limit)
    if how is None:
        record["skipped"] = cgroup
    else:
        try:
            src, dst = os.path.join(scratch, "input"), os.path.join(scratch, "output")
            print(f"bench: writing a {gb:g} GB sharded f32 checkpoint…", file=sys.stderr, flush=True)
            names, size = write_checkpoint(src, int(gb * 1e9))
            command = [kiln, "convert", src, dst, "--to", "safetensors", "--dtype", "bf16", "--max-shard-size", "512MB"]
            print(f"bench: {' '.join(command)} under {how}, limit {limit // MIB} MiB…", file=sys.stderr, flush=True)
            code, seconds, rss_kb, err = run_limited(command, how, cgroup, limit)
            record.update(how=how, input_bytes=size, tensors=len(names), shards=(len(names) + PER_SHARD - 1) // PER_SHARD,
                          exit_code=code, seconds=round(seconds, 2), peak_rss_bytes=rss_kb * 1024,
                          command="kiln " + " ".join(command[1:]).replace(scratch, "$SCRATCH"))
            if peak_file and os.path.exists(os.path.join(cgroup, peak_file)):
                with open(os.path.join(cgroup, peak_file)) as f:
                    record["cgroup_peak_bytes"] = int(f.read())
            if code != 0:
                record["error"] = err.strip()[-500:]
            else:
                sample = sorted({names[0], names[len(names) // 3], names[2 * len(names) // 3], names[-1]})
                bad = [n for n in sample if not np.array_equal(
                    tensor(src, n).astype(ml_dtypes.bfloat16).view(np.uint16), tensor(dst, n).view(np.uint16))]
                record.update(checked=sample, mismatched=bad)
        finally:
            if cgroup:
                os.rmdir(cgroup)
            shutil.rmtree(os.path.join(scratch, "input"), ignore_errors=True)
            shutil.rmtree(os.path.join(scratch, "output"), ignore_errors=True)
    line = json.dumps(record)
    print(line)
    with open(out, "a") as f:
        f.write(line + "\n")
    sys.exit(0 if "skipped" in record or (record.get("exit_code") == 0 and not record.get("mismatched")) else 1)


if __name__ == "__main__":
    main()
