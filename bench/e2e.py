"""Benchmark of the whole network on one machine: uploads, downloads, small objects, storage
overhead and tagging lag, through the gateway's REST API.

The script starts its own local network (``deoss.devnet.up``: a chain node, 2 schedulers,
12 miners and a gateway as real processes, free ports, a temporary home, 32 MiB segments,
blocks every 500 ms unless ``--block-ms``) and always stops it at the end. Every request is
signed as the dev user (key 0, who has space and the bucket "default").

What is measured (MB = 10^6 bytes; times with ``time.perf_counter`` on the client):

1. Large objects (64 and 256 MiB of random bytes, a different content each run so nothing is
   deduplicated; ``--quick``: 16 and 64 MiB): upload MB/s to SUCCESS (one PUT streamed from a
   file on disk, its SHA-256 computed beforehand, answered 201 once the deal is SUCCESS) and
   download MB/s (one GET of the whole object, streamed, hashed and checked, discarded); the
   median of 3 runs (``--quick``: 1). Unless ``--no-settle``, each upload starts once every
   earlier file is tagged, and the downloads start once the last upload is tagged: tagging
   (PoDR², about 2 MB/s of fragments on 2 cores) otherwise keeps the CPU busy for minutes and
   the figures measure the backlog. The tagging time of each upload is reported as well.
2. Downloads of the same objects with 8 of the 12 miners SIGKILLed (done last).
3. 1 KiB objects: the latency of one PUT to SUCCESS (20 in a row: median and p90), then
   operations per second with 8 concurrent uploaders over 100 objects (``--quick``: 30).
4. Bytes stored over all miners per 1 KiB object: the sizes of the files under each miner's
   fragment store (temp/, perm/, tags/), both apparent (st_size) and allocated on disk
   (st_blocks × 512), before the uploads of part 3 and after all of them are tagged, divided
   by the number of objects. The store's SQLite index is reported apart and not counted.
5. Tagging lag: for one 64 MiB object (``--quick``: 16 MiB) uploaded on a quiet network, the
   time from the PUT's SUCCESS answer to the file record showing ``tagged`` on chain (polled
   every 100 ms; the chain only changes once per block).

Order of the run: 3 and 4, then 5, then 1, then 2 (it kills miners).

Run from the repository root:

    .venv/bin/python bench/e2e.py              # full mode (about an hour, mostly tagging waits)
    .venv/bin/python bench/e2e.py --quick      # smaller objects, one run each (a few minutes)
    .venv/bin/python bench/e2e.py --json out.json --block-ms 500 --keep

The Markdown report goes to stdout, progress to stderr. The client, the chain and all the
services share the machine, so every figure is a lower bound for a real deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from deoss.chain.modules.files import FileRecord
from deoss.client.chain import ChainClient
from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.devnet import DEV_BUCKET, Devnet, DevnetSpec, devnet_params, up
from deoss.keyfile import read_key_file
from machine import cpu_model  # bench/machine.py, beside this script

Result = dict[str, Any]

KiB = 1024
MiB = 1024 * 1024
MB = 1e6
CHUNK = MiB
K, M = 4, 8  # the devnet's erasure code (LayoutParams defaults)
KILLED_MINERS = 8
TIMEOUT = httpx.Timeout(60.0, read=1800.0)
TAG_POLL_S = 0.1


@dataclass(frozen=True)
class Settings:
    quick: bool
    block_ms: int
    settle: bool
    settle_timeout_s: float
    large_sizes: tuple[int, ...] = (64 * MiB, 256 * MiB)
    runs: int = 3
    small_size: int = KiB
    small_latency_count: int = 20
    small_concurrent_count: int = 100
    concurrency: int = 8
    tag_lag_size: int = 64 * MiB

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        common = {
            "quick": args.quick,
            "block_ms": args.block_ms,
            "settle": not args.no_settle,
            "settle_timeout_s": args.settle_timeout,
        }
        if args.quick:
            return cls(
                **common,
                large_sizes=(16 * MiB, 64 * MiB),
                runs=1,
                small_concurrent_count=30,
                tag_lag_size=16 * MiB,
            )
        return cls(**common)


# --- helpers -----------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[e2e] {message}", file=sys.stderr, flush=True)


def rate(nbytes: int, seconds: float) -> float:
    return nbytes / MB / seconds


def p90(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def size_label(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def write_random_file(path: Path, size: int) -> str:
    """A file of ``size`` random bytes; returns its SHA-256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
        out.flush()
        os.fsync(out.fileno())  # else its writeback competes with the upload measured
    return digest.hexdigest()


def object_path(name: str) -> str:
    return f"/objects/{DEV_BUCKET}/{name}"


# --- machine -----------------------------------------------------------------------------


def machine_info(settings: Settings) -> Result:
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "mode": "quick" if settings.quick else "full",
        "loadavg_at_start": load,
    }


# --- miner disk usage ----------------------------------------------------------------------


def miner_disk(spec: DevnetSpec) -> Result:
    """Files, apparent bytes and allocated bytes per store area, summed over every miner."""
    areas = ("temp", "perm", "tags", "index", "wal")
    totals: Result = {area: {"files": 0, "bytes": 0, "allocated": 0} for area in areas}
    for i in range(spec.miners):
        root = spec.home / f"miner-{i}" / "data" / "fragments"
        paths: list[tuple[str, Path]] = [
            (area, path) for area in areas[:3] for path in (root / area).glob("*/*")
        ]
        paths += [("index", path) for path in root.glob("index.sqlite")]
        paths += [("wal", path) for path in root.glob("index.sqlite-*")]
        for area, path in paths:
            try:
                stat = path.stat()
            except FileNotFoundError:  # moved from temp/ to perm/ meanwhile
                continue
            totals[area]["files"] += 1
            totals[area]["bytes"] += stat.st_size
            totals[area]["allocated"] += stat.st_blocks * 512
    return totals


# --- the client side -------------------------------------------------------------------------


class Bench:
    """The dev user's signed HTTP client of the gateway, and a chain client."""

    def __init__(self, spec: DevnetSpec, net: Devnet, workdir: Path) -> None:
        self.spec = spec
        self.net = net
        self.workdir = workdir
        self.user = read_key_file(spec.key_path(0))
        self.http = httpx.AsyncClient(
            base_url=net.gateway_url, auth=SigningAuth(self.user), timeout=TIMEOUT
        )
        self.chain = ChainClient(net.chain_url)
        self.counter = 0

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.chain.aclose()

    def fresh_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}-{os.urandom(4).hex()}"

    @staticmethod
    def _check_upload(response: httpx.Response, size: int) -> Result:
        if response.status_code != 201:
            raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
        body: Result = response.json()
        if body.get("state") != "SUCCESS" or body.get("size") != size:
            raise RuntimeError(f"unexpected upload answer: {body}")
        if body.get("deduplicated"):
            raise RuntimeError(f"upload was deduplicated (not a fresh content): {body}")
        return body

    async def put_file(self, name: str, path: Path, sha256: str, size: int) -> tuple[Result, float]:
        """Upload a file streamed from disk; (answer, seconds until the 201)."""

        async def body() -> AsyncIterator[bytes]:
            with open(path, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        headers = {HEADER_BODY: sha256, "content-length": str(size)}
        started = time.perf_counter()
        response = await self.http.put(object_path(name), content=body(), headers=headers)
        elapsed = time.perf_counter() - started
        return self._check_upload(response, size), elapsed

    async def put_bytes(self, name: str, data: bytes) -> tuple[Result, float]:
        started = time.perf_counter()
        response = await self.http.put(object_path(name), content=data)
        elapsed = time.perf_counter() - started
        return self._check_upload(response, len(data)), elapsed

    async def get_object(self, name: str, sha256: str, size: int) -> float:
        """Download a whole object, streamed and hashed; seconds until the last byte."""
        digest = hashlib.sha256()
        received = 0
        started = time.perf_counter()
        async with self.http.stream("GET", object_path(name)) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(
                    f"download answered {response.status_code}: {response.text[:500]}"
                )
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
                received += len(chunk)
        elapsed = time.perf_counter() - started
        if received != size or digest.hexdigest() != sha256:
            raise RuntimeError(
                f"download of {name}: got {received} of {size} bytes, "
                f"sha256 {'matches' if digest.hexdigest() == sha256 else 'DIFFERS'}"
            )
        return elapsed

    async def file_record(self, fid: str) -> FileRecord:
        return await self.chain.reads.file.required(fid)

    async def wait_tagged(
        self, fids: Sequence[str], timeout_s: float, poll_s: float = TAG_POLL_S
    ) -> dict[str, float]:
        """perf_counter time at which each fid was first seen tagged; missing on timeout."""
        seen: dict[str, float] = {}
        pending = list(dict.fromkeys(fids))
        deadline = time.perf_counter() + timeout_s
        while pending and time.perf_counter() < deadline:
            still = []
            for fid in pending:
                if (await self.file_record(fid)).tagged:
                    seen[fid] = time.perf_counter()
                else:
                    still.append(fid)
            pending = still
            if pending:
                await asyncio.sleep(poll_s)
        return seen


# --- 3 and 4. small objects ------------------------------------------------------------------


async def bench_small(bench: Bench, settings: Settings) -> tuple[Result, Result]:
    size = settings.small_size
    before = miner_disk(bench.spec)
    fids: list[str] = []

    log(f"1 KiB: {settings.small_latency_count} PUTs to SUCCESS one after the other")
    latencies = []
    for _ in range(settings.small_latency_count):
        answer, seconds = await bench.put_bytes(bench.fresh_name("small"), os.urandom(size))
        latencies.append(seconds)
        fids.append(answer["fid"])

    count, workers = settings.small_concurrent_count, settings.concurrency
    log(f"1 KiB: {count} PUTs by {workers} concurrent uploaders")
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for _ in range(count):
        queue.put_nowait(os.urandom(size))
    loaded: list[float] = []
    spans: list[tuple[float, float]] = []
    deal_ids: list[int] = []

    async def uploader() -> None:
        while not queue.empty():
            data = queue.get_nowait()
            begun = time.perf_counter() - started
            answer, seconds = await bench.put_bytes(bench.fresh_name("small"), data)
            loaded.append(seconds)
            spans.append((begun, begun + seconds))
            fids.append(answer["fid"])
            deal_ids.append(answer["deal_id"])

    started = time.perf_counter()
    await asyncio.gather(*(uploader() for _ in range(workers)))
    elapsed = time.perf_counter() - started
    # The block each deal was declared in: how many uploads share a block.
    declared = []
    for deal_id in deal_ids:
        response = await bench.http.get(f"/deals/{deal_id}")
        declared.append(response.json()["created_at"] if response.status_code == 200 else None)
    budget_ms = 2 * settings.block_ms + 50
    small = {
        "object_bytes": size,
        "latency_count": len(latencies),
        "latency_s": latencies,
        "latency_median_ms": statistics.median(latencies) * 1e3,
        "latency_p90_ms": p90(latencies) * 1e3,
        "budget_ms": budget_ms,
        "concurrent_count": count,
        "concurrency": workers,
        "concurrent_elapsed_s": elapsed,
        "ops_per_s": count / elapsed,
        "concurrent_latency_median_ms": statistics.median(loaded) * 1e3,
        "concurrent_latency_p90_ms": p90(loaded) * 1e3,
        "concurrent_spans_s": sorted(spans),
        "concurrent_declare_heights": declared,
        "concurrent_declare_blocks": len(set(declared)),
    }

    log(f"1 KiB: waiting until the {len(fids)} small files are tagged")
    started = time.perf_counter()
    tagged = await bench.wait_tagged(fids, settings.settle_timeout_s, poll_s=1.0)
    waited = time.perf_counter() - started
    # Moves from temp/ to perm/ follow deal.success block by block: give them a moment.
    deadline = time.monotonic() + 30
    after = miner_disk(bench.spec)
    while after["temp"]["files"] and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        after = miner_disk(bench.spec)
    objects = len(fids)

    def per_object(area: str, field: str) -> float:
        return float(after[area][field] - before[area][field]) / objects

    stored: Result = {
        "objects": objects,
        "all_tagged": len(tagged) == len(set(fids)),
        "tagged": len(tagged),
        "tag_wait_s": waited,
        "before": before,
        "after": after,
        "per_object": {
            area: {
                "files": per_object(area, "files"),
                "bytes": per_object(area, "bytes"),
                "allocated": per_object(area, "allocated"),
            }
            for area in ("temp", "perm", "tags", "index", "wal")
        },
    }
    stored["fragments_and_tags_bytes"] = sum(
        stored["per_object"][a]["bytes"] for a in ("temp", "perm", "tags")
    )
    stored["fragments_and_tags_allocated"] = sum(
        stored["per_object"][a]["allocated"] for a in ("temp", "perm", "tags")
    )
    stored["budget_bytes"] = 100 * KiB
    return small, stored


# --- 5. tagging lag ------------------------------------------------------------------------


async def bench_tag_lag(bench: Bench, settings: Settings) -> Result:
    size = settings.tag_lag_size
    path = bench.workdir / "tag-lag.bin"
    sha256 = write_random_file(path, size)
    log(f"tagging lag: upload {size_label(size)}")
    answer, upload_s = await bench.put_file(bench.fresh_name("lag"), path, sha256, size)
    succeeded = time.perf_counter()
    path.unlink()
    log("tagging lag: waiting for the file to show tagged on chain")
    seen = await bench.wait_tagged([answer["fid"]], settings.settle_timeout_s)
    lag = seen[answer["fid"]] - succeeded if answer["fid"] in seen else None
    return {
        "object_bytes": size,
        "fragment_bytes_tagged": size * (K + M) // K,
        "upload_s": upload_s,
        "lag_s": lag,
        "timeout_s": settings.settle_timeout_s,
        "poll_s": TAG_POLL_S,
    }


# --- 1. large objects ------------------------------------------------------------------------


@dataclass
class Stored:
    name: str
    fid: str
    sha256: str
    size: int


async def settle(bench: Bench, fids: Sequence[str], settings: Settings) -> tuple[float, int]:
    """Wait until every fid is tagged (or the timeout); (seconds waited, fids still untagged)."""
    if not settings.settle or not fids:
        return 0.0, 0
    started = time.perf_counter()
    seen = await bench.wait_tagged(fids, settings.settle_timeout_s)
    untagged = len(set(fids)) - len(seen)
    if untagged:
        log(f"  settle: {untagged} file(s) still untagged after the timeout")
    return time.perf_counter() - started, untagged


async def bench_large(bench: Bench, settings: Settings) -> tuple[list[Result], list[Stored]]:
    results: list[Result] = []
    stored: list[Stored] = []
    fids: list[str] = []
    for size in settings.large_sizes:
        uploads = []
        for run in range(settings.runs):
            path = bench.workdir / "upload.bin"
            sha256 = write_random_file(path, size)
            settle_s, untagged = await settle(bench, fids, settings)
            log(f"upload {size_label(size)} run {run + 1}/{settings.runs}")
            name = bench.fresh_name(f"large-{size // MiB}m")
            answer, seconds = await bench.put_file(name, path, sha256, size)
            succeeded = time.perf_counter()
            path.unlink()
            fids.append(answer["fid"])
            stored.append(Stored(name, answer["fid"], sha256, size))
            tag_lag = None
            if settings.settle:
                seen = await bench.wait_tagged([answer["fid"]], settings.settle_timeout_s)
                if answer["fid"] in seen:
                    tag_lag = seen[answer["fid"]] - succeeded
            log(f"  {rate(size, seconds):.1f} MB/s ({seconds:.2f} s), tagging lag {tag_lag}")
            uploads.append(
                {
                    "seconds": seconds,
                    "mb_s": rate(size, seconds),
                    "settle_s": settle_s,
                    "untagged_at_start": untagged,
                    "tag_lag_s": tag_lag,
                }
            )
        results.append({"object_bytes": size, "uploads": uploads})

    _, untagged = await settle(bench, fids, settings)
    for result in results:
        result["untagged_before_downloads"] = untagged
        size = result["object_bytes"]
        downloads = []
        for item in [s for s in stored if s.size == size]:
            log(f"download {size_label(size)} ({item.name})")
            seconds = await bench.get_object(item.name, item.sha256, size)
            log(f"  {rate(size, seconds):.1f} MB/s ({seconds:.2f} s)")
            downloads.append({"seconds": seconds, "mb_s": rate(size, seconds)})
        result["downloads"] = downloads
        result["upload_median_mb_s"] = statistics.median(u["mb_s"] for u in result["uploads"])
        result["download_median_mb_s"] = statistics.median(d["mb_s"] for d in downloads)
    return results, stored


# --- 2. downloads with 8 of 12 miners down --------------------------------------------------


async def bench_degraded(bench: Bench, stored: list[Stored], settings: Settings) -> list[Result]:
    spec = bench.spec
    miners = [p for p in bench.net.processes if p.name.startswith("miner-")]
    killed = miners[:KILLED_MINERS]
    first_miner_key = 2 + spec.schedulers
    killed_keys = {
        read_key_file(spec.key_path(first_miner_key + int(p.name.split("-")[1]))).public_key
        for p in killed
    }
    log(f"killing {', '.join(p.name for p in killed)} (SIGKILL)")
    for process in killed:
        if process.popen is not None and process.popen.poll() is None:
            os.kill(process.popen.pid, signal.SIGKILL)
            process.popen.wait()

    results = []
    for size in settings.large_sizes:
        downloads = []
        for item in [s for s in stored if s.size == size]:
            record = await bench.file_record(item.fid)
            survivors = [
                [j for j, holder in enumerate(holders) if holder not in killed_keys]
                for holders in record.holders
            ]
            decoded = sum(1 for alive in survivors if sorted(alive)[:K] != list(range(K)))
            log(f"download {size_label(size)} with {KILLED_MINERS} miners down ({item.name})")
            seconds = await bench.get_object(item.name, item.sha256, size)
            log(f"  {rate(size, seconds):.1f} MB/s ({seconds:.2f} s)")
            downloads.append(
                {
                    "seconds": seconds,
                    "mb_s": rate(size, seconds),
                    "segments": len(survivors),
                    "segments_needing_decode": decoded,
                    "min_fragments_left": min(len(alive) for alive in survivors),
                }
            )
        results.append(
            {
                "object_bytes": size,
                "downloads": downloads,
                "download_median_mb_s": statistics.median(d["mb_s"] for d in downloads),
            }
        )
    return results


# --- logs ------------------------------------------------------------------------------------


PROBLEM_WORDS = ("traceback", "error", "exception", "warning", "critical", "fail", "timeout")


def scan_logs(home: Path, limit: int = 8) -> Result:
    """Lines of the services' logs that look like problems, per log file (first ``limit``)."""
    found: Result = {}
    for path in sorted((home / "logs").glob("*.log")):
        lines = [
            line.rstrip()
            for line in path.read_text(errors="replace").splitlines()
            if any(word in line.lower() for word in PROBLEM_WORDS)
        ]
        if lines:
            found[path.name] = {"count": len(lines), "first": [s[:400] for s in lines[:limit]]}
    return found


# --- report ------------------------------------------------------------------------------------


def joined(values: Sequence[float | None], fmt: str) -> str:
    return ", ".join("-" if v is None else fmt.format(v) for v in values)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def render(results: Result, settings: Settings) -> str:
    machine = results["machine"]
    block_ms = settings.block_ms
    largest = settings.large_sizes[-1]
    quick_note = " (quick mode: target is for 256 MiB)" if largest != 256 * MiB else ""
    small, stored, lag = results["small"], results["stored"], results["tag_lag"]
    rows: list[list[str]] = []

    for r in results.get("large", []):
        size = r["object_bytes"]
        is_largest = size == largest
        rows.append(
            [
                f"upload to SUCCESS, {size_label(size)}",
                f"{r['upload_median_mb_s']:.1f} MB/s",
                "≥ 50 MB/s (aim 100)" + (quick_note if is_largest else " (256 MiB)"),
                verdict(r["upload_median_mb_s"] >= 50) if is_largest else "",
            ]
        )
    for r in results.get("large", []):
        rows.append(
            [
                f"download, all miners up, {size_label(r['object_bytes'])}",
                f"{r['download_median_mb_s']:.1f} MB/s",
                "≥ 160 MB/s",
                verdict(r["download_median_mb_s"] >= 160),
            ]
        )
    for r in results.get("degraded", []):
        rows.append(
            [
                f"download, {KILLED_MINERS} of 12 miners down, {size_label(r['object_bytes'])}",
                f"{r['download_median_mb_s']:.1f} MB/s",
                "≥ 100 MB/s",
                verdict(r["download_median_mb_s"] >= 100),
            ]
        )
    budget = small["budget_ms"]
    rows += [
        [
            f"1 KiB put to SUCCESS, median of {small['latency_count']}",
            f"{small['latency_median_ms']:.0f} ms",
            f"≤ 2 × {block_ms} + 50 = {budget} ms",
            verdict(small["latency_median_ms"] <= budget),
        ],
        [
            f"1 KiB put to SUCCESS, p90 of {small['latency_count']}",
            f"{small['latency_p90_ms']:.0f} ms",
            f"≤ {budget} ms",
            verdict(small["latency_p90_ms"] <= budget),
        ],
        [
            f"1 KiB puts, {small['concurrency']} concurrent uploaders, "
            f"{small['concurrent_count']} objects",
            f"{small['ops_per_s']:.1f} ops/s (median latency "
            f"{small['concurrent_latency_median_ms']:.0f} ms, p90 "
            f"{small['concurrent_latency_p90_ms']:.0f} ms; declared in "
            f"{small['concurrent_declare_blocks']} distinct blocks)",
            "none",
            "",
        ],
        [
            f"1 KiB object stored over all miners, allocated on disk ({stored['objects']} objects)",
            f"{stored['fragments_and_tags_allocated'] / KiB:.1f} KiB",
            "≤ 100 KiB",
            verdict(stored["fragments_and_tags_allocated"] <= stored["budget_bytes"]),
        ],
        [
            "1 KiB object stored over all miners, apparent size (st_size)",
            f"{stored['fragments_and_tags_bytes'] / KiB:.2f} KiB",
            "≤ 100 KiB",
            verdict(stored["fragments_and_tags_bytes"] <= stored["budget_bytes"]),
        ],
        [
            f"tagging lag after SUCCESS, {size_label(lag['object_bytes'])}",
            "timed out" if lag["lag_s"] is None else f"{lag['lag_s']:.1f} s",
            f"none (tag deadline {results['network']['tag_timeout_s']:.0f} s)",
            "",
        ],
    ]

    lines = [
        "# DeOSS end-to-end benchmark (local network)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"load average at start {joined(machine['loadavg_at_start'], '{:.2f}')}. "
        f"Mode: {machine['mode']}.",
        "",
        f"Network: 1 chain node (blocks every {block_ms} ms), {results['network']['schedulers']} "
        f"schedulers, {results['network']['miners']} miners, 1 gateway, "
        f"{results['network']['segment_bytes'] // MiB} MiB segments, erasure code {K}+{M}; "
        "everything on this machine. MB = 10^6 bytes. Large objects: median of "
        f"{settings.runs} run(s), a different random content each.",
        "",
        "| what | measured | DESIGN §8 target | |",
        "|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "## Details",
        "",
        "| object | upload MB/s (runs) | upload s | tagging lag s | download MB/s (runs) |"
        f" {KILLED_MINERS} down MB/s (runs) | segments decoded with {KILLED_MINERS} down |",
        "|---|---|---|---|---|---|---|",
    ]
    degraded = {r["object_bytes"]: r for r in results.get("degraded", [])}
    for r in results.get("large", []):
        down = degraded.get(r["object_bytes"], {"downloads": []})["downloads"]
        lags = [u["tag_lag_s"] for u in r["uploads"]]
        lines.append(
            "| "
            + " | ".join(
                [
                    size_label(r["object_bytes"]),
                    joined([u["mb_s"] for u in r["uploads"]], "{:.1f}"),
                    joined([u["seconds"] for u in r["uploads"]], "{:.2f}"),
                    joined(lags, "{:.1f}"),
                    joined([d["mb_s"] for d in r["downloads"]], "{:.1f}"),
                    joined([d["mb_s"] for d in down], "{:.1f}"),
                    ", ".join(f"{d['segments_needing_decode']}/{d['segments']}" for d in down),
                ]
            )
            + " |"
        )
    per = stored["per_object"]
    lines += [
        "",
        f"Per 1 KiB object over all miners ({stored['objects']} objects, "
        f"all tagged: {stored['all_tagged']}): "
        + ", ".join(
            f"{area} {per[area]['files']:.1f} files / {per[area]['bytes']:.0f} B apparent / "
            f"{per[area]['allocated'] / KiB:.1f} KiB allocated"
            for area in ("temp", "perm", "tags", "index", "wal")
        )
        + ". The store's index (index.sqlite, and its -wal/-shm files, which SQLite grows up to "
        "its checkpoint size whatever is stored) is not counted in the figure above.",
        "",
        "## Notes",
        "",
        *(f"- {note}" for note in results["notes"]),
    ]
    problems = results.get("log_problems", {})
    if problems:
        lines += ["", "## Log lines that look like problems", ""]
        for name, entry in problems.items():
            lines.append(f"- {name}: {entry['count']} line(s); first ones:")
            lines += [f"    {line}" for line in entry["first"]]
    lines += ["", f"Total benchmark time: {results['total_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def notes(results: Result, settings: Settings) -> list[str]:
    out = [
        "The client, the chain node, both schedulers, the 12 miners and the gateway share "
        f"{results['machine']['cores']} cores; the machine may also be running other work.",
        "Upload time runs from the first byte sent to the 201 (deal SUCCESS); it includes the "
        "gateway's spooling and hashing, the chain blocks for declare/assign/report, the "
        "scheduler's erasure coding and the miners' writes. Download time runs to the last byte "
        "(SHA-256 checked on the client).",
        "1 KiB budget: two block intervals + 50 ms = "
        f"{2 * settings.block_ms + 50} ms at {settings.block_ms} ms blocks.",
        "Stored bytes: 'allocated' counts whole filesystem blocks (each fragment and each tag "
        "file takes at least one block), 'apparent' counts the bytes written.",
    ]
    if settings.settle:
        out.append(
            "Uploads started on a quiet network: each waited until every earlier file was "
            "tagged (settle times in the JSON); downloads started once everything was tagged."
        )
    else:
        out.append(
            "--no-settle: uploads and downloads ran while earlier uploads were being tagged."
        )
    deadline = results["network"]["tag_timeout_s"]
    lags = [u["tag_lag_s"] for r in results.get("large", []) for u in r["uploads"]]
    lags.append(results["tag_lag"]["lag_s"])
    late = [x for x in lags if x is not None and x > deadline]
    if late or (settings.settle and None in lags):
        out.append(
            f"Tagging: {len(late)} file(s) tagged after the {deadline:.0f} s tag deadline "
            f"(tag_timeout_blocks; the chain then asks another scheduler) and "
            f"{lags.count(None)} not tagged within the settle timeout."
        )
    untagged = [u["untagged_at_start"] for r in results.get("large", []) for u in r["uploads"]]
    untagged += [r["untagged_before_downloads"] for r in results.get("large", [])]
    if any(untagged):
        out.append(
            "Some uploads or downloads started while earlier files were still untagged "
            "(settle timeout): those figures include background tagging load."
        )
    lag = results["tag_lag"]
    out.append(
        f"Tagging lag: polled every {lag['poll_s'] * 1e3:.0f} ms on the chain; the scheduler "
        f"tags {lag['fragment_bytes_tagged'] // MiB} MiB of fragments "
        f"({K}+{M} code) for a {size_label(lag['object_bytes'])} object."
    )
    for r in results.get("degraded", []):
        for d in r["downloads"]:
            if d["min_fragments_left"] < K:
                out.append(
                    f"A {size_label(r['object_bytes'])} object had a segment with only "
                    f"{d['min_fragments_left']} fragments on live miners."
                )
    if results.get("error"):
        out.append(f"The run stopped early: {results['error']}")
    return out


# --- main --------------------------------------------------------------------------------------


async def run_parts(bench: Bench, settings: Settings, results: Result) -> None:
    try:
        results["small"], results["stored"] = await bench_small(bench, settings)
        results["tag_lag"] = await bench_tag_lag(bench, settings)
        results["large"], stored = await bench_large(bench, settings)
        results["degraded"] = await bench_degraded(bench, stored, settings)
    finally:
        await bench.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller objects, one run each")
    parser.add_argument("--json", metavar="OUT", help="also write the raw results to OUT")
    parser.add_argument("--block-ms", type=int, default=500, help="block interval (500)")
    parser.add_argument(
        "--no-settle",
        action="store_true",
        help="do not wait for earlier uploads to be tagged before each measurement",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="longest wait for tagging, per wait (1800 s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the network's home (logs)")
    args = parser.parse_args(argv)
    settings = Settings.from_args(args)

    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="deoss-e2e-"))
    # 12 miners (not the devnet's 16): "8 of 12 down" and the figures measured so far
    spec = DevnetSpec(
        home=home, chain_port=0, gateway_port=0, block_ms=settings.block_ms, miners=12
    )
    results: Result = {
        "machine": machine_info(settings),
        "settings": asdict(settings),
        "network": {
            "schedulers": spec.schedulers,
            "miners": spec.miners,
            "block_ms": spec.block_ms,
            "segment_bytes": spec.segment_size,
            "tag_timeout_s": devnet_params(spec).tag_timeout_blocks * spec.block_ms / 1e3,
        },
    }
    failed: BaseException | None = None
    try:
        log(f"starting the network in {home}")
        net = up(spec, detach=False)
        try:
            log(f"network up: chain {net.chain_url}, gateway {net.gateway_url}")
            workdir = home / "bench-files"
            workdir.mkdir()
            asyncio.run(run_parts(Bench(spec, net, workdir), settings, results))
        except BaseException as exc:
            failed = exc
            results["error"] = repr(exc)
            raise
        finally:
            log("stopping the network")
            net.stop()
            results["log_problems"] = scan_logs(home)
    finally:
        if args.keep or failed is not None:
            log(f"kept the network's home (logs under {home / 'logs'})")
        else:
            shutil.rmtree(home, ignore_errors=True)
        results["total_s"] = time.perf_counter() - started
        if failed is None:
            results["notes"] = notes(results, settings)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump(results, out, indent=2, default=str)
                out.write("\n")
        if failed is not None and results.get("log_problems"):
            log("log lines that look like problems:")
            for name, entry in results["log_problems"].items():
                for line in entry["first"]:
                    log(f"  {name}: {line}")
    print(render(results, settings), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
