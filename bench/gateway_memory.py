"""Benchmark of the gateway's memory under concurrent uploads: its peak resident size (RSS)
while many large chunked uploads arrive at once, with a good and with a bad SHA-256.

One fresh local network (``deoss.devnet.up``: chain, 2 schedulers, 12 miners, gateway as real
processes, temporary home, blocks every 500 ms, 32 MiB segments). Two rounds, each started
at once (``asyncio.gather``), each upload chunked (no Content-Length, so the gateway cannot
refuse it before reading) and made of distinct bytes (no deduplication between them):

1. ``--bad`` uploads of ``--mib`` MiB signed with a SHA-256 that is not their body's: each is
   spooled and planned in full, then refused with 401;
2. ``--uploads`` uploads of ``--mib`` MiB with their right SHA-256, each to SUCCESS (201).

Reported per round: the gateway's resident size before it, its peak during it (the kernel's
high-water mark, ``VmHWM``, reset before the round through ``/proc/PID/clear_refs``; no
sampling), and the answers. The bench raises the gateway's per-user upload limit to
``--uploads`` (``DEOSS_GATEWAY_MAX_UPLOADS_PER_USER``) since the devnet has one user. Speed
is not the point here (and not reliable on a shared machine): memory is.

    .venv/bin/python bench/gateway_memory.py                  # 4 bad, 16 good, 100 MiB each
    .venv/bin/python bench/gateway_memory.py --uploads 4 --bad 2 --mib 64
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.devnet import DEV_BUCKET, Devnet, DevnetSpec, up
from deoss.keyfile import read_key_file
from machine import cpu_model  # bench/machine.py, beside this script

MiB = 1024 * 1024
CHUNK = MiB
BASE = os.urandom(4 * MiB)  # random bytes every body is cut from (then made distinct)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chunks(upload: int, size: int) -> Iterator[bytes]:
    """The body of upload ``upload``: random bytes, each MiB stamped with (upload, position)
    so that no two uploads, segments or fragments are alike."""
    for index, at in enumerate(range(0, size, CHUNK)):
        offset = (index * CHUNK) % len(BASE)
        piece = BASE[offset : offset + min(CHUNK, size - at)]
        stamp = f"{upload:08d}:{index:012d}".encode()
        yield stamp[: len(piece)] + piece[len(stamp) :]


def sha256_of(upload: int, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in chunks(upload, size):
        digest.update(chunk)
    return digest.hexdigest()


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS to the current


async def upload(http: httpx.AsyncClient, index: int, size: int, signed_sha256: str) -> int:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks(index, size):
            yield chunk

    target = f"/objects/{DEV_BUCKET}/memory-{os.urandom(4).hex()}-{index}"
    try:
        response = await http.put(target, content=body(), headers={HEADER_BODY: signed_sha256})
    except httpx.HTTPError as exc:
        log(f"  upload {index}: {type(exc).__name__}: {exc}")
        return 0
    if response.status_code not in (201, 401):
        log(f"  upload {index}: {response.status_code} {response.text[:600]}")
    return response.status_code


async def one_round(
    net: Devnet, spec: DevnetSpec, pid: int, first: int, count: int, size: int, bad: bool
) -> dict[str, Any]:
    user = read_key_file(spec.key_path(0))
    wrong = hashlib.sha256(b"not the body").hexdigest()
    signed = [wrong if bad else sha256_of(first + i, size) for i in range(count)]
    timeout = httpx.Timeout(60.0, read=1800.0)
    before = memory_kib(pid)["VmRSS"]
    reset_peak(pid)
    started = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=net.gateway_url, auth=SigningAuth(user), timeout=timeout
    ) as http:
        statuses = await asyncio.gather(
            *(upload(http, first + i, size, signed[i]) for i in range(count))
        )
    elapsed = time.perf_counter() - started
    after = memory_kib(pid)
    return {
        "round": f"{count} x {size // MiB} MiB, {'bad' if bad else 'right'} SHA-256",
        "rss_before_mib": before / 1024,
        "rss_peak_mib": after["VmHWM"] / 1024,
        "rss_after_mib": after["VmRSS"] / 1024,
        "seconds": elapsed,
        "answers": dict(sorted(collections.Counter(statuses).items())),
    }


def run(uploads: int, bad: int, size: int) -> list[dict[str, Any]]:
    os.environ["DEOSS_GATEWAY_MAX_UPLOADS_PER_USER"] = str(max(uploads, bad, 1))
    home = Path(tempfile.mkdtemp(prefix="deoss-memory-"))
    spec = DevnetSpec(home=home, chain_port=0, gateway_port=0)
    net = up(spec, detach=False)
    try:
        time.sleep(2)  # let registration traffic settle
        popen = net.process("gateway").popen
        if popen is None:
            raise RuntimeError("the gateway did not start")
        rounds = []
        if bad:
            log(f"round 1: {bad} uploads of {size // MiB} MiB with a bad SHA-256")
            rounds.append(asyncio.run(one_round(net, spec, popen.pid, 0, bad, size, True)))
        if uploads:
            log(f"round 2: {uploads} uploads of {size // MiB} MiB")
            rounds.append(asyncio.run(one_round(net, spec, popen.pid, bad, uploads, size, False)))
        return rounds
    finally:
        net.stop()
        shutil.rmtree(home, ignore_errors=True)


def render(rounds: list[dict[str, Any]]) -> str:
    lines = [
        f"Machine: {cpu_model()}, {os.cpu_count()} cores. One fresh devnet (blocks every 500 ms,"
        " 32 MiB segments, 4+8); chunked uploads started at once.",
        "",
        "| round | gateway RSS before MiB | peak MiB | after MiB | s | answers |",
        "|---|---|---|---|---|---|",
    ]
    for r in rounds:
        answers = ", ".join(f"{n} x {status}" for status, n in r["answers"].items())
        lines.append(
            f"| {r['round']} | {r['rss_before_mib']:.0f} | {r['rss_peak_mib']:.0f} | "
            f"{r['rss_after_mib']:.0f} | {r['seconds']:.1f} | {answers} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=16, help="good uploads at once (16)")
    parser.add_argument("--bad", type=int, default=4, help="bad-hash uploads at once (4)")
    parser.add_argument("--mib", type=int, default=100, help="size of each upload in MiB (100)")
    parser.add_argument("--json", metavar="OUT", help="also write the raw results to OUT")
    args = parser.parse_args(argv)
    if args.uploads < 0 or args.bad < 0 or args.mib < 1 or not (args.uploads or args.bad):
        parser.error("--uploads and --bad must be 0 or more (not both 0), --mib at least 1")
    rounds = run(args.uploads, args.bad, args.mib * MiB)
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=2))
    print(render(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
