"""Uploads: admit, spool the body, plan it, declare the deal for the user, deliver the segments.

    request --(a slot of the gateway's and of the user's, else 429 at once)--> admitted
    body --(at most the limit; hashed while written: the signed SHA-256)--> spool file
         --(each complete segment read back, erasure-coded and hashed while the next arrives:
            the plan, the fid)
         --> stored already? declare the stored file's plan, else the one just made
         --> deals.declare (owner = the user) --> ASSIGNED --> PUT each padded segment to the
             scheduler, streamed from the spool file --> SUCCESS (or FAILED)

Invariants:

* An upload holds its slot (``UploadSlots``) from its request until its spool file is deleted;
  a refused request (429) has read no body and declared nothing.
* Nothing is declared before the whole body is spooled and matches the SHA-256 the user
  signed; a spool file never holds more than the limit and is deleted however the upload ends
  (and at startup, for files left by a crash: ``sweep_spool``).
* A fid already stored is declared at once and the chain deduplicates it (no deal, no bytes
  sent), with the fragment hashes of the file record.
* Memory is bounded per upload and per gateway, not by the body: while spooling, an upload
  holds its last batch of the body (``FLUSH_BYTES``); a planning thread reads a segment back
  from the spool file and codes it a stripe of ``PLAN_STRIPE`` bytes per fragment at a time,
  and at most ``planning_slots`` threads do at once in the gateway (an upload has at most
  PLANNING_DEPTH segments waiting for or in planning; beyond, its body waits). While sending,
  at most two segments per deal travel, each streamed from the spool file ``SEND_CHUNK`` bytes
  at a time.
* A deal is driven until SUCCESS or FAILED: whenever its (scheduler, attempt) changes, every
  segment is sent again to the new scheduler. A scheduler that cannot be reached (connection
  error, timeout, 5xx) is replaced with ``deals.reassign``; the chain bounds the attempts.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from msgspec.structs import replace
from prometheus_client import CollectorRegistry, Counter

from deoss.chain.errors import InvalidTransition, NotFound
from deoss.chain.modules.deals import Deal, DealState, DeclareDeal, ReassignDeal
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.schedulers import Scheduler
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.errors import (
    BadResponse,
    NodeUnavailable,
    PeerBadAnswer,
    PeerRefused,
    PeerUnreachable,
    QueryFailed,
    TxRefused,
)
from deoss.client.scheduler import SchedulerClient
from deoss.core.keys import KeyPair, address_of
from deoss.core.layout import LayoutParams, SegmentPlan, padded_size, segment_span
from deoss.core.merkle import compute_fid
from deoss.services.common.app import log_event
from deoss.services.common.auth import AuthError
from deoss.services.common.errors import ServiceError, TooManyRequests, UpstreamFailed
from deoss.services.gateway.settings import GatewaySettings

__all__ = [
    "Declared",
    "GatewayTimeout",
    "SegmentPlanner",
    "Spooled",
    "UploadMetrics",
    "UploadSlot",
    "UploadSlots",
    "UploadTasks",
    "Uplink",
    "declare_upload",
    "drive_deal",
    "plan_spooled_segment",
    "read_deal",
    "spool_body",
    "sweep_spool",
]

FLUSH_BYTES = 4 * 1024 * 1024
SPOOL_PREFIX = "upload-"
SPOOL_SUFFIX = ".spool"
# segments of one upload waiting for or in planning while it spools: the planning thread is the
# slower side (2 took 0.1 s off spooling 256 MiB on 2 cores); the gateway's planning_slots bound
# how many are coded at once, for all uploads
PLANNING_DEPTH = 2
PLAN_STRIPE = 1024 * 1024  # bytes of each fragment coded at once while planning
SEND_CHUNK = 1024 * 1024  # a segment goes to its scheduler read from the spool this much at once
RETRY_AFTER_S = 5  # an upload refused for load: a new slot is likely free by then
MAX_REFUSALS = 10  # 404/409 answers for one assignment before asking for another scheduler


class GatewayTimeout(ServiceError):
    status, code = 504, "timeout"


class UploadMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.bytes_received = Counter(
            "deoss_gateway_upload_bytes_total", "Object bytes spooled", registry=registry
        )
        self.segments_sent = Counter(
            "deoss_gateway_segments_sent_total", "Segments sent to schedulers", registry=registry
        )
        self.reassigns = Counter(
            "deoss_gateway_reassigns_total",
            "Deals reassigned because the scheduler was unreachable",
            registry=registry,
        )
        self.deduplicated = Counter(
            "deoss_gateway_deduplicated_total", "Uploads of a stored fid", registry=registry
        )


@dataclass(frozen=True)
class Uplink:
    """What an upload needs: the chain and its layout, the gateway's key, HTTP to schedulers."""

    chain: ChainClient
    layout: LayoutParams
    key: KeyPair
    http: httpx.AsyncClient
    settings: GatewaySettings
    metrics: UploadMetrics
    planning: asyncio.Semaphore  # the gateway's planning slots, shared by its uploads

    @property
    def schedulers(self) -> SchedulerClient:
        return SchedulerClient(self.http)


# --- admission ----------------------------------------------------------------------------


class UploadSlot:
    """One admitted upload's place; ``release`` (idempotent) gives it back."""

    def __init__(self, slots: UploadSlots, user: str) -> None:
        self._slots: UploadSlots | None = slots
        self.user = user

    def release(self) -> None:
        if self._slots is not None:
            self._slots._release(self.user)
            self._slots = None


class UploadSlots:
    """Uploads in flight, per gateway and per user: admitted at once or refused, never queued,
    so that a refused request costs no memory, no disk and no chain transaction."""

    def __init__(self, per_gateway: int, per_user: int) -> None:
        self.per_gateway = per_gateway
        self.per_user = per_user
        self._by_user: dict[str, int] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def admit(self, user: str) -> UploadSlot:
        """A slot for one more upload of ``user``.

        Raises:
            TooManyRequests: the gateway or the user has as many uploads in flight as allowed.
        """
        if self._total >= self.per_gateway:
            raise TooManyRequests(
                f"this gateway has {self._total} uploads in progress, its limit; try again in "
                f"{RETRY_AFTER_S} s",
                retry_after_s=RETRY_AFTER_S,
            )
        mine = self._by_user.get(user, 0)
        if mine >= self.per_user:
            raise TooManyRequests(
                f"{user} has {mine} uploads in progress on this gateway, the limit per user; "
                f"try again once one is done (in {RETRY_AFTER_S} s)",
                retry_after_s=RETRY_AFTER_S,
            )
        self._by_user[user] = mine + 1
        self._total += 1
        return UploadSlot(self, user)

    def _release(self, user: str) -> None:
        self._total -= 1
        left = self._by_user[user] - 1
        if left:
            self._by_user[user] = left
        else:
            del self._by_user[user]


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


def _read_at(path: Path, offset: int, size: int) -> bytes:
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


# --- declaring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    deal_id: int | None  # None: deduplicated, the object exists already
    segments: list[SegmentPlan]


async def find_file(chain: ChainClient, fid: str) -> FileRecord | None:
    try:
        return await chain.query("/files/file", QueryArgs(fid=fid), FileRecord)
    except QueryFailed as exc:
        if exc.code == NotFound.code:
            return None
        raise


async def plan_segments(uplink: Uplink, spooled: Spooled) -> list[SegmentPlan]:
    """The segments to declare: from the stored file of the same fid (its fragments are on
    miners already), else as planned while spooling."""
    record = await find_file(uplink.chain, spooled.fid)
    if record is None:
        return spooled.segments
    layout = uplink.layout
    return [
        replace(s, size=segment_span(s.index, spooled.size, layout)[1]) for s in record.segments
    ]


async def declare_upload(
    uplink: Uplink, owner: str, bucket: str, name: str, spooled: Spooled
) -> Declared:
    """Declare the deal for ``owner``; the chain deduplicates a stored fid at once.

    Raises:
        TxRefused: the chain refused the declaration (space, bucket, name taken, ...).
    """
    segments = await plan_segments(uplink, spooled)
    call = DeclareDeal(
        bucket=bucket,
        name=name,
        size=spooled.size,
        fid=spooled.fid,
        segments=segments,
        owner=owner,
    )
    outcome = await uplink.chain.submit(uplink.key, call)
    for event in outcome.result.events:
        if event.type == "deal.deduplicated":
            uplink.metrics.deduplicated.inc()
            return Declared(deal_id=None, segments=segments)
        if event.type == "deal.declared":
            return Declared(deal_id=int(event.get("id") or 0), segments=segments)
    raise BadResponse("deals.declare was accepted without a deal.declared or deduplicated event")


# --- delivering ---------------------------------------------------------------------------


class SchedulerUnreachable(Exception):
    """The scheduler could not be reached or failed (connection, timeout, 5xx)."""


class NotAssignedThere(Exception):
    """The scheduler does not (yet) see the deal as assigned to it (404 or 409)."""


async def read_deal(chain: ChainClient, deal_id: int) -> Deal:
    return await chain.query("/deals/deal", QueryArgs(id=deal_id), Deal)


async def _segment_body(
    path: Path, segment: SegmentPlan, layout: LayoutParams
) -> AsyncIterator[bytes]:
    """A padded segment, read from the spool file ``SEND_CHUNK`` bytes at a time (opened for
    each read: nothing stays open if the request stops early)."""
    start = segment.index * layout.segment_size
    for at in range(0, segment.size, SEND_CHUNK):
        yield await asyncio.to_thread(
            _read_at, path, start + at, min(SEND_CHUNK, segment.size - at)
        )
    if segment.padded_size > segment.size:
        yield bytes(segment.padded_size - segment.size)  # less than k bytes


async def _scheduler_endpoint(chain: ChainClient, scheduler: bytes) -> str:
    try:
        record = await chain.query(
            "/schedulers/scheduler", QueryArgs(address=address_of(scheduler)), Scheduler
        )
    except QueryFailed as exc:
        raise SchedulerUnreachable(f"scheduler {address_of(scheduler)}: {exc}") from exc
    return record.endpoint.rstrip("/")


SEGMENTS_IN_FLIGHT = 2  # while the scheduler places one segment, the next one travels


async def send_segments(
    uplink: Uplink, deal: Deal, spool: Path, segments: list[SegmentPlan]
) -> None:
    """PUT every padded segment to the deal's scheduler, at most two at a time, a new one as
    soon as one is placed: sending the next segment overlaps the scheduler's coding and
    placement.

    Raises:
        SchedulerUnreachable, NotAssignedThere, UpstreamFailed (any other refusal), the first
        in segment order when several fail; a failure stops the segments not yet sent.
    """
    endpoint = await _scheduler_endpoint(uplink.chain, deal.scheduler)
    slots = asyncio.Semaphore(SEGMENTS_IN_FLIGHT)
    failed = asyncio.Event()

    async def send(segment: SegmentPlan) -> None:
        async with slots:
            if failed.is_set():
                return  # an earlier segment failed: the deal is sent again or reassigned
            try:
                await _send_segment(uplink, deal, endpoint, spool, segment)
            except BaseException:
                failed.set()
                raise

    results = await asyncio.gather(*(send(s) for s in segments), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _send_segment(
    uplink: Uplink, deal: Deal, endpoint: str, spool: Path, segment: SegmentPlan
) -> None:
    try:
        await uplink.schedulers.put_segment(
            endpoint,
            deal.id,
            segment.index,
            _segment_body(spool, segment, uplink.layout),
            sha256=segment.hash,
            size=segment.padded_size,
            http_timeout_s=uplink.settings.scheduler_timeout_s,
        )
    except PeerUnreachable as exc:
        raise SchedulerUnreachable(str(exc)) from exc
    except PeerRefused as exc:
        if exc.status >= 500:
            raise SchedulerUnreachable(str(exc)) from exc
        if exc.status in (404, 409):
            raise NotAssignedThere(str(exc)) from exc
        raise UpstreamFailed(
            f"scheduler {endpoint} refused segment {segment.index} of deal {deal.id}: {exc}"
        ) from exc
    except PeerBadAnswer as exc:
        raise UpstreamFailed(
            f"scheduler {endpoint} did not place segment {segment.index} of deal {deal.id}: {exc}"
        ) from exc
    uplink.metrics.segments_sent.inc()


async def _reassign(uplink: Uplink, deal: Deal, why: str) -> None:
    log_event("gateway", "deal.reassign", deal=deal.id, attempt=deal.attempts, why=why)
    uplink.metrics.reassigns.inc()
    try:
        await uplink.chain.submit(uplink.key, ReassignDeal(deal_id=deal.id, attempt=deal.attempts))
    except TxRefused as exc:
        if exc.code != InvalidTransition.code:  # no longer ASSIGNED, or moved: read it again
            raise


class _Driver:
    """One deal, driven until SUCCESS or FAILED (see the module docstring)."""

    def __init__(
        self, uplink: Uplink, deal_id: int, spool: Path, segments: list[SegmentPlan]
    ) -> None:
        self.uplink = uplink
        self.deal_id = deal_id
        self.spool = spool
        self.segments = segments
        self.delivered: tuple[bytes, int] | None = None  # (scheduler, attempt) holding it all
        self.refusals = 0
        self.last_problem = ""  # the last scheduler failure, for the reason of a FAILED deal
        self.poll_s = uplink.settings.poll_interval_ms / 1000
        self.deadline = time.monotonic() + uplink.settings.deal_wait_s

    async def run(self) -> Deal:
        while True:
            deal = await self._read()
            if deal.state == DealState.SUCCESS:
                return deal
            if deal.state == DealState.FAILED:
                why = f" (last scheduler failure: {self.last_problem})" if self.last_problem else ""
                raise UpstreamFailed(f"deal {deal.id} failed: {deal.reason}{why}")
            assignment = (deal.scheduler, deal.attempts)
            if deal.state == DealState.ASSIGNED and assignment != self.delivered:
                if await self._deliver(deal):
                    continue
            if time.monotonic() > self.deadline:
                raise GatewayTimeout(
                    f"deal {deal.id} is still {deal.state.name} after "
                    f"{self.uplink.settings.deal_wait_s} s; follow it with GET /deals/{deal.id}"
                )
            # read again on the next block (the deal only changes then), at most poll_s later
            await self.uplink.chain.next_block(self.poll_s)

    async def _read(self) -> Deal:
        while True:
            try:
                return await read_deal(self.uplink.chain, self.deal_id)
            except NodeUnavailable:
                if time.monotonic() > self.deadline:
                    raise
                await asyncio.sleep(self.poll_s)  # the node may be restarting

    async def _deliver(self, deal: Deal) -> bool:
        """Send everything to the deal's scheduler; True if the deal should be read again now."""
        try:
            await send_segments(self.uplink, deal, self.spool, self.segments)
        except SchedulerUnreachable as exc:
            self.last_problem = str(exc)
            await _reassign(self.uplink, deal, str(exc))
            return True
        except NotAssignedThere as exc:
            self.last_problem = str(exc)
            self.refusals += 1
            if self.refusals >= MAX_REFUSALS:
                self.refusals = 0
                await _reassign(self.uplink, deal, str(exc))
                return True
            return False  # its view of the chain may lag: wait a poll interval
        self.delivered = (deal.scheduler, deal.attempts)
        self.refusals = 0
        log_event("gateway", "deal.delivered", deal=deal.id, attempt=deal.attempts)
        return False


async def drive_deal(
    uplink: Uplink, deal_id: int, spool: Path, segments: list[SegmentPlan]
) -> Deal:
    """Deliver the segments until the deal is SUCCESS (returned).

    Raises:
        UpstreamFailed: the deal FAILED, or a scheduler refused a segment outright.
        GatewayTimeout: still not done after ``deal_wait_s``.
    """
    return await _Driver(uplink, deal_id, spool, segments).run()


# --- background uploads -------------------------------------------------------------------


class UploadTasks:
    """Deal deliveries running in the background; each deletes its spool file when it ends,
    then gives its upload's slot back."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Deal]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self, work: Coroutine[Any, Any, Deal], spool: Path, deal_id: int, slot: UploadSlot
    ) -> asyncio.Task[Deal]:
        async def run() -> Deal:
            try:
                return await work
            finally:
                spool.unlink(missing_ok=True)
                slot.release()

        task = asyncio.create_task(run(), name=f"deal-{deal_id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Deal]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, so a background failure is never unseen
        if error is not None:
            log_event("gateway", "deal.failed", task=task.get_name(), error=str(error))
        else:
            log_event("gateway", "deal.success", task=task.get_name())

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
