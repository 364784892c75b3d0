"""Idle CPU of the local network: what ``deoss up`` costs while nobody uses it.

Starts a network (``deoss.devnet.up``: chain, schedulers, miners, gateway as real processes,
free ports, a temporary home, the default audit rounds), waits ``--settle`` seconds for the
start-up work to end, then reads from /proc the CPU seconds (user + system) of every process of
the network and of their descendants (the schedulers' tagging workers) at the start and at the
end of a ``--window``, and stops the network. Reported: CPU seconds in all, as a share of one
core, and per role.

Run from the repository root (Linux):

    .venv/bin/python bench/idle.py                  # the default network
    .venv/bin/python bench/idle.py --miners 12 --window 60
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from deoss.devnet import DevnetSpec, up

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after "(comm)", which may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def cpu_by_root(roots: dict[int, str]) -> dict[str, float]:
    """CPU seconds of each root process and its descendants, by the root's name."""
    stats = {
        pid: s for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if (s := _stat(pid))
    }
    totals: dict[str, float] = defaultdict(float)
    for pid, (_, seconds) in stats.items():
        ancestor = pid
        while ancestor not in roots and ancestor in stats and ancestor > 1:
            ancestor = stats[ancestor][0]
        if ancestor in roots:
            totals[roots[ancestor]] += seconds
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=DevnetSpec(home=Path()).miners)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deoss-idle-") as home:
        spec = DevnetSpec(home=Path(home), miners=args.miners, chain_port=0, gateway_port=0)
        net = up(spec, detach=False)
        try:
            roots = {p.popen.pid: p.name for p in net.processes if p.popen is not None}
            time.sleep(args.settle)
            before = cpu_by_root(roots)
            started = time.monotonic()
            time.sleep(args.window)
            after = cpu_by_root(roots)
            elapsed = time.monotonic() - started
        finally:
            net.stop()
    by_role: dict[str, float] = defaultdict(float)
    for name, seconds in after.items():
        by_role[name.rsplit("-", 1)[0]] += seconds - before.get(name, 0.0)
    total = sum(by_role.values())
    print(
        f"{args.miners} miners, {spec.schedulers} schedulers: {total:.2f} CPU s in {elapsed:.0f} s"
        f" idle = {total / elapsed:.3f} of a core"
    )
    for role, seconds in sorted(by_role.items()):
        count = sum(1 for name in after if name.rsplit("-", 1)[0] == role)
        print(f"  {role:<10} x{count:<3} {seconds:6.2f} s ({seconds / count:.2f} s each)")


if __name__ == "__main__":
    main()
