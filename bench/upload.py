"""Benchmark of the upload target (DESIGN section 8: a 256 MiB object to SUCCESS on a devnet on
one machine, at least 50 MB/s), with where the CPU went and how long each phase took.

Each run starts a fresh local network (``deoss.devnet.up``: chain, 2 schedulers, 12 miners,
gateway as real processes, temporary home, blocks every 500 ms), uploads one object of random
bytes streamed from a file (its SHA-256 computed beforehand, as ``bench/e2e.py`` does), then
downloads it once right away (its tagging running at low priority meanwhile) and stops the
network. A fresh network per run is a quiet network, like e2e.py's wait for earlier uploads
to be tagged, in seconds instead of minutes.

Reported per run: upload MB/s (first byte sent to the 201), the gateway's phases (spooling
and planning the body; declaring the deal) from its log, the CPU seconds each kind of
process used during the upload (from /proc: chain, schedulers, miners, gateway), and the
download MB/s (SHA-256 checked). The median over the runs is the figure for the target.

    .venv/bin/python bench/upload.py                 # 3 runs of 256 MiB
    .venv/bin/python bench/upload.py --runs 5 --mib 64
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.devnet import DEV_BUCKET, Devnet, DevnetSpec, up
from deoss.keyfile import read_key_file
from machine import cpu_model  # bench/machine.py, beside this script

MiB = 1024 * 1024
CHUNK = MiB
TARGET_MB_S = 50.0
TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds(net: Devnet) -> dict[str, float]:
    """CPU seconds (user + system) used so far, summed per kind of process."""
    used: dict[str, float] = {}
    for process in net.processes:
        if process.popen is None:
            continue
        fields = Path(f"/proc/{process.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        kind = process.name.split("-")[0]
        used[kind] = used.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return used


def gateway_phases(home: Path) -> dict[str, float]:
    for line in (home / "logs" / "gateway.log").read_text().splitlines():
        if '"upload.declared"' in line:
            event = json.loads(line[line.index("{") :])
            return {"spool_ms": event["spool_ms"], "declare_ms": event["declare_ms"]}
    return {}


async def upload_and_download(net: Devnet, spec: DevnetSpec, path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)

    async def body() -> AsyncIterator[bytes]:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    user = read_key_file(spec.key_path(0))
    timeout = httpx.Timeout(60.0, read=1800.0)
    target = f"/objects/{DEV_BUCKET}/bench-{os.urandom(4).hex()}"
    async with httpx.AsyncClient(
        base_url=net.gateway_url, auth=SigningAuth(user), timeout=timeout
    ) as http:
        before = cpu_seconds(net)
        headers = {HEADER_BODY: digest.hexdigest(), "content-length": str(size)}
        started = time.perf_counter()
        response = await http.put(target, content=body(), headers=headers)
        upload_s = time.perf_counter() - started
        after = cpu_seconds(net)
        if response.status_code != 201 or response.json().get("state") != "SUCCESS":
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
        check = hashlib.sha256()
        started = time.perf_counter()
        async with http.stream("GET", target) as got:
            if got.status_code != 200:
                raise RuntimeError(f"download answered {got.status_code}")
            async for chunk in got.aiter_bytes(CHUNK):
                check.update(chunk)
        download_s = time.perf_counter() - started
    if check.digest() != digest.digest():
        raise RuntimeError("the download does not match the upload")
    return {
        "upload_s": upload_s,
        "upload_mb_s": size / upload_s / 1e6,
        "download_mb_s": size / download_s / 1e6,
        "cpu_s": {kind: after[kind] - before.get(kind, 0.0) for kind in after},
        **gateway_phases(spec.home),
    }


def one_run(size: int, workdir: Path) -> dict[str, Any]:
    path = workdir / "object.bin"
    with open(path, "wb") as handle:
        for _ in range(size // MiB):
            handle.write(os.urandom(MiB))
        handle.write(os.urandom(size % MiB))
        handle.flush()
        os.fsync(handle.fileno())  # else its writeback competes with the upload measured
    home = Path(tempfile.mkdtemp(prefix="deoss-upload-", dir=workdir))
    spec = DevnetSpec(home=home, chain_port=0, gateway_port=0, miners=12)  # as measured so far
    net = up(spec, detach=False)
    try:
        time.sleep(2)  # let registration traffic settle
        return asyncio.run(upload_and_download(net, spec, path))
    finally:
        net.stop()
        shutil.rmtree(home, ignore_errors=True)


def render(runs: list[dict[str, Any]], size: int) -> str:
    median = statistics.median(r["upload_mb_s"] for r in runs)
    kinds = sorted({k for r in runs for k in r["cpu_s"]})
    lines = [
        f"Machine: {cpu_model()}, {os.cpu_count()} cores. Object: {size // MiB} MiB, "
        f"{len(runs)} run(s), a fresh devnet each (blocks every 500 ms, 32 MiB segments, 4+8).",
        "",
        "| run | upload MB/s | upload s | spool+plan ms | declare ms | "
        + " | ".join(f"CPU s {k}" for k in kinds)
        + " | download MB/s |",
        "|---" * (6 + len(kinds)) + "|",
    ]
    for index, run in enumerate(runs, 1):
        cpu = " | ".join(f"{run['cpu_s'].get(k, 0.0):.2f}" for k in kinds)
        lines.append(
            f"| {index} | {run['upload_mb_s']:.1f} | {run['upload_s']:.2f} | "
            f"{run.get('spool_ms', 0):.0f} | {run.get('declare_ms', 0):.0f} | {cpu} | "
            f"{run['download_mb_s']:.1f} |"
        )
    verdict = "met" if median >= TARGET_MB_S else "not met"
    lines += ["", f"Median upload: {median:.1f} MB/s (target {TARGET_MB_S:g} MB/s: {verdict})."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs, each on a fresh network (3)")
    parser.add_argument("--mib", type=int, default=256, help="object size in MiB (256)")
    parser.add_argument("--json", metavar="OUT", help="also write the raw results to OUT")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.mib < 1:
        parser.error("--runs and --mib must be at least 1")
    size = args.mib * MiB
    runs = []
    with tempfile.TemporaryDirectory(prefix="deoss-bench-") as workdir:
        for index in range(args.runs):
            log(f"run {index + 1}/{args.runs}: {args.mib} MiB on a fresh network")
            runs.append(one_run(size, Path(workdir)))
            log(f"  upload {runs[-1]['upload_mb_s']:.1f} MB/s")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    print(render(runs, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
