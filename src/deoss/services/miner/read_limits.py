"""Per-reader rate limits on what a miner serves (fragments, ranges, tags).

A read with a confirmed reason still costs the miner disk and bandwidth, and a miner that keeps
only its tags would answer challenges by reading its neighbours' copies (docs/podr2.md,
"Outsourcing"): each reader (signing key) gets a token bucket of requests per second and one of
bytes per second. Restorers and taggers (reasons ``restoral`` and ``tagging``) draw on a
separate, larger budget: they read whole fragments in bulk for the network's sake.

Invariants: a refused read costs nothing and changes no bucket; memory is bounded (at most
``max_readers`` readers are remembered, the least recently seen forgotten first, which only
ever hands a forgotten reader a full bucket again); the clock is injected for tests.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from deoss.services.common.errors import TooManyRequests

__all__ = ["BULK_REASONS", "ReadBudget", "ReadLimiter"]

BULK_REASONS = frozenset({"restoral", "tagging"})
BURST_S = 2.0  # a bucket holds this many seconds of its rate
MAX_READERS = 4096


@dataclass(frozen=True)
class ReadBudget:
    """What one reader may read per second (0: unlimited)."""

    requests_per_s: float
    bytes_per_s: float


@dataclass
class _Bucket:
    rate: float
    tokens: float
    updated: float

    @property
    def capacity(self) -> float:
        return self.rate * BURST_S

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` can be taken (0: now). A cost larger than the whole bucket
        passes once the bucket is full, and leaves it in debt."""
        needed = min(cost, self.capacity)
        return 0.0 if self.tokens >= needed else (needed - self.tokens) / self.rate


class ReadLimiter:
    """Token buckets per (reader, budget); ``charge`` takes from them or raises 429."""

    def __init__(
        self,
        normal: ReadBudget,
        bulk: ReadBudget,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_readers: int = MAX_READERS,
    ) -> None:
        self._budgets = {False: normal, True: bulk}
        self._clock = clock
        self._max_readers = max_readers
        self._readers: OrderedDict[tuple[bytes, bool], tuple[_Bucket, _Bucket]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._readers)

    def charge(self, reader: bytes, reason: str, *, requests: int = 0, nbytes: int = 0) -> None:
        """Take ``requests`` and ``nbytes`` from the reader's buckets for ``reason``.

        Raises:
            TooManyRequests: over budget; Retry-After says when it will be within it.
        """
        bulk = reason in BULK_REASONS
        budget = self._budgets[bulk]
        now = self._clock()
        requests_bucket, bytes_bucket = self._buckets((reader, bulk), budget, now)
        waits = []
        for bucket, cost in ((requests_bucket, requests), (bytes_bucket, nbytes)):
            if bucket is not None and cost:
                bucket.refill(now)
                waits.append(bucket.wait_for(cost))
        wait = max(waits, default=0.0)
        if wait > 0:
            kind = "restorer/tagger" if bulk else "reader"
            raise TooManyRequests(
                f"over the {kind} budget of {budget.requests_per_s:g} requests and "
                f"{budget.bytes_per_s:.0f} bytes per second",
                retry_after_s=max(1, math.ceil(wait)),
            )
        for bucket, cost in ((requests_bucket, requests), (bytes_bucket, nbytes)):
            if bucket is not None:
                bucket.tokens -= cost

    def _buckets(
        self, key: tuple[bytes, bool], budget: ReadBudget, now: float
    ) -> tuple[_Bucket | None, _Bucket | None]:
        found = self._readers.get(key)
        if found is None:
            found = (
                _Bucket(budget.requests_per_s, budget.requests_per_s * BURST_S, now),
                _Bucket(budget.bytes_per_s, budget.bytes_per_s * BURST_S, now),
            )
            self._readers[key] = found
            while len(self._readers) > self._max_readers:
                self._readers.popitem(last=False)
        else:
            self._readers.move_to_end(key)
        requests_bucket, bytes_bucket = found
        return (
            requests_bucket if budget.requests_per_s > 0 else None,
            bytes_bucket if budget.bytes_per_s > 0 else None,
        )
