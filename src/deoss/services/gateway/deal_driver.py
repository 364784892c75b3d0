"""Driving a declared deal until SUCCESS or FAILED: deliver every padded segment to the deal's
scheduler (``deoss.client.scheduler``), streamed from the spool file; a scheduler that cannot
be reached is replaced with ``deals.reassign``. ``UploadTasks`` runs deliveries in the
background. See ``upload`` for the whole path and its invariants."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from deoss.chain.errors import InvalidTransition
from deoss.chain.modules.deals import Deal, DealState, ReassignDeal
from deoss.client.chain import ChainClient
from deoss.client.errors import (
    NodeUnavailable,
    PeerBadAnswer,
    PeerRefused,
    PeerUnreachable,
    QueryFailed,
    TxRefused,
)
from deoss.core.keys import address_of
from deoss.core.layout import LayoutParams, SegmentPlan
from deoss.services.common.app import log_event
from deoss.services.common.errors import ServiceError, UpstreamFailed
from deoss.services.gateway.spooling import read_at
from deoss.services.gateway.uplink import Uplink
from deoss.services.gateway.upload import UploadSlot

__all__ = [
    "GatewayTimeout",
    "NotAssignedThere",
    "SchedulerUnreachable",
    "UploadTasks",
    "drive_deal",
    "read_deal",
    "send_segments",
]

SEND_CHUNK = 1024 * 1024  # a segment goes to its scheduler read from the spool this much at once
MAX_REFUSALS = 10  # 404/409 answers for one assignment before asking for another scheduler


class GatewayTimeout(ServiceError):
    status, code = 504, "timeout"


# --- delivering ---------------------------------------------------------------------------


class SchedulerUnreachable(Exception):
    """The scheduler could not be reached or failed (connection, timeout, 5xx)."""


class NotAssignedThere(Exception):
    """The scheduler does not (yet) see the deal as assigned to it (404 or 409)."""


async def read_deal(chain: ChainClient, deal_id: int) -> Deal:
    return await chain.reads.deal.required(deal_id)


async def _segment_body(
    path: Path, segment: SegmentPlan, layout: LayoutParams
) -> AsyncIterator[bytes]:
    """A padded segment, read from the spool file ``SEND_CHUNK`` bytes at a time (opened for
    each read: nothing stays open if the request stops early)."""
    start = segment.index * layout.segment_size
    for at in range(0, segment.size, SEND_CHUNK):
        yield await asyncio.to_thread(read_at, path, start + at, min(SEND_CHUNK, segment.size - at))
    if segment.padded_size > segment.size:
        yield bytes(segment.padded_size - segment.size)  # less than k bytes


async def _scheduler_endpoint(chain: ChainClient, scheduler: bytes) -> str:
    try:
        record = await chain.reads.scheduler.required(address_of(scheduler))
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
