"""Miner endpoints for the download path (``/miners/list``, cached) and which miners failed
recently: a dead miner costs one failure per ``SUSPECT_S``, not one per segment."""

from __future__ import annotations

import asyncio
import time

from deoss.client.chain import ChainClient
from deoss.core.keys import parse_address

__all__ = ["MinerBook"]

REFRESH_S = 10.0  # miner endpoints are read again after this long
MIN_REFRESH_S = 1.0  # ...or when an unknown miner shows up, at most this often
SUSPECT_S = 30.0  # a miner that failed is tried last for this long


class MinerBook:
    """Miner endpoints (``/miners/list``, cached) and which miners failed recently."""

    def __init__(self, chain: ChainClient) -> None:
        self._chain = chain
        self._endpoints: dict[bytes, str] = {}
        self._loaded_at = float("-inf")
        self._failed_at: dict[bytes, float] = {}
        self._lock = asyncio.Lock()

    async def endpoints(self, miners: list[bytes]) -> dict[bytes, str]:
        """The endpoints of ``miners`` that are known (read from the chain when stale)."""
        age = time.monotonic() - self._loaded_at
        unknown = any(m not in self._endpoints for m in miners)
        if age > REFRESH_S or (unknown and age > MIN_REFRESH_S):
            await self._refresh()
        return {m: self._endpoints[m] for m in miners if m in self._endpoints}

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at <= MIN_REFRESH_S:
                return  # someone else just did
            entries = await self._chain.reads.miners()
            self._endpoints = {
                parse_address(e.address): e.miner.endpoint.rstrip("/") for e in entries
            }
            self._loaded_at = time.monotonic()

    def mark_failed(self, miner: bytes) -> None:
        self._failed_at[miner] = time.monotonic()

    def mark_ok(self, miner: bytes) -> None:
        self._failed_at.pop(miner, None)

    def is_suspect(self, miner: bytes) -> bool:
        failed = self._failed_at.get(miner)
        return failed is not None and time.monotonic() - failed < SUSPECT_S
