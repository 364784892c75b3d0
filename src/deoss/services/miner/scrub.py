"""Scrubbing: re-reading every stored fragment in the background to find losses early.

A pass reads each permanent fragment once (a hash shared by several places once), at no more
than ``rate_bytes_per_s``, and checks its SHA-256 against its name. A fragment that is missing,
unreadable or corrupted is reported lost for every place it serves (``restoral.report_loss``),
which opens restoral orders, and then dropped from the store so it is never served or proven.
Between passes the scrubber pauses ``pause_s``. A rate of 0 turns scrubbing off.

Temporary fragments are not scrubbed: their deal is still in progress and no chain record
names this miner their holder yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass

from deoss.client.errors import ClientError
from deoss.services.common.app import log_event
from deoss.services.miner.prover import report_loss
from deoss.services.miner.service import ROLE, MinerService
from deoss.services.miner.store import Area, FragmentPlace, FragmentStore, StoreError

__all__ = ["Scrubber", "ScrubStats", "fragment_intact"]

CHUNK = 1024 * 1024
DEFAULT_RATE = 8 * 1024 * 1024
DEFAULT_PAUSE_S = 3600.0


@dataclass
class ScrubStats:
    passes: int = 0
    fragments_checked: int = 0
    bytes_checked: int = 0
    losses_found: int = 0


class _Throttle:
    """Sleeps the calling (worker) thread so reads average at most ``rate`` bytes/s."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0

    def consumed(self, n: int) -> None:
        self.done += n
        ahead = self.done / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


def fragment_intact(
    store: FragmentStore,
    fragment_hash: bytes,
    throttle: _Throttle | None = None,
    stop: threading.Event | None = None,
) -> bool:
    """The fragment's bytes are here and hash to its name."""
    digest = hashlib.sha256()
    try:
        with store.open_fragment(fragment_hash) as (handle, size):
            total = 0
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                total += len(chunk)
                if throttle is not None:
                    throttle.consumed(len(chunk))
                if stop is not None and stop.is_set():
                    return True  # interrupted: no verdict, assume intact
    except (StoreError, OSError):
        return False
    return total == size and digest.digest() == fragment_hash


class Scrubber:
    """Checks stored fragments at a bounded rate (``run`` is a background task of the miner)."""

    def __init__(
        self,
        service: MinerService,
        *,
        rate_bytes_per_s: int = DEFAULT_RATE,
        pause_s: float = DEFAULT_PAUSE_S,
    ) -> None:
        self.service = service
        self.store = service.store
        self.rate = rate_bytes_per_s
        self.pause_s = pause_s
        self.stats = ScrubStats()
        self._stop = threading.Event()

    async def run(self) -> None:
        if self.rate <= 0:
            return  # scrubbing disabled in the config
        try:
            while True:
                try:
                    await self.scrub_pass()
                except ClientError as exc:
                    log_event(ROLE, "scrub_retry", error=str(exc))
                await asyncio.sleep(self.pause_s)
        finally:
            self._stop.set()  # a worker thread mid-read stops at its next chunk

    async def scrub_pass(self) -> int:
        """Check every permanent fragment once; returns how many were found lost."""
        places = await asyncio.to_thread(lambda: list(self.store.all_places()))
        by_hash: dict[bytes, list[FragmentPlace]] = {}
        for place in places:
            if place.area == Area.PERM:
                by_hash.setdefault(place.fragment_hash, []).append(place)
        throttle = _Throttle(self.rate)
        lost = 0
        for fragment_hash, held in by_hash.items():
            intact = await asyncio.to_thread(
                fragment_intact, self.store, fragment_hash, throttle, self._stop
            )
            self.stats.fragments_checked += 1
            self.stats.bytes_checked += held[0].size
            if not intact:
                lost += 1
                await self._handle_loss(fragment_hash, held)
        self.stats.passes += 1
        self.stats.losses_found += lost
        log_event(ROLE, "scrub_pass", fragments=len(by_hash), lost=lost)
        return lost

    async def _handle_loss(self, fragment_hash: bytes, held: list[FragmentPlace]) -> None:
        """Report every place the bad fragment serves, then drop it."""
        for place in held:
            await report_loss(self.service, place.fid, place.segment, place.fragment)
        for place in held:
            await asyncio.to_thread(self.store.remove_place, place)
        log_event(ROLE, "scrub_loss", fragment=fragment_hash.hex(), places=len(held))
