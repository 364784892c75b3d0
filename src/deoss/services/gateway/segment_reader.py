"""Reading a segment from the miners holding its fragments: a race of hash-checked fragment
fetches (``deoss.client.miner``), hedged when one is slow or fails. See ``download`` for the
invariants of the download path."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from deoss.client.errors import PeerError
from deoss.client.miner import MinerClient
from deoss.client.miner_types import ReadReason
from deoss.core.errors import NotEnoughFragments
from deoss.core.keys import address_of
from deoss.core.layout import LayoutParams, SegmentPlan, decode_segment
from deoss.services.gateway.miner_book import MinerBook

__all__ = ["DownloadMetrics", "SegmentReader"]


class DownloadMetrics:
    """Counters of the download path, in the app's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.bytes_sent = Counter(
            "deoss_gateway_download_bytes_total", "Object bytes streamed", registry=registry
        )
        self.fragment_failures = Counter(
            "deoss_gateway_fragment_failures_total",
            "Fragment fetches that failed or did not match their hash",
            registry=registry,
        )
        self.hedges = Counter(
            "deoss_gateway_fragment_hedges_total",
            "Extra fragment fetches started because one was slow",
            registry=registry,
        )
        self.decodes = Counter(
            "deoss_gateway_segment_decodes_total",
            "Segments rebuilt from parity because a data fragment was missing",
            registry=registry,
        )


@dataclass
class _HeadStart:
    """Fetches of some fragments made before a race for k: those in, those still running, why
    the others failed."""

    got: dict[int, bytes]
    running: dict[asyncio.Task[bytes], int]
    errors: list[str]
    tried: set[int]


class _FragmentRace:
    """Fetch fragments until ``needed`` good ones are in, hedging slow and failed fetches."""

    def __init__(
        self,
        fetch: Callable[[int], Coroutine[Any, Any, bytes]],
        order: list[int],
        needed: int,
        hedge_after_s: float,
        max_in_flight: int,
        metrics: DownloadMetrics,
        head_start: _HeadStart | None = None,
    ) -> None:
        self._fetch = fetch
        self._needed = needed
        self._hedge_after_s = hedge_after_s
        self._max_in_flight = max(max_in_flight, needed)
        self._metrics = metrics
        self._pending: dict[asyncio.Task[bytes], tuple[int, float]] = {}  # -> (index, hedge at)
        self._hedged: set[asyncio.Task[bytes]] = set()
        self.got: dict[int, bytes] = {}
        self.errors: list[str] = []
        if head_start is not None:  # its running fetches are already slow: hedge them now
            self.got.update(head_start.got)
            self.errors.extend(head_start.errors)
            for task, index in head_start.running.items():
                self._pending[task] = (index, time.monotonic())
                self._hedged.add(task)
                self._metrics.hedges.inc()
            order = [i for i in order if i not in head_start.tried]
        self._order = deque(order)

    async def run(self) -> dict[int, bytes]:
        try:
            self._top_up()
            while len(self.got) < self._needed:
                if not self._pending:
                    raise NotEnoughFragments(
                        f"{len(self.got)} good fragments, {self._needed} needed: "
                        + "; ".join(self.errors)
                    )
                done, _ = await asyncio.wait(
                    self._pending,
                    timeout=self._next_hedge_in(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                self._collect(done)
                self._hedge_slow()
                self._top_up()
            return self.got
        finally:
            await self._cancel_rest()

    def _top_up(self) -> None:
        """Keep enough fetches that are not (yet) slow running to complete the set."""
        live = len(self._pending) - len(self._hedged)
        while (
            live < self._needed - len(self.got)
            and self._order
            and len(self._pending) < self._max_in_flight
        ):
            index = self._order.popleft()
            task = asyncio.create_task(self._fetch(index))
            self._pending[task] = (index, time.monotonic() + self._hedge_after_s)
            live += 1

    def _next_hedge_in(self) -> float | None:
        times = [at for task, (_, at) in self._pending.items() if task not in self._hedged]
        if not times or not self._order:
            return None  # nothing to hedge with: wait for any fetch to end
        return max(0.0, min(times) - time.monotonic())

    def _collect(self, done: set[asyncio.Task[bytes]]) -> None:
        for task in done:
            index, _ = self._pending.pop(task)
            self._hedged.discard(task)
            try:
                self.got[index] = task.result()
            except PeerError as exc:
                self.errors.append(str(exc))

    def _hedge_slow(self) -> None:
        now = time.monotonic()
        for task, (_, at) in self._pending.items():
            if task not in self._hedged and at <= now and self._order:
                self._hedged.add(task)
                self._metrics.hedges.inc()

    async def _cancel_rest(self) -> None:
        for task in self._pending:
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        self._pending.clear()


class SegmentReader:
    """Reads padded segments of one stored file (``fid``) from the miners holding their
    fragments, for a download by ``owner`` (an owner of the file who authorized this gateway):
    every fragment read names that reason, and the miner checks it on chain."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        miners: MinerBook,
        layout: LayoutParams,
        *,
        fid: str,
        owner: str,
        hedge_after_s: float,
        max_in_flight: int,
        timeout_s: float,
        metrics: DownloadMetrics,
    ) -> None:
        self._fragments = MinerClient(http)
        self._miners = miners
        self.layout = layout
        self._hedge_after_s = hedge_after_s
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self._metrics = metrics
        self._reason = ReadReason("download", fid=fid, owner=owner)

    async def read_span(
        self, segment: SegmentPlan, holders: list[bytes], low: int, high: int
    ) -> bytes:
        """Bytes ``low`` to ``high`` (exclusive) of the padded segment.

        When they lie in fewer than k data fragments, those fragments alone are fetched (a
        range read costs what it reads, not a whole segment); one that fails, or is slower
        than the hedge delay, turns the read into a race for any k fragments that keeps
        whatever is already in.

        Raises:
            NotEnoughFragments: the bytes could not be had; the message lists why.
        """
        size = self.layout.fragment_size(segment)
        first, last = low // size, (high - 1) // size
        wanted = range(first, last + 1)
        if len(wanted) >= self.layout.data_shards or any(
            self._miners.is_suspect(holders[i]) for i in wanted
        ):
            return (await self.read_segment(segment, holders))[low:high]
        fetch = await self._fetcher(segment, holders)
        tasks = {asyncio.create_task(fetch(i)): i for i in wanted}
        done, running = await asyncio.wait(tasks, timeout=self._hedge_after_s)
        got: dict[int, bytes] = {}
        errors: list[str] = []
        for task in done:
            try:
                got[tasks[task]] = task.result()
            except PeerError as exc:
                errors.append(str(exc))
        if len(got) == len(wanted):
            joined = b"".join(got[i] for i in wanted)
            return joined[low - first * size : high - first * size]
        head_start = _HeadStart(got, {t: tasks[t] for t in running}, errors, set(wanted))
        return (await self.read_segment(segment, holders, head_start))[low:high]

    async def read_segment(
        self, segment: SegmentPlan, holders: list[bytes], head_start: _HeadStart | None = None
    ) -> bytes:
        """The padded segment, from any k good fragments (decoding only when needed).

        Raises:
            NotEnoughFragments: fewer than k fragments could be had; the message lists why.
        """
        k = self.layout.data_shards
        race = _FragmentRace(
            await self._fetcher(segment, holders),  # endpoints read before the hedge clocks start
            self._candidates(holders),
            k,
            self._hedge_after_s,
            self._max_in_flight,
            self._metrics,
            head_start,
        )
        try:
            fragments = await race.run()
        except NotEnoughFragments as exc:
            raise NotEnoughFragments(f"segment {segment.index}: {exc}") from exc
        if all(i in fragments for i in range(k)):
            return b"".join(fragments[i] for i in range(k))
        self._metrics.decodes.inc()
        return await asyncio.to_thread(decode_segment, fragments, segment, self.layout)

    async def _fetcher(
        self, segment: SegmentPlan, holders: list[bytes]
    ) -> Callable[[int], Coroutine[Any, Any, bytes]]:
        endpoints = await self._miners.endpoints(holders)

        async def fetch(index: int) -> bytes:
            return await self._fetch(segment, index, holders[index], endpoints.get(holders[index]))

        return fetch

    def _candidates(self, holders: list[bytes]) -> list[int]:
        """Fragment indices in the order to try: data first, recently failed miners last."""
        k = self.layout.data_shards
        return sorted(
            range(len(holders)), key=lambda i: (self._miners.is_suspect(holders[i]), i >= k, i)
        )

    async def _fetch(
        self, segment: SegmentPlan, index: int, miner: bytes, endpoint: str | None
    ) -> bytes:
        try:
            data = await self._fetch_checked(segment, index, miner, endpoint)
        except PeerError:
            self._miners.mark_failed(miner)
            self._metrics.fragment_failures.inc()
            raise
        self._miners.mark_ok(miner)
        return data

    async def _fetch_checked(
        self, segment: SegmentPlan, index: int, miner: bytes, endpoint: str | None
    ) -> bytes:
        what = f"fragment {index} from {address_of(miner)}"
        if endpoint is None:
            raise PeerError(f"{what}: the miner has no endpoint on chain")
        return await self._fragments.fragment(
            endpoint,
            segment.fragment_hashes[index],
            self.layout.fragment_size(segment),
            self._reason,
            what=what,
            http_timeout_s=self._timeout_s,
        )
