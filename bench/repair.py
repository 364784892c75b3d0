"""Benchmark of repair on the local network: how fast the fragments of a failed miner are rebuilt
elsewhere, and how long the network runs below full redundancy.

The script starts its own local network (``deoss.devnet.up``: a chain node, 2 schedulers,
14 miners, a gateway, real processes on free ports in a temporary home; the devnet's audit
parameters: a challenge round every ``challenge_interval_blocks``, ``max_consecutive_faults``
missed rounds make a miner FAULTY), and always stops it at the end. 14 miners, not 12, so that
every segment has active miners holding none of its fragments to rebuild on.

1. Uploads objects of random bytes (default 4 x 64 MiB; ``--quick``: 2 x 32 MiB) and waits
   until they are tagged (only tagged fragments are challenged).
2. SIGKILLs the miner holding the most bytes at t0, then polls the chain every 100 ms:
   t1 = the miner is FAULTY (restoral orders open for everything it held);
   t2 = no order is left and no segment names it a holder any more: full redundancy again.
3. Downloads every object with the miner still dead and checks its SHA-256.

Reported: detection time (t1 - t0, set by the audit parameters: about max_consecutive_faults
rounds), repair time (t2 - t1), time from the failure to full redundancy (t2 - t0), and the
repair throughput: bytes of fragments rebuilt / (t2 - t1), with the bytes fetched from other
miners to rebuild them (k fragments per rebuilt one) taken from the miners' own counters in
their logs (``repair_completed`` lines) and the per-order times.

Run from the repository root:

    .venv/bin/python bench/repair.py            # 256 MiB of objects (several minutes)
    .venv/bin/python bench/repair.py --quick    # 64 MiB
    .venv/bin/python bench/repair.py --json out.json --keep

The Markdown report goes to stdout, progress to stderr. The chain, 17 services and the client
share the machine's cores, so the figures are lower bounds for a real deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.holdings import Holding
from deoss.chain.modules.miners import MinerState
from deoss.chain.modules.restoral import Order
from deoss.chain.query import MAX_PAGE
from deoss.devnet import DevnetSpec, devnet_params, up
from deoss.keyfile import read_key_file
from e2e import Bench, rate, write_random_file  # bench/e2e.py, beside this script
from machine import cpu_model

Result = dict[str, Any]

MiB = 1024 * 1024
MINERS = 14
POLL_S = 0.1


def log(message: str) -> None:
    print(f"[repair] {message}", file=sys.stderr, flush=True)


async def holdings(bench: Bench, address: str) -> list[Holding]:
    return await bench.chain.reads.holdings(address)


async def orders(bench: Bench) -> list[Order]:
    out: list[Order] = []
    next_id = 0
    while True:
        page = await bench.chain.reads.orders(next_id, MAX_PAGE)
        out.extend(page)
        if len(page) < MAX_PAGE:
            return out
        next_id = page[-1].id + 1


async def miner_state(bench: Bench, address: str) -> MinerState:
    miner = await bench.chain.reads.miner.required(address)
    return miner.state


def repair_lines(home: Path, fids: set[str]) -> list[Result]:
    """The ``repair_completed`` log lines of every miner for these files."""
    out = []
    for path in sorted((home / "logs").glob("miner-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"repair_completed"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("fid") in fids:
                out.append({**event, "miner": path.stem})
    return out


async def run(bench: Bench, sizes: Sequence[int], timeout_s: float) -> Result:
    stored: list[tuple[str, str, int, str]] = []
    for i, size in enumerate(sizes):
        path = bench.workdir / f"object-{i}"
        sha = write_random_file(path, size)
        name = bench.fresh_name("repair")
        answer, seconds = await bench.put_file(name, path, sha, size)
        stored.append((name, sha, size, answer["fid"]))
        log(f"uploaded {size // MiB} MiB in {seconds:.1f} s")
    fids = {fid for *_, fid in stored}
    tagged = await bench.wait_tagged(list(fids), timeout_s)
    if len(tagged) != len(fids):
        raise RuntimeError(f"only {len(tagged)} of {len(fids)} objects tagged in {timeout_s} s")
    log("all objects tagged")

    # the victim: the miner holding the most bytes of these objects
    miners = {
        name: read_key_file(bench.spec.key_path(index))
        for name, role, index in bench.spec.services()
        if role == "miner"
    }
    held = {name: await holdings(bench, key.address) for name, key in miners.items()}
    victim = max(held, key=lambda n: sum(h.size for h in held[n] if h.fid in fids))
    lost = [h for h in held[victim] if h.fid in fids]
    lost_bytes = sum(h.size for h in lost)
    address = miners[victim].address
    log(f"killing {victim}: {len(lost)} fragments, {lost_bytes / MiB:.1f} MiB")

    popen = bench.net.process(victim).popen
    assert popen is not None
    t0 = time.perf_counter()
    os.kill(popen.pid, signal.SIGKILL)
    popen.wait()

    t1 = t2 = None
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline:
        if t1 is None and await miner_state(bench, address) == MinerState.FAULTY:
            t1 = time.perf_counter()
            log(f"{victim} FAULTY after {t1 - t0:.1f} s")
        if t1 is not None:
            left = [o for o in await orders(bench) if o.former == miners[victim].public_key]
            if not left and not await holdings(bench, address):
                t2 = time.perf_counter()
                break
        await asyncio.sleep(POLL_S)
    if t1 is None or t2 is None:
        raise RuntimeError(f"no full redundancy within {timeout_s} s (faulty: {t1 is not None})")
    log(f"full redundancy after {t2 - t0:.1f} s")

    # every segment again has as many distinct holders as fragments
    for fid in fids:
        record: FileRecord = await bench.file_record(fid)
        for segment, row in enumerate(record.holders):
            if len(set(row)) != len(row) or miners[victim].public_key in row:
                raise RuntimeError(f"{fid} segment {segment}: holders not distinct or victim")

    for name, sha, size, _ in stored:
        await bench.get_object(name, sha, size)
    log("every object downloads identical with the victim dead")

    lines = repair_lines(bench.spec.home, fids)
    per_order = [float(line["seconds"]) for line in lines]
    layout = devnet_params(bench.spec).layout
    return {
        "objects": [size for *_, size, _ in stored],
        "victim_fragments": len(lost),
        "victim_bytes": lost_bytes,
        "detect_s": t1 - t0,
        "repair_s": t2 - t1,
        "failure_to_redundancy_s": t2 - t0,
        "repair_mb_s": rate(lost_bytes, t2 - t1),
        "fetched_bytes_estimate": lost_bytes * layout.data_shards,
        "orders_completed": len(lines),
        "order_s_median": statistics.median(per_order) if per_order else None,
        "order_s_max": max(per_order) if per_order else None,
        "restorers": len({line["miner"] for line in lines}),
        "phase_s_median": {
            phase: statistics.median(float(line.get(f"{phase}_s", 0.0)) for line in lines)
            for phase in ("obtain", "store", "tags", "complete")
        }
        if lines
        else {},
    }


def render(results: Result) -> str:
    m, n, r = results["machine"], results["network"], results["repair"]
    out = [
        "### Repair: throughput and time to full redundancy",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Network: "
        f"{n['miners']} miners, {n['block_ms']} ms blocks, {n['segment_bytes'] // MiB} MiB "
        f"segments, k={n['k']} + m={n['m']}, a round every {n['interval_blocks']} blocks "
        f"(answered within {n['deadline_blocks']}), FAULTY after {n['faults']} faults in a row, "
        f"{n['repair_slots']} repair slots per miner.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| objects | {', '.join(f'{s // MiB} MiB' for s in r['objects'])} |",
        f"| fragments lost with the killed miner | {r['victim_fragments']} "
        f"({r['victim_bytes'] / MiB:.1f} MiB) |",
        f"| failure → FAULTY (detection) | {r['detect_s']:.1f} s |",
        f"| FAULTY → full redundancy (repair) | {r['repair_s']:.1f} s |",
        f"| failure → full redundancy | {r['failure_to_redundancy_s']:.1f} s |",
        f"| repair throughput (bytes rebuilt / repair time) | {r['repair_mb_s']:.1f} MB/s |",
        f"| fetched from other miners to rebuild (k × rebuilt) | "
        f"{r['fetched_bytes_estimate'] / MiB:.0f} MiB |",
        f"| orders completed, by how many miners | {r['orders_completed']}, {r['restorers']} |",
        f"| one order (claim excluded): median / max | {r['order_s_median']:.2f} s / "
        f"{r['order_s_max']:.2f} s |",
    ]
    phases = r.get("phase_s_median") or {}
    if phases:
        out.append(
            "| one order, median per phase: fetch k + rebuild / store / tags from a scheduler / "
            "complete on chain | "
            + " / ".join(f"{phases[p]:.2f} s" for p in ("obtain", "store", "tags", "complete"))
            + " |"
        )
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 x 32 MiB instead of 4 x 64 MiB")
    parser.add_argument("--block-ms", type=int, default=500, help="block interval (500)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="longest wait per step")
    parser.add_argument("--json", metavar="OUT", help="also write the raw results to OUT")
    parser.add_argument("--keep", action="store_true", help="keep the network's home (logs)")
    args = parser.parse_args(argv)
    sizes = [32 * MiB] * 2 if args.quick else [64 * MiB] * 4

    home = Path(tempfile.mkdtemp(prefix="deoss-repair-"))
    spec = DevnetSpec(
        home=home, chain_port=0, gateway_port=0, block_ms=args.block_ms, miners=MINERS
    )
    params = devnet_params(spec)
    results: Result = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "network": {
            "miners": spec.miners,
            "block_ms": spec.block_ms,
            "segment_bytes": spec.segment_size,
            "k": params.layout.data_shards,
            "m": params.layout.parity_shards,
            "interval_blocks": params.challenge_interval_blocks,
            "deadline_blocks": params.proof_deadline_blocks,
            "faults": params.max_consecutive_faults,
            "repair_slots": spec.miner_options.get("repair_slots", 2),
        },
    }
    failed = False
    try:
        log(f"starting the network in {home}")
        net = up(spec, detach=False)
        try:
            workdir = home / "bench-files"
            workdir.mkdir()
            bench = Bench(spec, net, workdir)

            async def go() -> Result:
                try:
                    return await run(bench, sizes, args.timeout)
                finally:
                    await bench.aclose()

            results["repair"] = asyncio.run(go())
        finally:
            log("stopping the network")
            net.stop()
    except BaseException:
        failed = True
        raise
    finally:
        if args.keep or failed:
            log(f"kept the network's home (logs under {home / 'logs'})")
        else:
            shutil.rmtree(home, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    sys.stdout.write(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
