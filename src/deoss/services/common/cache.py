"""A small map whose entries expire, for short-lived chain lookups a service repeats."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TtlCache"]

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small map whose entries expire; enough for short-lived chain lookups."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < self._clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: K, value: V, ttl_s: float) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()  # crude but bounded: the cache only saves queries
        self._entries[key] = (self._clock() + ttl_s, value)
