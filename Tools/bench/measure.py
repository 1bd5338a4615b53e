"""Run one contender: one warm-up run, then N measured runs; print one JSON line.

Usage: measure.py NAME REPEAT OUTPUT -- COMMAND...

Before every run (warm-up included) OUTPUT (a file or a folder) is deleted and dirty pages are synced, outside
the timed region, so each run writes a fresh file from a clean, warm page cache. Wall time
is measured around fork/exec/wait; peak RSS is the child's own ru_maxrss from wait4 (not
RUSAGE_CHILDREN, which is a maximum over every child ever waited for).

Output: {"name", "seconds": [..], "best", "median", "rss_kb": [..], "peak_rss_kb"}.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run_once(command, output, env=None):
    """Run COMMAND once (OUTPUT, a file or folder, deleted first); return (seconds, peak RSS kB, stderr text)."""
    if os.path.isdir(output) and not os.path.islink(output):
        shutil.rmtree(output)
    elif os.path.lexists(output):
        os.unlink(output)
    os.sync()
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
        if proc.returncode != 0:
            sys.stderr.write(text)
            sys.exit(f"measure.py: {' '.join(command)} exited with {proc.returncode}")
    return seconds, usage.ru_maxrss, text


def main():
    args = sys.argv[1:]
    if len(args) < 5 or args[3] != "--":
        sys.exit("usage: measure.py NAME REPEAT OUTPUT -- COMMAND...")
    name, repeat, output, command = args[0], int(args[1]), args[2], args[4:]
    run_once(command, output)  # warm-up: page cache, dynamic loader, Python bytecode caches
    seconds, rss = [], []
    for _ in range(max(1, repeat)):
        s, r, _ = run_once(command, output)
        seconds.append(s)
        rss.append(r)
    print(json.dumps({
        "name": name, "seconds": seconds, "best": min(seconds), "median": statistics.median(seconds),
        "rss_kb": rss, "peak_rss_kb": max(rss),
    }))


if __name__ == "__main__":
    main()
