"""The miner's chain follower: settles temporary fragments as their deals end.

    deal.success  -> the fragments the file record says this miner holds move to the permanent
                     area; the others (placed elsewhere after a reassignment) are deleted
    deal.failed   -> the fid's temporary fragments are deleted
    file.deleted  -> the fid's permanent fragments are deleted
    restoral.completed (former = this miner) -> that fragment's place here is deleted: another
                     miner holds it now
    audit.round, restoral.order, restoral.expired -> the listeners are told (the prover and
                     the repairer wake up; they read what to do from the chain themselves)

Invariants:

* Blocks are handled in order, each completely, before ``<data_dir>/cursor`` (the last handled
  height) is written atomically; a restarted miner goes on from there and never skips a block.
  A fresh miner starts at the chain's height when it first starts: it held nothing before.
* Acting twice on an event changes nothing, so a block interrupted by a crash or a chain error
  is simply handled again (errors are retried with backoff, the cursor stays behind).
* A deal event acts only when the fid's fragments were last received for that deal: after a
  FAILED deal, a new deal of the same fid may already have placed fragments here.
* Every ``sweep_every_blocks`` (and at start) temporary fragments whose deal is neither in
  progress nor SUCCESS are deleted, whatever events were seen: the deadline rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import TypeVar

from deoss.chain.modules.deals import DealState
from deoss.chain.types import Event
from deoss.client.chain_types import FollowedBlock
from deoss.client.errors import ClientError
from deoss.services.common.app import log_event
from deoss.services.common.cursor import BlockCursor, block_events
from deoss.services.common.errors import ServiceUnavailable, UpstreamFailed
from deoss.services.miner.service import ROLE, MinerService
from deoss.services.miner.store import Area

__all__ = ["ChainFollower", "block_events"]

T = TypeVar("T")
SWEEP_EVERY_BLOCKS = 10
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
IN_PROGRESS = (DealState.OPEN, DealState.ASSIGNED)


class ChainFollower:
    """Follows the chain for one miner (``run`` is a background task of the service)."""

    def __init__(
        self,
        service: MinerService,
        cursor_path: Path,
        *,
        sweep_every_blocks: int = SWEEP_EVERY_BLOCKS,
        retry_first_s: float = RETRY_FIRST_S,
        listeners: Mapping[str, Callable[[], None]] | None = None,
    ) -> None:
        self.service = service
        self.store = service.store
        self.view = service.view
        self.cursor = BlockCursor(cursor_path)
        self.sweep_every_blocks = sweep_every_blocks
        self.retry_first_s = retry_first_s
        self.listeners = dict(listeners or {})

    # --- the cursor ------------------------------------------------------------------------

    async def ensure_cursor(self) -> int:
        """The last handled height; a fresh miner starts at the chain's current height."""
        return await self.cursor.ensure(self._chain_height)

    async def _chain_height(self) -> int:
        return (await self.service.chain.status()).height

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the chain from the cursor on, forever."""
        start = await self._retrying(self.ensure_cursor) + 1
        await self._retrying(self.sweep)
        self.service.followed_height = start - 1
        async with aclosing(self.service.chain.follow(start)) as blocks:
            async for block in blocks:
                await self._retrying(partial(self.handle_block, block))
                await self.cursor.advance(block.height)
                self.service.followed_height = block.height

    async def handle_block(self, block: FollowedBlock) -> None:
        for event in block_events(block):
            await self.handle_event(event, block.height)
        if block.height % self.sweep_every_blocks == 0:
            await self.sweep()

    async def handle_event(self, event: Event, height: int) -> None:
        listener = self.listeners.get(event.type)
        if listener is not None:
            listener()
        fid = event.get("fid")
        if fid is None:
            return
        deal_id = _int_or_none(event.get("id"))
        if event.type == "deal.success":
            await self.settle_success(fid, deal_id, height)
        elif event.type == "deal.failed":
            await self.settle_failed(fid, deal_id, height, reason=event.get("reason") or "")
        elif event.type == "file.deleted":
            await self.settle_deleted(fid, height)
        elif event.type == "restoral.completed" and event.get("former") == self.service.key.address:
            await self.settle_moved(fid, event, height)

    async def _retrying(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` until it gets past chain errors (it is idempotent)."""
        delay_s = self.retry_first_s
        while True:
            try:
                return await action()
            except (ClientError, ServiceUnavailable, UpstreamFailed) as exc:
                log_event(ROLE, "follower_retry", error=str(exc), retry_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_MAX_S)

    # --- settling --------------------------------------------------------------------------

    async def _is_for_other_deal(self, fid: str, deal_id: int | None) -> bool:
        noted = await asyncio.to_thread(self.store.deal_of, fid)
        return deal_id is not None and noted is not None and noted != deal_id

    async def settle_success(self, fid: str, deal_id: int | None, height: int) -> None:
        """Keep (permanently) the fragments the file record places here; drop the rest."""
        places = await asyncio.to_thread(self.store.places_for_fid, fid)
        temporary = [p for p in places if p.area == Area.TEMP]
        if not temporary or await self._is_for_other_deal(fid, deal_id):
            return
        record = await self.view.file(fid)
        me = self.service.key.public_key
        mine: set[tuple[int, int]] = set()
        if record is not None:
            for segment, row in zip(record.segments, record.holders, strict=True):
                mine.update((segment.index, j) for j, holder in enumerate(row) if holder == me)
        promoted = 0
        for place in temporary:
            if (place.segment, place.fragment) in mine:
                await asyncio.to_thread(self.store.promote_place, place)
                promoted += 1
            else:
                await asyncio.to_thread(self.store.remove_place, place)
        await asyncio.to_thread(self.store.forget_deal, fid)
        log_event(
            ROLE,
            "deal.success",
            fid=fid,
            deal=deal_id,
            height=height,
            promoted=promoted,
            dropped=len(temporary) - promoted,
        )

    async def settle_failed(self, fid: str, deal_id: int | None, height: int, reason: str) -> None:
        """Delete the fid's temporary fragments (unless a newer deal of the fid placed them)."""
        if await self._is_for_other_deal(fid, deal_id):
            return
        removed = await asyncio.to_thread(self.store.remove_fid, fid, Area.TEMP)
        await asyncio.to_thread(self.store.forget_deal, fid)
        if removed:
            log_event(
                ROLE,
                "deal.failed",
                fid=fid,
                deal=deal_id,
                height=height,
                removed=removed,
                reason=reason,
            )

    async def settle_deleted(self, fid: str, height: int) -> None:
        """Delete the fid's permanent fragments. Temporary ones stay: only a new deal of the
        same fid, declared after the deletion, can have placed them."""
        removed = await asyncio.to_thread(self.store.remove_fid, fid, Area.PERM)
        if removed:
            log_event(ROLE, "file.deleted", fid=fid, height=height, removed=removed)

    async def settle_moved(self, fid: str, event: Event, height: int) -> None:
        """Restoral moved one of this miner's fragments to another miner: drop the place."""
        segment, fragment = _int_or_none(event.get("segment")), _int_or_none(event.get("fragment"))
        for place in await asyncio.to_thread(self.store.places_for_fid, fid):
            if (place.segment, place.fragment) == (segment, fragment):
                await asyncio.to_thread(self.store.remove_place, place)
                log_event(
                    ROLE,
                    "fragment_moved",
                    fid=fid,
                    segment=segment,
                    fragment=fragment,
                    to=event.get("miner"),
                    height=height,
                )

    async def sweep(self) -> None:
        """Settle temporary fragments whose deal ended without an event acted on."""
        for fid, deal_id in await asyncio.to_thread(self.store.pending_deals):
            deal = await self.view.deal_or_none(deal_id) if deal_id >= 0 else None
            if deal is not None and deal.fid == fid and deal.state in IN_PROGRESS:
                continue
            height = self.service.followed_height
            if deal is not None and deal.fid == fid and deal.state == DealState.SUCCESS:
                await self.settle_success(fid, deal_id, height)
            else:
                await self.settle_failed(fid, None, height, reason="swept: deal ended")


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None
