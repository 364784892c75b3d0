"""A chain follower's block cursor: the last height whose events were fully handled.

    <data_dir>/cursor   "HEIGHT\n", written atomically and durably after each block

On a restart the follower goes on from the block after the cursor, so every event is handled
at least once (handlers are idempotent); on a first start the cursor is set to the chain's
current height, so nothing from before the service existed is replayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from deoss.atomic import write_atomic
from deoss.chain.types import Event
from deoss.client.chain_types import FollowedBlock

__all__ = ["BlockCursor", "CursorError", "block_events"]


class CursorError(ValueError):
    """The cursor file holds something other than a block height."""


def block_events(block: FollowedBlock) -> Iterator[Event]:
    """The events of a block: those of its accepted transactions, then its hooks'."""
    for result in block.tx_results:
        if result.code == 0:
            yield from result.events
    yield from block.events


class BlockCursor:
    """The cursor file at ``path``; blocking reads, the async methods write off the loop."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> int | None:
        """The last height handled, or None before the first start.

        Raises:
            CursorError: the file holds something other than a height.
        """
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise CursorError(f"cursor file {self.path} holds {text[:40]!r}, not a block height")
        return int(text)

    async def advance(self, height: int) -> None:
        """Note ``height`` as fully handled (durably: a restart never goes back past it)."""
        await asyncio.to_thread(write_atomic, self.path, f"{height}\n")

    async def ensure(self, current_height: Callable[[], Awaitable[int]]) -> int:
        """The last height handled; on a first start ``current_height()``, written down."""
        height = await asyncio.to_thread(self.read)
        if height is None:
            height = await current_height()
            await self.advance(height)
        return height
