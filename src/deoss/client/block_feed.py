"""BlockFeed: committed blocks pushed by the node over /websocket, so followers need not poll.

One websocket per ChainClient subscribes to ``tm.event='NewBlock'``. Each event carries the
block and its FinalizeBlock results (CometBFT v0.38 and the embedded node send the same shape),
which is everything ``ChainClient.follow`` would otherwise read with ``status``, ``block`` and
``block_results`` requests, about twenty times a second per follower. Without the feed an idle
local network of 16 processes spent most of a core on those polls.

The feed only speeds following up; it is never trusted to be complete. ``follow`` takes a
block from it when the feed has that height and reads the node over HTTP otherwise: before the
subscription is live, for heights committed before it, after a gap, and whenever the socket is
down. The feed reconnects with backoff for as long as it is open. Given several nodes' URLs
it connects to the next one each time a connection ends (the node died, or refused), so the
feed fails over as the ChainClient's requests do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from deoss.client.chain_types import FollowedBlock, read_new_block
from deoss.client.errors import BadResponse

__all__ = ["BlockFeed", "websocket_url"]

log = logging.getLogger(__name__)

NEW_BLOCK_QUERY = "tm.event='NewBlock'"
KEEP_BLOCKS = 64  # recent blocks kept for followers a little behind the newest
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one NewBlock event; a larger one drops the socket
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0


def websocket_url(node_url: str) -> str:
    """The node's /websocket endpoint for its HTTP RPC URL (http -> ws, https -> wss)."""
    url = httpx.URL(node_url)
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme)
    if scheme is None:
        raise ValueError(f"node URL {node_url!r} is not http or https")
    return str(url.copy_with(scheme=scheme, path=url.path.rstrip("/") + "/websocket"))


class _SubscriptionFailed(Exception):
    """The node refused the subscription or dropped it (a JSON-RPC error on the socket)."""


class BlockFeed:
    """The newest blocks the node pushed, and a way to wait for the next one."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        """``urls``: the /websocket endpoint of one node, or of several (tried in turn)."""
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("a block feed needs at least one websocket URL")
        self._current = 0
        self.latest = 0  # the highest height the feed delivered (0: none yet)
        self._blocks: dict[int, FollowedBlock] = {}
        self._live = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        """The endpoint the feed is connected (or connecting) to."""
        return self.urls[self._current]

    @property
    def live(self) -> bool:
        """Subscribed now: every block committed from here on will arrive."""
        return self._live

    def start(self) -> None:
        """Connect in the background (idempotent; needs a running event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="deoss-block-feed")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._set_live(False)

    def get(self, height: int) -> FollowedBlock | None:
        return self._blocks.get(height)

    async def wait_for(self, height: int, timeout_s: float) -> bool:
        """Wait until the feed delivered ``height``; False on timeout or once the feed is down."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.latest < height:
            remaining = deadline - loop.time()
            if not self._live or remaining <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    # --- the connection ------------------------------------------------------------------

    async def _run(self) -> None:
        delay_s = RETRY_FIRST_S
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, WebSocketException, TimeoutError) as exc:
                log.debug("block feed %s: %r", self.url, exc)
            except (_SubscriptionFailed, BadResponse, msgspec.DecodeError) as exc:
                log.warning("block feed %s: %s", self.url, exc)
            else:
                delay_s = RETRY_FIRST_S  # a clean close: reconnect soon
            self._set_live(False)
            self._current = (self._current + 1) % len(self.urls)  # the next node, if several
            if self._current == 0 or len(self.urls) == 1:  # a whole round failed: back off
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_MAX_S)

    async def _session(self) -> None:
        """One connection: subscribe, then hand every NewBlock to the followers."""
        async with connect(
            self.url, max_size=MAX_MESSAGE_BYTES, open_timeout=10, compression=None
        ) as socket:  # no compression: blocks are small, and deflate costs both ends CPU
            sub_id = next(self._ids)
            request = {
                "jsonrpc": "2.0",
                "id": sub_id,
                "method": "subscribe",
                "params": {"query": NEW_BLOCK_QUERY},
            }
            await socket.send(msgspec.json.encode(request).decode())
            async for message in socket:
                result = _result_of(msgspec.json.decode(message), sub_id)
                if result is None:
                    continue
                data = result.get("data")
                if not data:  # the subscribe call's own (empty) answer
                    self._set_live(True)
                    continue
                if data.get("type") == "tendermint/event/NewBlock":
                    self._deliver(read_new_block(data.get("value") or {}))

    def _deliver(self, block: FollowedBlock) -> None:
        self._blocks[block.height] = block
        self.latest = max(self.latest, block.height)
        for old in [h for h in self._blocks if h <= self.latest - KEEP_BLOCKS]:
            del self._blocks[old]
        self._notify()

    def _set_live(self, live: bool) -> None:
        if self._live != live:
            self._live = live
            self._notify()  # waiters re-check: a feed going down sends them back to HTTP

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def _result_of(document: Any, sub_id: int) -> dict[str, Any] | None:
    """The result of a message for our subscription; raises on an error for it."""
    if not isinstance(document, dict) or document.get("id") not in (sub_id, f"{sub_id}#event"):
        return None  # (older Tendermint tagged event ids "<id>#event")
    if "error" in document:
        error = document["error"] or {}
        raise _SubscriptionFailed(
            f"{error.get('message', 'error')} {error.get('data', '')}".strip()
        )
    result = document.get("result")
    return result if isinstance(result, dict) else None
