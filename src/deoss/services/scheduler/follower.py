"""The scheduler following the chain: the events it acts on, from a cursor kept on disk.

Events acted on (docs/chain_ledger.md, "Events"):

    deal.success        scheduler = this one   tag job for the fid, with the local segment copies
    file.tag_reassigned tagger = this one      tag job for the fid, fragments fetched from holders
    deal.failed                                forget the deal's local state
    deal.assigned       another scheduler      forget this scheduler's partial work on it
    file.deleted                               cancel the fid's tag job

Invariants: ``<data_dir>/cursor`` holds the last height whose events were all handled (as
the miner's does), written atomically after the block, and a tag job is on disk before that;
so a scheduler that was down catches up from where it stopped and never skips a block. A first
start begins after the chain's current block (nothing earlier can concern it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import aclosing

from deoss.chain.types import Event
from deoss.client.chain_types import FollowedBlock
from deoss.services.common.app import log_event
from deoss.services.common.cursor import BlockCursor, block_events
from deoss.services.scheduler.service import ROLE, SchedulerService

__all__ = ["Follower"]


class Follower:
    """Reads every block from the cursor on and hands the events to the service and tagger."""

    def __init__(self, service: SchedulerService) -> None:
        self.service = service
        self.cursor = BlockCursor(service.settings.cursor_file)
        self._handlers: dict[str, Callable[[Event], Awaitable[None]]] = {
            "deal.success": self._on_deal_success,
            "file.tag_reassigned": self._on_tag_reassigned,
            "deal.failed": self._on_deal_failed,
            "deal.assigned": self._on_deal_assigned,
            "file.deleted": self._on_file_deleted,
        }

    async def prepare(self) -> int:
        """The last height handled; on a first start, the chain's current one (written down)."""
        return await self.cursor.ensure(self._chain_height)

    async def _chain_height(self) -> int:
        return (await self.service.chain.status()).height

    async def run(self) -> None:
        """Follow the chain until cancelled."""
        start = await self.prepare() + 1
        async with aclosing(self.service.chain.follow(start)) as blocks:
            async for block in blocks:
                await self.handle_block(block)

    async def handle_block(self, block: FollowedBlock) -> None:
        for event in block_events(block):
            handler = self._handlers.get(event.type)
            if handler is not None:
                await handler(event)
        await self.cursor.advance(block.height)

    async def _on_deal_success(self, event: Event) -> None:
        if event.get("scheduler") != self.service.address:
            return
        deal_id, fid = int(event.get("id") or -1), event.get("fid") or ""
        log_event(ROLE, "deal.success", deal=deal_id, fid=fid)
        await self.service.tagger.enqueue(fid, deal_id)

    async def _on_tag_reassigned(self, event: Event) -> None:
        if event.get("tagger") != self.service.address:
            return
        fid = event.get("fid") or ""
        log_event(ROLE, "file.tag_reassigned", fid=fid, late=event.get("late"))
        await self.service.tagger.enqueue(fid, None)

    async def _on_deal_failed(self, event: Event) -> None:
        deal_id = int(event.get("id") or -1)
        if self.service.has_deal(deal_id):
            log_event(ROLE, "deal.failed", deal=deal_id, reason=event.get("reason"))
            await self.service.forget_deal(deal_id)

    async def _on_deal_assigned(self, event: Event) -> None:
        deal_id = int(event.get("id") or -1)
        if event.get("scheduler") != self.service.address and self.service.has_deal(deal_id):
            log_event(ROLE, "deal.reassigned_away", deal=deal_id, to=event.get("scheduler"))
            await self.service.forget_deal(deal_id)

    async def _on_file_deleted(self, event: Event) -> None:
        fid = event.get("fid") or ""
        if fid in self.service.tagger.jobs():
            log_event(ROLE, "file.deleted", fid=fid)
            await self.service.tagger.cancel(fid)
