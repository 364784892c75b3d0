"""Repair (DESIGN 3, restoral): claim open orders, rebuild the lost fragment, take its place.

The repairer wakes on ``restoral.order`` and ``restoral.expired`` events and every ``poll_s``
anyway. It first resumes the orders the chain says this miner claimed (a restart loses none),
then, while this miner is ACTIVE with the stake its capacity requires, has free repair slots
and idle capacity, claims open orders for segments it holds no fragment of. For each claimed
order:

    the exact fragment from an exiting former holder, if it still serves it; otherwise k other
    fragments of the segment from their holders (data fragments first, each hash-checked)
    -> rebuild (core.layout.rebuild_fragment checks the result against the declared hash)
    -> store it in the permanent area -> if the file is tagged, its tags: copied from the
    exiting former holder, else from a mirror copy another holder of the segment keeps
    (``GET /mirror-tags/{hash}?order=``), else from the file's tagger
    (``PUT /tags/{hash}?order=``), each checked against the fragment in one batch
    -> ``restoral.complete`` naming the tag key (the chain takes it as this holder's tag
    confirmation)

The tag public key is read by the file's tag key id (``/schedulers/tag_key``), not through
the tagger: a tagger gone for good leaves its key on chain, and its files are repaired from
the mirrors without it.

Invariants:

* The fragment is stored (fsynced) and its tags too before ``restoral.complete`` is sent, so the
  chain never names this miner the holder of bytes it does not have.
* If the chain refuses the completion (expired and taken by another, file deleted), the stored
  place is removed again; nothing the chain does not place here is kept.
* An order that fails is retried while the claim lasts, at most every ``retry_s``; after the
  claim deadline the chain opens the order again for anyone.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.miners import MinerState, accepts_fragments
from deoss.chain.modules.restoral import ClaimOrder, CompleteOrder, Order, OrderState
from deoss.chain.query import MAX_PAGE
from deoss.client.errors import ClientError, TxRefused
from deoss.core.errors import BadProof, DataPathError
from deoss.core.keys import address_of
from deoss.core.layout import rebuild_fragment
from deoss.core.podr2 import TAG_BYTES, TagPublicKey, block_count, check_tags
from deoss.services.common.app import log_event
from deoss.services.common.supervise import wait_woken
from deoss.services.miner.mirrors import tags_from_mirrors
from deoss.services.miner.peers import PeerError, Peers
from deoss.services.miner.service import ROLE, MinerService
from deoss.services.miner.store import Area, FragmentPlace

__all__ = ["RepairStats", "Repairer"]

DEFAULT_POLL_S = 5.0
DEFAULT_SLOTS = 2
RETRY_S = 10.0


@dataclass
class RepairStats:
    repaired: int = 0
    failed_attempts: int = 0
    bytes_fetched: int = 0
    bytes_rebuilt: int = 0
    tags_copied: int = 0  # from an exiting former holder instead of a scheduler
    tags_mirrored: int = 0  # from another holder's mirror copy instead of a scheduler


class RepairFailed(Exception):
    """One attempt at an order failed; it may pass later. The message says why."""


class Repairer:
    """Claims and completes restoral orders (``run`` is a background task of the miner)."""

    def __init__(
        self,
        service: MinerService,
        peers: Peers,
        *,
        slots: int = DEFAULT_SLOTS,
        poll_s: float = DEFAULT_POLL_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.service = service
        self.store = service.store
        self.peers = peers
        self.slots = slots
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.stats = RepairStats()
        self._active: dict[int, asyncio.Task[None]] = {}
        self._last_try: dict[int, float] = {}
        self._wake = asyncio.Event()

    @property
    def me(self) -> bytes:
        return self.service.key.public_key

    def wake(self) -> None:
        self._wake.set()

    def active(self) -> int:
        return sum(1 for task in self._active.values() if not task.done())

    async def run(self) -> None:
        if self.slots <= 0:
            return  # repair disabled in the config
        try:
            while True:
                try:
                    await self.scan()
                except (ClientError, PeerError) as exc:
                    log_event(ROLE, "repair_scan_retry", error=str(exc))
                await wait_woken(self._wake, self.poll_s)
        finally:
            for task in self._active.values():
                task.cancel()
            await asyncio.gather(*self._active.values(), return_exceptions=True)

    async def scan(self) -> None:
        """Resume this miner's claims, then claim open orders while there is room."""
        self._active = {i: t for i, t in self._active.items() if not t.done()}
        orders = await self._orders()
        for order in orders:
            if order.state == OrderState.CLAIMED and order.claimer == self.me:
                self._start(order)
        miner = await self.service.view.miner(self.me)
        if miner is None or not accepts_fragments(miner, await self.service.view.params()):
            return  # FAULTY, EXITING, or slashed under its required stake: claims are refused
        idle = miner.idle_bytes
        for order in orders:
            if self.active() >= self.slots:
                return
            if order.state != OrderState.OPEN or order.size > idle or order.former == self.me:
                continue
            record = await self.service.view.file(order.fid)
            if record is None or self.me in record.holders[order.segment]:
                continue
            try:
                outcome = await self.service.chain.submit(
                    self.service.key, ClaimOrder(order_id=order.id)
                )
            except TxRefused as exc:
                log_event(ROLE, "claim_refused", order=order.id, why=str(exc))
                continue
            idle -= order.size
            log_event(ROLE, "order_claimed", order=order.id, fid=order.fid, height=outcome.height)
            self._start(order)

    def _start(self, order: Order) -> None:
        running = self._active.get(order.id)
        if running is not None and not running.done():
            return
        if time.monotonic() - self._last_try.get(order.id, -self.retry_s) < self.retry_s:
            return
        self._last_try[order.id] = time.monotonic()
        self._active[order.id] = asyncio.create_task(self._attempt(order))

    async def _attempt(self, order: Order) -> None:
        started = time.perf_counter()
        try:
            phases = await self.repair(order)
        except (RepairFailed, PeerError, DataPathError, ClientError, OSError) as exc:
            self.stats.failed_attempts += 1
            log_event(ROLE, "repair_retry", order=order.id, why=f"{type(exc).__name__}: {exc}")
            return
        self._last_try.pop(order.id, None)
        log_event(
            ROLE,
            "repair_completed",
            order=order.id,
            fid=order.fid,
            segment=order.segment,
            fragment=order.fragment,
            seconds=round(time.perf_counter() - started, 3),
            **{f"{name}_s": round(spent, 3) for name, spent in phases.items()},
        )

    # --- one order -------------------------------------------------------------------------

    async def repair(self, order: Order) -> dict[str, float]:
        """Rebuild, store, tag and complete one claimed order; returns the seconds each phase
        took (``obtain``: copy or fetch and rebuild, ``store``, ``tags``, ``complete``).

        Raises:
            RepairFailed, PeerError, ClientError: a step that may pass on a later try.
        """
        record = await self.service.view.file(order.fid)
        if record is None:
            raise RepairFailed(f"file {order.fid} is gone")
        place = FragmentPlace(
            order.fragment_hash, order.fid, order.segment, order.fragment, Area.PERM, order.size
        )
        phases: dict[str, float] = {}
        mark = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            phases[name] = now - mark
            mark = now

        if not await asyncio.to_thread(self._holds, place):
            data = await self._obtain(order, record)
            lap("obtain")
            await asyncio.to_thread(self.store.put_fragment, place, [data])
            lap("store")
            self.stats.bytes_rebuilt += len(data)
        if record.tagged and not await asyncio.to_thread(
            self.store.has_tags, order.fragment_hash, record.tag_key_id
        ):
            await self._obtain_tags(order, record)
            lap("tags")
        # tags stored here were checked against the fragment: completing confirms them
        complete = CompleteOrder(
            order_id=order.id,
            fragment_hash=order.fragment_hash,
            tag_key_id=record.tag_key_id if record.tagged else b"",
        )
        try:
            await self.service.chain.submit(self.service.key, complete)
        except TxRefused as exc:
            current = await self._order(order.id)
            if current is None or current.claimer != self.me:
                await asyncio.to_thread(self.store.remove_place, place)  # not ours to keep
            raise RepairFailed(f"completion refused: {exc}") from exc
        lap("complete")
        self.stats.repaired += 1
        return phases

    def _holds(self, place: FragmentPlace) -> bool:
        return any(
            (p.fid, p.segment, p.fragment) == (place.fid, place.segment, place.fragment)
            for p in self.store.places_of(place.fragment_hash)
        ) and self.store.has_fragment(place.fragment_hash)

    async def _obtain(self, order: Order, record: FileRecord) -> bytes:
        """The lost fragment's bytes: copied from an exiting former holder, else rebuilt."""
        endpoints = await self.peers.miner_endpoints()
        endpoint = await self._exiting_former(order, endpoints)
        if endpoint is not None:
            try:
                data = await self.peers.fetch_fragment(
                    endpoint, order.fragment_hash, order.size, order.id
                )
            except PeerError as exc:
                log_event(ROLE, "repair_copy_failed", order=order.id, why=str(exc))
            else:
                self.stats.bytes_fetched += len(data)
                return data
        return await self._rebuild(order, record, endpoints)

    async def _exiting_former(self, order: Order, endpoints: dict[bytes, str]) -> str | None:
        """The endpoint of the order's former holder if it is EXITING (it still serves what it
        holds, so its copy saves a rebuild or a tagging), else None."""
        former = await self.service.view.miner(order.former)
        if former is None or former.state != MinerState.EXITING:
            return None
        return endpoints.get(order.former)

    async def _rebuild(
        self, order: Order, record: FileRecord, endpoints: dict[bytes, str]
    ) -> bytes:
        params = (await self.service.view.params()).layout
        plan = record.segments[order.segment]
        holders = record.holders[order.segment]
        size = params.fragment_size(plan)
        # data fragments first: decoding from them is the cheapest
        candidates = [
            (index, holder)
            for index, holder in enumerate(holders)
            if index != order.fragment and holder != order.former
        ]
        fragments: dict[int, bytes] = {}
        failures: list[str] = []
        while len(fragments) < params.data_shards and candidates:
            wanted = params.data_shards - len(fragments)
            batch, candidates = candidates[:wanted], candidates[wanted:]
            results = await asyncio.gather(
                *(
                    self._fetch(order.id, plan.fragment_hashes[i], size, endpoints.get(h))
                    for i, h in batch
                ),
                return_exceptions=True,
            )
            for (index, holder), result in zip(batch, results, strict=True):
                if isinstance(result, bytes):
                    fragments[index] = result
                    self.stats.bytes_fetched += len(result)
                elif isinstance(result, PeerError):
                    failures.append(f"{address_of(holder)[:16]}…: {result}")
                else:
                    raise result
        if len(fragments) < params.data_shards:
            raise RepairFailed(
                f"only {len(fragments)} of {params.data_shards} fragments of segment "
                f"{order.segment} could be fetched: {'; '.join(failures[:3])}"
            )
        rebuilt = await asyncio.to_thread(rebuild_fragment, fragments, order.fragment, plan, params)
        if len(rebuilt) != order.size:
            raise RepairFailed(f"rebuilt {len(rebuilt)} bytes, the order says {order.size}")
        return rebuilt

    async def _fetch(
        self, order_id: int, fragment_hash: bytes, size: int, endpoint: str | None
    ) -> bytes:
        if endpoint is None:
            raise PeerError("the holder is not a registered miner")
        return await self.peers.fetch_fragment(endpoint, fragment_hash, size, order_id)

    async def _obtain_tags(self, order: Order, record: FileRecord) -> None:
        """The fragment's tags, checked against it before they are kept: copied from an exiting
        former holder if it still serves them, else from a mirror copy kept by another holder
        of the segment (neither needs tagging), else computed by the file's tagger. Tags that
        do not verify would make this miner's proofs fail, so they are never stored: a bad
        copy falls back to the next source, bad tags from the tagger fail the attempt.
        """
        data = await asyncio.to_thread(self.store.read_range, order.fragment_hash, 0, order.size)
        public = await self._tag_public_key(record)
        expected = block_count(order.size, public.sectors_per_block) * TAG_BYTES
        endpoint = await self._exiting_former(order, await self.peers.miner_endpoints())
        if endpoint is not None:
            try:
                tags = await self.peers.fetch_tags(
                    endpoint, order.fragment_hash, public.key_id, expected, order.id
                )
                await asyncio.to_thread(
                    check_tags, public, order.fragment_hash, data, tags, os.urandom(32)
                )
            except (PeerError, BadProof) as exc:
                log_event(ROLE, "repair_tags_copy_failed", order=order.id, why=str(exc))
            else:
                await asyncio.to_thread(
                    self.store.put_tags, order.fragment_hash, public.key_id, tags
                )
                self.stats.tags_copied += 1
                return
        mirrored = await tags_from_mirrors(
            self.peers,
            record,
            order.segment,
            order.fragment,
            data,
            public,
            skip={order.former, self.me},
            order_id=order.id,
        )
        if mirrored is not None:
            await asyncio.to_thread(
                self.store.put_tags, order.fragment_hash, public.key_id, mirrored
            )
            self.stats.tags_mirrored += 1
            log_event(ROLE, "repair_tags_mirrored", order=order.id, fid=order.fid)
            return
        endpoint = await self.peers.scheduler_endpoint(record.tagger)
        tags = await self.peers.request_tags(
            endpoint,
            order.fid,
            order.fragment_hash,
            data,
            public.sectors_per_block,
            order_id=order.id,
        )
        try:
            await asyncio.to_thread(
                check_tags, public, order.fragment_hash, data, tags, os.urandom(32)
            )
        except BadProof as exc:
            raise RepairFailed(f"the tagger's tags do not verify: {exc}") from exc
        await asyncio.to_thread(self.store.put_tags, order.fragment_hash, public.key_id, tags)

    async def _tag_public_key(self, record: FileRecord) -> TagPublicKey:
        """The public key that tagged the file, by its id (the tagger may be gone)."""
        public = await self.service.view.tag_key(record.tag_key_id)
        if public is None:
            raise RepairFailed(
                f"the key {record.tag_key_id.hex()} that tagged {record.fid} is not on chain"
            )
        return public

    # --- chain reads -----------------------------------------------------------------------

    async def _orders(self) -> list[Order]:
        """Every restoral order, page by page."""
        out: list[Order] = []
        next_id = 0
        while True:
            page = await self.service.chain.reads.orders(next_id, MAX_PAGE)
            out.extend(page)
            if len(page) < MAX_PAGE:
                return out
            next_id = page[-1].id + 1

    async def _order(self, order_id: int) -> Order | None:
        return await self.service.chain.reads.order(order_id)
