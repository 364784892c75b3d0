"""Benchmark of the deoss command's start: the CPU time of a short command, start to exit.

Each command runs as its own process, as a user types it; its CPU time (user + system, from the
kernel's accounting of the waited-for child) is what the machine spends, wall time what the
user waits. Reported: the median of several runs, and the fastest and slowest.

1. ``deoss --help``: the command list, no command imported.
2. ``deoss put --help``: one command's help (its module imported, not the gateway client).
3. ``deoss fid FILE`` on a 4 KiB file: a real command, offline (the layout code imported).
4. ``python -c pass``: the interpreter alone, the floor under all of them.

Run from the repository root:

    .venv/bin/python bench/cli.py              # 9 runs of each
    .venv/bin/python bench/cli.py --runs 5 --json out.json

The Markdown report goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The deoss entry point next to this interpreter (.venv/bin/deoss), else `python -m deoss`.
_SCRIPT = Path(sys.executable).with_name("deoss")
DEOSS = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "deoss"]


def measure(argv: list[str], runs: int) -> dict[str, Any]:
    """CPU and wall seconds of ``argv`` over ``runs`` runs (after one unmeasured warm-up)."""
    cpu: list[float] = []
    wall: list[float] = []
    for index in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
        if index == 0:
            continue  # the first run fills the page cache and writes the .pyc files
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        wall.append(elapsed)
    return {
        "cpu_s": statistics.median(cpu),
        "cpu_min_s": min(cpu),
        "cpu_max_s": max(cpu),
        "wall_s": statistics.median(wall),
    }


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{model or platform.processor()}, {os.cpu_count()} cores, CPython {python}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs of each command (median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.bin"
        small.write_bytes(os.urandom(4096))
        cases = {
            "deoss --help": [*DEOSS, "--help"],
            "deoss put --help": [*DEOSS, "put", "--help"],
            "deoss fid FILE (4 KiB)": [*DEOSS, "fid", str(small)],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        results: dict[str, dict[str, Any]] = {}
        for name, argv in cases.items():
            print(f"measuring {name}…", file=sys.stderr)
            results[name] = measure(argv, args.runs)
    print(f"## bench/cli.py ({machine()}, median of {args.runs} runs)\n")
    print("| command | CPU (median) | CPU (min–max) | wall (median) |")
    print("|---|---|---|---|")
    for name, result in results.items():
        print(
            f"| `{name}` | {result['cpu_s'] * 1000:.0f} ms | {result['cpu_min_s'] * 1000:.0f}–"
            f"{result['cpu_max_s'] * 1000:.0f} ms | {result['wall_s'] * 1000:.0f} ms |"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
