"""Spooling an upload's body to a file while planning its complete segments (erasure-coded and
hashed in threads, at most ``PLANNING_DEPTH`` per upload waiting) — see ``upload`` for the
whole path and its invariants."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deoss.core.layout import LayoutParams, SegmentPlan, padded_size
from deoss.core.merkle import compute_fid
from deoss.services.common.auth import AuthError

__all__ = ["SegmentPlanner", "Spooled", "plan_spooled_segment", "spool_body", "sweep_spool"]

FLUSH_BYTES = 4 * 1024 * 1024
SPOOL_PREFIX = "upload-"
SPOOL_SUFFIX = ".spool"
# segments of one upload waiting for or in planning while it spools: the planning thread is the
# slower side (2 took 0.1 s off spooling 256 MiB on 2 cores); the gateway's planning_slots bound
# how many are coded at once, for all uploads
PLANNING_DEPTH = 2
PLAN_STRIPE = 1024 * 1024  # bytes of each fragment coded at once while planning


# --- spooling -----------------------------------------------------------------------------


class SegmentPlanner:
    """Plans the segments of a spool file while it is written: each complete segment is read
    back (from the page cache, just written), erasure-coded and hashed in a worker thread while
    the body goes on arriving, so the declaration is ready when the body ends (coding after
    spooling took a 256 MiB upload a second more).

    Holds no segment itself: a thread reads one a stripe at a time while it codes it
    (``plan_spooled_segment``), and codes only in one of the gateway's ``slots``. At most
    ``PLANNING_DEPTH`` segments of this upload wait for or are in planning; ``written`` waits
    beyond, which holds the body back. ``aclose`` must be awaited if the upload fails, so no
    planning thread outlives it (those still waiting for a slot never start).
    """

    def __init__(self, path: Path, layout: LayoutParams, slots: asyncio.Semaphore) -> None:
        self._path = path
        self._layout = layout
        self._slots = slots
        self._planning: collections.deque[asyncio.Future[SegmentPlan]] = collections.deque()
        self._count = 0  # segments handed to planning
        self._segments: list[SegmentPlan] = []
        self._closed = False

    async def written(self, size: int) -> None:
        """The spool file now holds ``size`` bytes (flushed): plan every segment complete."""
        segment_size = self._layout.segment_size
        while (self._count + 1) * segment_size <= size:
            await self._plan(segment_size)

    async def finish(self, size: int) -> list[SegmentPlan]:
        """Every segment's plan, for a file of ``size`` bytes; the last (or only, for an empty
        object) segment is padded."""
        await self.written(size)
        held = size - self._count * self._layout.segment_size
        if held or not self._count:
            await self._plan(held)
        while self._planning:
            await self._collect_oldest()
        return self._segments

    async def aclose(self) -> None:
        self._closed = True
        while self._planning:
            with contextlib.suppress(Exception):
                await self._planning.popleft()

    async def _plan(self, held: int) -> None:
        while len(self._planning) >= PLANNING_DEPTH:
            await self._collect_oldest()
        self._planning.append(asyncio.ensure_future(self._plan_one(self._count, held)))
        self._count += 1

    async def _plan_one(self, index: int, held: int) -> SegmentPlan:
        async with self._slots:
            if self._closed:
                raise _Abandoned  # the upload failed while this one waited: nothing to do
            return await asyncio.to_thread(
                plan_spooled_segment, self._path, index, held, self._layout
            )

    async def _collect_oldest(self) -> None:
        self._segments.append(await self._planning[0])
        self._planning.popleft()


class _Abandoned(Exception):
    """A segment whose upload failed before a planning slot came."""


def plan_spooled_segment(
    path: Path, index: int, held: int, layout: LayoutParams, stripe_bytes: int = PLAN_STRIPE
) -> SegmentPlan:
    """The plan ``encode_and_plan`` makes of segment ``index`` of a spool file (``held`` bytes,
    zero-padded), computed a stripe at a time: the code is systematic and works byte position
    by byte position (core/erasure.py), so coding ``stripe_bytes`` of each data fragment gives
    the same bytes of each parity fragment. In memory: k data and m parity stripes (16 MiB at
    4+8), not the segment and its k + m fragments (about 160 MiB at 32 MiB segments)."""
    k, m = layout.data_shards, layout.parity_shards
    padded = padded_size(held, layout)
    width = padded // k  # each fragment's size
    start = index * layout.segment_size
    segment_hash = hashlib.sha256()
    fragment_hashes = [hashlib.sha256() for _ in range(k + m)]
    code = layout.code()
    with open(path, "rb") as handle:
        step = k * stripe_bytes
        for at in range(0, padded, step):  # the segment in order, for its hash
            segment_hash.update(_read_padded(handle, start, held, at, min(step, padded - at)))
        for offset in range(0, width, stripe_bytes):
            size = min(stripe_bytes, width - offset)
            stripe = b"".join(
                _read_padded(handle, start, held, j * width + offset, size) for j in range(k)
            )
            for digest, fragment in zip(fragment_hashes, code.encode(stripe), strict=True):
                digest.update(fragment)
    return SegmentPlan(
        index=index,
        size=held,
        padded_size=padded,
        hash=segment_hash.digest(),
        fragment_hashes=[digest.digest() for digest in fragment_hashes],
    )


def _read_padded(handle: Any, start: int, held: int, at: int, size: int) -> bytes:
    """``size`` bytes from ``at`` in the padded segment that starts at ``start`` in the file
    (past its ``held`` bytes: the padding's zeros)."""
    handle.seek(start + min(at, held))
    data: bytes = handle.read(max(0, min(size, held - at)))
    if len(data) != max(0, min(size, held - at)):
        raise RuntimeError(f"spool file {handle.name} is shorter than its plan")
    return data + bytes(size - len(data))


def read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise RuntimeError(f"spool file {path} is shorter than its plan")
    return data


@dataclass(frozen=True)
class Spooled:
    path: Path
    size: int
    fid: str
    segments: list[SegmentPlan]  # planned while spooling


def sweep_spool(directory: Path) -> int:
    """Create the spool directory; delete spool files a crash left behind. Returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    removed = 0
    for leftover in directory.glob(f"{SPOOL_PREFIX}*{SPOOL_SUFFIX}"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed


def _write(handle: Any, digest: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        handle.write(chunk)
        digest.update(chunk)
    handle.flush()  # the planning threads read the file back


async def spool_body(
    chunks: AsyncIterator[bytes],
    directory: Path,
    layout: LayoutParams,
    body_sha256: str,
    planning: asyncio.Semaphore,
) -> Spooled:
    """Write the body to a new spool file, planning its segments on the way (in ``planning``'s
    slots); the body must hash to ``body_sha256`` (what the user signed; hashed in the writing
    thread, off the event loop).

    Raises:
        AuthError: the body is not the one signed. Whatever ``chunks`` raises (too large,
        over the user's space, client gone). Either way the file is deleted.
    """
    fd, name = tempfile.mkstemp(dir=directory, prefix=SPOOL_PREFIX, suffix=SPOOL_SUFFIX)
    path = Path(name)
    planner = SegmentPlanner(path, layout, planning)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            batch: list[bytes] = []
            batched = 0
            async for chunk in chunks:
                batch.append(chunk)
                batched += len(chunk)
                if batched >= FLUSH_BYTES:
                    await asyncio.to_thread(_write, handle, digest, batch)
                    size, batch, batched = size + batched, [], 0
                    await planner.written(size)
            await asyncio.to_thread(_write, handle, digest, batch)
            size += batched
        if digest.hexdigest() != body_sha256:
            raise AuthError("body does not match the signed SHA-256")
        segments = await planner.finish(size)
    except BaseException:
        await planner.aclose()
        path.unlink(missing_ok=True)
        raise
    return Spooled(path, size, compute_fid([s.hash for s in segments]), segments)
