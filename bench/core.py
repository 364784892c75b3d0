"""Benchmark of the DeOSS data path: erasure code, object layout, Merkle fid and PoDR².

Everything runs in-process on random data; nothing touches the disk or the network.

What is measured (MB = 10^6 bytes; every time is the median of several runs, taken with
``time.perf_counter``; correctness is checked outside the timed regions):

1. Erasure code 4+8 with 8 MiB fragments (32 MiB segments), for the ISA-L backend and the
   numpy backend: encode (MB/s of segment bytes), decode from the data fragments 0..3, decode
   from the parity fragments 4..7 only (all data lost), and the rebuild of one lost data
   fragment from four parity fragments (MB/s of rebuilt bytes). Both backends must produce the
   same fragments.
2. Object layout with ``DEFAULT_PARAMS``: ``plan_object`` (erasure code and every hash) and
   ``hash_object`` (the fid only) on a 128 MiB object.
3. Merkle ``compute_root`` over 1,000 and 100,000 hashes.
4. PoDR² for 256, 512 and 1024 sectors per block: the cost of the curve primitives, key
   generation, the proof of possession check, tagging throughput of one fragment on one core
   and on a thread pool of all cores, the tag storage overhead, and for several challenge
   sizes the prover and verifier times and the encoded proof size. "Verify cold" clears the
   verifier's caches (sector bases and decoded public key) before each run, as for a key seen
   for the first time.
5. Aggregation: the proof over 64 fragments and over 8 fragments has the same size.

Run from the repository root:

    .venv/bin/python bench/core.py                # full mode (about 2 minutes on 2 cores)
    .venv/bin/python bench/core.py --quick        # smaller inputs, under a minute
    .venv/bin/python bench/core.py --json out.json

The Markdown report goes to stdout, progress to stderr. By default the glibc allocator is tuned
as every DeOSS process does at startup (``deoss.runtime``); ``--no-tune`` measures without it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from typing import Any, TypeVar

import nacl.utils
from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from deoss.core import codec, podr2
from deoss.core.erasure import get_code
from deoss.core.layout import DEFAULT_PARAMS, hash_object, plan_object
from deoss.core.merkle import compute_root
from deoss.core.podr2 import (
    SECTOR_BYTES,
    TAG_BYTES,
    BlockReader,
    FragmentRef,
    PodrParams,
    TagKey,
    block_count,
    block_span,
    derive_challenge,
    prove,
    verify_proof,
)
from deoss.runtime import tune_allocator
from machine import cpu_model  # bench/machine.py, beside this script

T = TypeVar("T")
Result = dict[str, Any]

MiB = 1024 * 1024
MB = 1e6

K, M = 4, 8
BACKENDS = (("isa_l_rs_cauchy", 5), ("numpy", 1))  # (backend, timed runs): numpy is slow
WARMUP = 1  # untimed calls before the erasure and layout timings (allocator warm-up)
MERKLE_SIZES = ((1_000, 21), (100_000, 5))  # (leaves, runs)
SECTOR_COUNTS = (256, 512, 1024)
CHALLENGE_SIZES = ((16, 4), (32, 2), (64, 1), (48, 2), (96, 1), (128, 1))  # (F, c)
MULTIEXP_SIZES = (257, 513, 1025)
SET_FRAGMENTS = 128  # small fragments tagged once per s for the challenge benchmarks
SET_BLOCKS = 2  # blocks in each of them
AGGREGATION = (1024, 64, 1, (64, 8))  # s, F, c, fragments held


@dataclass(frozen=True)
class Settings:
    """Input sizes and repetition counts of one benchmark run."""

    quick: bool
    erasure_fragment_bytes: int = 8 * MiB
    object_bytes: int = 128 * MiB
    tag_fragment_bytes: int = 4 * MiB
    big_runs: int = 3
    fast_runs: int = 5

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(quick=True, object_bytes=32 * MiB, tag_fragment_bytes=1 * MiB)
        return cls(quick=False)


@dataclass(frozen=True)
class Tagged:
    """A fragment held in memory with its tags."""

    data: bytes
    tags: bytes


Store = Mapping[bytes, Tagged]


# --- helpers -----------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def require(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"correctness check failed: {what}")


def median_time(
    fn: Callable[[], T],
    runs: int,
    setup: Callable[[], None] | None = None,
    warmup: int = 0,
) -> tuple[float, T]:
    """Median wall time of ``runs`` calls of ``fn`` (seconds) and the last result.

    ``setup`` runs untimed before every call; ``warmup`` calls run first and are not timed.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times: list[float] = []
    for _ in range(runs):
        if setup is not None:
            setup()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def rate(nbytes: int, seconds: float) -> float:
    """Throughput in MB/s."""
    return nbytes / MB / seconds


def random_scalar() -> Scalar:
    return Scalar(int.from_bytes(os.urandom(64), "little") % podr2.ORDER)


def clear_verifier_caches() -> None:
    """Forget the sector bases and decoded public keys that podr2 caches per key."""
    podr2._bases.cache_clear()
    podr2._public_point.cache_clear()


# --- machine -----------------------------------------------------------------------------


def machine_info(settings: Settings) -> Result:
    versions = {}
    for package in ("pyeclib", "py_arkworks_bls12381", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "mode": "quick" if settings.quick else "full",
    }


# --- 1. erasure code -----------------------------------------------------------------------


def bench_erasure(backend: str, segment: bytes, runs: int) -> Result:
    """Encode, decode (data only, parity only) and rebuild one data fragment."""
    code = get_code(K, M, backend)
    encode_s, encoded = median_time(lambda: code.encode(segment), runs, warmup=WARMUP)
    fragments = [bytes(f) for f in encoded]
    require(b"".join(fragments[:K]) == segment, f"{backend}: encoding is not systematic")
    data_only = {i: fragments[i] for i in range(K)}
    parity_only = {i: fragments[i] for i in range(K, 2 * K)}

    decode_data_s, decoded = median_time(lambda: code.decode(data_only), runs, warmup=WARMUP)
    require(decoded == segment, f"{backend}: decode from data fragments")
    decode_parity_s, decoded = median_time(lambda: code.decode(parity_only), runs, warmup=WARMUP)
    require(decoded == segment, f"{backend}: decode from parity fragments")
    rebuild_s, rebuilt = median_time(lambda: code.reconstruct(parity_only, 0), runs, warmup=WARMUP)
    require(rebuilt == fragments[0], f"{backend}: rebuild of fragment 0")

    fragment_bytes = len(fragments[0])
    return {
        "backend": backend,
        "runs": runs,
        "fragment_bytes": fragment_bytes,
        "segment_bytes": len(segment),
        "encode_s": encode_s,
        "decode_data_s": decode_data_s,
        "decode_parity_s": decode_parity_s,
        "rebuild_s": rebuild_s,
        "encode_mb_s": rate(len(segment), encode_s),
        "decode_data_mb_s": rate(len(segment), decode_data_s),
        "decode_parity_mb_s": rate(len(segment), decode_parity_s),
        "rebuild_mb_s": rate(fragment_bytes, rebuild_s),
        "fragments_sha256": hashlib.sha256(b"".join(fragments)).hexdigest(),
    }


def bench_erasure_all(settings: Settings) -> list[Result]:
    segment = os.urandom(K * settings.erasure_fragment_bytes)
    results = []
    for backend, runs in BACKENDS:
        log(f"erasure {backend}")
        results.append(bench_erasure(backend, segment, runs))
    digests = {r["fragments_sha256"] for r in results}
    require(len(digests) == 1, "the erasure backends produce different fragments")
    return results


# --- 2. layout -----------------------------------------------------------------------------


def bench_layout(settings: Settings) -> Result:
    size, runs = settings.object_bytes, settings.big_runs
    data = os.urandom(size)
    log(f"layout plan_object {size // MiB} MiB")
    plan_s, plan = median_time(
        lambda: plan_object(io.BytesIO(data), DEFAULT_PARAMS), runs, warmup=WARMUP
    )
    log(f"layout hash_object {size // MiB} MiB")
    hash_s, (fid, hashed) = median_time(
        lambda: hash_object(io.BytesIO(data), DEFAULT_PARAMS), runs, warmup=WARMUP
    )
    require(plan.fid == fid and plan.size == hashed == size, "plan_object and hash_object")
    return {
        "object_bytes": size,
        "segments": len(plan.segments),
        "runs": runs,
        "plan_s": plan_s,
        "hash_s": hash_s,
        "plan_mb_s": rate(size, plan_s),
        "hash_mb_s": rate(size, hash_s),
    }


# --- 3. merkle -----------------------------------------------------------------------------


def bench_merkle() -> list[Result]:
    results = []
    for leaves, runs in MERKLE_SIZES:
        log(f"merkle {leaves} leaves")
        hashes = [os.urandom(32) for _ in range(leaves)]
        seconds, _ = median_time(partial(compute_root, hashes), runs)
        results.append({"leaves": leaves, "runs": runs, "ms": seconds * 1e3})
    return results


# --- 4. PoDR² ------------------------------------------------------------------------------


def bench_primitives(settings: Settings) -> Result:
    """Per-call cost of the curve operations PoDR² is built from."""
    log("podr2 primitives")
    batch = 100
    messages = [os.urandom(40) for _ in range(batch)]

    def hash_batch() -> None:
        for message in messages:
            G1Point.hash_to_curve(message, podr2.DST_BLOCK)

    hash_s, _ = median_time(hash_batch, settings.fast_runs)
    multiexp_ms = {}
    for n in MULTIEXP_SIZES:
        points = [G1Point.hash_to_curve(i.to_bytes(4, "big"), podr2.DST_BASE) for i in range(n)]
        scalars = [random_scalar() for _ in range(n)]
        seconds, _ = median_time(
            partial(G1Point.multiexp_unchecked, points, scalars), settings.fast_runs
        )
        multiexp_ms[str(n)] = seconds * 1e3
    x = random_scalar()
    g1_pair, g2_pair = [G1Point() * x, -G1Point()], [G2Point(), G2Point() * x]
    pairing_s, ok = median_time(lambda: GT.pairing_check(g1_pair, g2_pair), settings.fast_runs)
    require(ok, "pairing check e(x·g1, g2)·e(-g1, x·g2) == 1")
    return {
        "hash_to_curve_ms": hash_s / batch * 1e3,
        "multiexp_ms": multiexp_ms,
        "pairing_check_2_ms": pairing_s * 1e3,
    }


def bench_keys(s: int, settings: Settings) -> tuple[Result, TagKey]:
    keygen_s, key = median_time(lambda: TagKey.generate(s, nacl.utils.random), settings.big_runs)
    pop_s, _ = median_time(
        key.public.verify_possession, settings.fast_runs, setup=clear_verifier_caches
    )
    return {"keygen_ms": keygen_s * 1e3, "verify_possession_ms": pop_s * 1e3}, key


def bench_tagging(key: TagKey, settings: Settings, pool: Executor) -> Result:
    """Tagging throughput of one fragment on one core and on the pool."""
    s, runs = key.sectors_per_block, settings.big_runs
    fragment = os.urandom(settings.tag_fragment_bytes)
    fragment_hash = hashlib.sha256(fragment).digest()
    one_s, tags_one = median_time(lambda: key.tag_fragment(fragment, fragment_hash), runs)
    pool_s, tags_pool = median_time(lambda: key.tag_fragment(fragment, fragment_hash, pool), runs)
    blocks = block_count(len(fragment), s)
    require(len(tags_one) == blocks * TAG_BYTES, f"s={s}: one tag per block")
    require(tags_one == tags_pool, f"s={s}: tags on one core and on the pool differ")
    return {
        "fragment_bytes": len(fragment),
        "blocks": blocks,
        "runs": runs,
        "tag_one_core_s": one_s,
        "tag_pool_s": pool_s,
        "tag_one_core_mb_s": rate(len(fragment), one_s),
        "tag_pool_mb_s": rate(len(fragment), pool_s),
        "tag_overhead_pct": TAG_BYTES / (s * SECTOR_BYTES) * 100,
    }


def tag_store(key: TagKey, pool: Executor) -> dict[bytes, Tagged]:
    """SET_FRAGMENTS random fragments of SET_BLOCKS blocks each, tagged."""
    size = SET_BLOCKS * key.sectors_per_block * SECTOR_BYTES
    fragments = [os.urandom(size) for _ in range(SET_FRAGMENTS)]
    hashes = [hashlib.sha256(f).digest() for f in fragments]
    tags = pool.map(key.tag_fragment, fragments, hashes)
    return {h: Tagged(f, t) for h, f, t in zip(hashes, fragments, tags, strict=True)}


def store_reader(store: Store, s: int) -> BlockReader:
    """A prover's block reader over fragments held in memory."""

    def read(fragment_hash: bytes, index: int) -> tuple[bytes, bytes]:
        held = store[fragment_hash]
        offset, length = block_span(index, len(held.data), s)
        tag = held.tags[index * TAG_BYTES : (index + 1) * TAG_BYTES]
        return held.data[offset : offset + length], tag

    return read


def bench_challenge(key: TagKey, store: Store, f: int, c: int, settings: Settings) -> Result:
    """Prover and verifier times and proof size for one challenge over ``store``."""
    s, runs = key.sectors_per_block, settings.fast_runs
    params = PodrParams(sectors_per_block=s, blocks_per_fragment=c, fragments_per_challenge=f)
    refs = [FragmentRef(hash=h, size=len(held.data)) for h, held in store.items()]
    items = derive_challenge(os.urandom(32), refs, params)
    read = store_reader(store, s)
    prove_s, proof = median_time(lambda: prove(items, read, s), runs)
    verify_s, _ = median_time(lambda: verify_proof(key.public, items, proof), runs)
    cold_s, _ = median_time(
        lambda: verify_proof(key.public, items, proof),
        settings.big_runs,
        setup=clear_verifier_caches,
    )
    return {
        "s": s,
        "F": f,
        "c": c,
        "fragments_held": len(store),
        "fragments_sampled": len(items),
        "C": sum(len(item.indices) for item in items),
        "prove_ms": prove_s * 1e3,
        "verify_ms": verify_s * 1e3,
        "verify_cold_ms": cold_s * 1e3,
        "proof_bytes": len(codec.encode(proof)),
    }


def bench_sectors(
    s: int, settings: Settings, pool: Executor
) -> tuple[Result, TagKey, dict[bytes, Tagged]]:
    """Everything measured for one value of sectors_per_block."""
    log(f"podr2 s={s}: keys")
    result, key = bench_keys(s, settings)
    log(f"podr2 s={s}: tagging {settings.tag_fragment_bytes // MiB} MiB")
    result.update(bench_tagging(key, settings, pool))
    log(f"podr2 s={s}: tagging {SET_FRAGMENTS} fragments for the challenges")
    store = tag_store(key, pool)
    challenges = []
    for f, c in CHALLENGE_SIZES:
        log(f"podr2 s={s}: challenge F={f} c={c}")
        challenges.append(bench_challenge(key, store, f, c, settings))
    result.update(s=s, block_bytes=s * SECTOR_BYTES, challenges=challenges)
    return result, key, store


def bench_aggregation(key: TagKey, store: Store, settings: Settings) -> list[Result]:
    """The same challenge parameters over fewer fragments: the proof size must not change."""
    _, f, c, held_counts = AGGREGATION
    log(f"aggregation s={key.sectors_per_block} F={f} c={c}")
    ordered = list(store.items())
    return [bench_challenge(key, dict(ordered[:n]), f, c, settings) for n in held_counts]


def bench_podr2(settings: Settings) -> Result:
    workers = os.cpu_count() or 1
    result: Result = {"workers": workers, "primitives": bench_primitives(settings)}
    per_s = []
    aggregation: list[Result] = []
    with ThreadPoolExecutor(workers) as pool:
        for s in SECTOR_COUNTS:
            sector_result, key, store = bench_sectors(s, settings, pool)
            per_s.append(sector_result)
            if s == AGGREGATION[0]:
                aggregation = bench_aggregation(key, store, settings)
    result.update(sectors=per_s, aggregation=aggregation)
    return result


# --- report --------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_machine(machine: Result) -> str:
    rows: list[list[object]] = [
        ["CPU", machine["cpu"]],
        ["cores (os.cpu_count)", machine["cores"]],
        ["Python", machine["python"]],
        *([package, version] for package, version in machine["versions"].items()),
        ["mode", machine["mode"]],
    ]
    return table(["", ""], rows)


def render_erasure(results: list[Result]) -> str:
    first = results[0]
    head = (
        f"## 1. Erasure code {K}+{M}\n\n"
        f"{first['fragment_bytes'] // MiB} MiB fragments, {first['segment_bytes'] // MiB} MiB "
        "segments of random data. MB/s of segment bytes (rebuild: of rebuilt fragment bytes). "
        "Decode from parity uses fragments 4..7 only; rebuild makes fragment 0 from 4..7. "
        "Both backends produce identical fragments. Each timing is the median of 'runs' calls "
        "after one untimed warm-up call.\n\n"
    )
    rows = [
        [
            r["backend"],
            r["runs"],
            f"{r['encode_mb_s']:.1f}",
            f"{r['decode_data_mb_s']:.1f}",
            f"{r['decode_parity_mb_s']:.1f}",
            f"{r['rebuild_mb_s']:.1f}",
        ]
        for r in results
    ]
    headers = [
        "backend",
        "runs",
        "encode MB/s",
        "decode (data 0..3) MB/s",
        "decode (parity 4..7) MB/s",
        "rebuild 1 data fragment MB/s",
    ]
    return head + table(headers, rows)


def render_layout(r: Result) -> str:
    head = (
        f"## 2. Object layout\n\n{r['object_bytes'] // MiB} MiB object, DEFAULT_PARAMS "
        f"(segments: {r['segments']}), median of {r['runs']} after one warm-up call. "
        "MB/s of object bytes.\n\n"
    )
    rows = [
        ["plan_object (encode + all hashes)", f"{r['plan_s']:.3f}", f"{r['plan_mb_s']:.1f}"],
        ["hash_object (fid only)", f"{r['hash_s']:.3f}", f"{r['hash_mb_s']:.1f}"],
    ]
    return head + table(["operation", "seconds", "MB/s"], rows)


def render_merkle(results: list[Result]) -> str:
    rows = [[f"{r['leaves']:,}", r["runs"], f"{r['ms']:.2f}"] for r in results]
    return "## 3. Merkle compute_root\n\n" + table(["leaves", "runs", "ms"], rows)


def render_primitives(p: Result) -> str:
    rows = [["G1Point.hash_to_curve", f"{p['hash_to_curve_ms']:.3f}"]]
    rows += [
        [f"G1Point.multiexp_unchecked, {n} points", f"{ms:.2f}"]
        for n, ms in p["multiexp_ms"].items()
    ]
    rows.append(["GT.pairing_check, 2 pairs", f"{p['pairing_check_2_ms']:.2f}"])
    return "### Curve primitives (py_arkworks_bls12381)\n\n" + table(["operation", "ms"], rows)


def render_tagging(podr: Result) -> str:
    sectors = podr["sectors"]
    first = sectors[0]
    head = (
        f"### Keys and tagging\n\nTagging one {first['fragment_bytes'] // MiB} MiB fragment, "
        f"median of {first['runs']}; 'all cores' is a ThreadPoolExecutor({podr['workers']}). "
        "Tag overhead = 48 bytes per block of 31·s bytes.\n\n"
    )
    rows = [
        [
            r["s"],
            r["block_bytes"],
            r["blocks"],
            f"{r['keygen_ms']:.1f}",
            f"{r['verify_possession_ms']:.2f}",
            f"{r['tag_one_core_mb_s']:.3f}",
            f"{r['tag_pool_mb_s']:.3f}",
            f"{r['tag_one_core_s'] / r['tag_pool_s']:.2f}x",
            f"{r['tag_overhead_pct']:.3f}%",
        ]
        for r in sectors
    ]
    headers = [
        "s",
        "block bytes",
        "blocks",
        "TagKey.generate ms",
        "verify_possession ms",
        "tag 1 core MB/s",
        "tag all cores MB/s",
        "speedup",
        "tag overhead",
    ]
    return head + table(headers, rows)


def challenge_row(r: Result) -> list[object]:
    return [
        r["s"],
        r["F"],
        r["c"],
        r["fragments_held"],
        r["fragments_sampled"],
        r["C"],
        f"{r['prove_ms']:.1f}",
        f"{r['verify_ms']:.1f}",
        f"{r['verify_cold_ms']:.1f}",
        r["proof_bytes"],
    ]


CHALLENGE_HEADERS = [
    "s",
    "F",
    "c",
    "fragments held",
    "sampled",
    "C (blocks)",
    "prove ms",
    "verify ms",
    "verify cold ms",
    "proof bytes",
]


def render_challenges(podr: Result) -> str:
    head = (
        f"### Challenges\n\n{SET_FRAGMENTS} fragments of {SET_BLOCKS} blocks each per s, "
        "read from memory. prove and verify: median of 5; verify cold: verifier caches "
        "(sector bases, public key) cleared before each run, median of 3. Proof bytes = "
        "len(codec.encode(proof)). C = challenged blocks (capped by the blocks a fragment "
        "has).\n\n"
    )
    rows = [challenge_row(r) for sector in podr["sectors"] for r in sector["challenges"]]
    return head + table(CHALLENGE_HEADERS, rows)


def render_aggregation(results: list[Result]) -> str:
    sizes = {r["proof_bytes"] for r in results}
    verdict = "identical" if len(sizes) == 1 else "DIFFERENT"
    head = "## 5. Aggregation\n\nSame challenge parameters over fewer fragments held.\n\n"
    body = table(CHALLENGE_HEADERS, [challenge_row(r) for r in results])
    sizes_text = " vs ".join(f"{r['proof_bytes']} bytes" for r in results)
    return f"{head}{body}\n\nProof sizes: {sizes_text}: {verdict}."


def render(results: Result) -> str:
    podr = results["podr2"]
    sections = [
        "# DeOSS core data-path benchmark",
        render_machine(results["machine"]),
        f"glibc allocator tuned (deoss.runtime.tune_allocator): {results.get('allocator_tuned')}",
        render_erasure(results["erasure"]),
        render_layout(results["layout"]),
        render_merkle(results["merkle"]),
        "## 4. PoDR²",
        render_primitives(podr["primitives"]),
        render_tagging(podr),
        render_challenges(podr),
        render_aggregation(podr["aggregation"]),
        f"Total benchmark time: {results['total_s']:.1f} s.",
    ]
    return "\n\n".join(sections) + "\n"


# --- main ----------------------------------------------------------------------------------


def run(settings: Settings) -> Result:
    start = time.perf_counter()
    results: Result = {"machine": machine_info(settings)}
    results["erasure"] = bench_erasure_all(settings)
    results["layout"] = bench_layout(settings)
    results["merkle"] = bench_merkle()
    results["podr2"] = bench_podr2(settings)
    results["total_s"] = time.perf_counter() - start
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (under a minute)")
    parser.add_argument("--json", metavar="OUT", help="also write the raw results to OUT")
    parser.add_argument(
        "--no-tune",
        action="store_true",
        help="keep glibc's default allocator thresholds (deoss.runtime.tune_allocator)",
    )
    args = parser.parse_args(argv)
    tuned = False if args.no_tune else tune_allocator()
    print(f"allocator tuned: {tuned}", file=sys.stderr)
    results = run(Settings.for_mode(args.quick))
    results["allocator_tuned"] = tuned
    print(render(results), end="")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
