"""The ledger's key-value state: committed data plus the current block's writes.

Modules store canonical records under prefixed keys (see each module) and read them back
through ``get_record`` / ``put_record``. Iteration is always in key order. Writes of a block
stay in an overlay until ``commit_pending``; a transaction runs inside ``savepoint()`` so a
refused transaction leaves no trace. The node persists ``pending_writes()`` in one database
transaction at commit; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from sortedcontainers import SortedDict

from deoss.core import codec

__all__ = ["State", "get_record", "prefix_end", "put_record"]

R = TypeVar("R")
_ABSENT = object()


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _merge_unique(left: Iterator[bytes], right: list[bytes]) -> Iterator[bytes]:
    """The sorted union of two sorted key sequences, each key once."""
    i = 0
    for key in left:
        while i < len(right) and right[i] < key:
            yield right[i]
            i += 1
        if i < len(right) and right[i] == key:
            i += 1
        yield key
    yield from right[i:]


class State:
    """Committed key-value pairs and an overlay of pending writes (None = deleted)."""

    def __init__(self, committed: Mapping[bytes, bytes] | None = None) -> None:
        self._committed: SortedDict = SortedDict(committed or {})
        self._pending: dict[bytes, bytes | None] = {}
        self._undo: list[dict[bytes, Any]] = []

    def fork(self) -> State:
        """A scratch state over the same committed data (for check_tx); writes stay apart."""
        scratch = State.__new__(State)
        scratch._committed = self._committed
        scratch._pending = {}
        scratch._undo = []
        return scratch

    def get(self, key: bytes) -> bytes | None:
        if key in self._pending:
            return self._pending[key]
        value: bytes | None = self._committed.get(key)
        return value

    def _remember(self, key: bytes) -> None:
        if self._undo and key not in self._undo[-1]:
            self._undo[-1][key] = self._pending.get(key, _ABSENT)

    def put(self, key: bytes, value: bytes) -> None:
        self._remember(key)
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        self._remember(key)
        self._pending[key] = None

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with ``prefix``, in key order (see iter_range)."""
        return self.iter_range(prefix, prefix_end(prefix))

    def iter_range(self, start: bytes, end: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs with ``start <= key < end`` (None: no bound), in key order.

        Lazy: the committed range is walked in place and merged with the block's pending
        writes in the range, so a caller that stops early pays only for what it read
        (block steps stop at the first deadline in the future). The keys are those present
        when iteration starts; each value is read when its key is reached.
        """
        pending = sorted(k for k in self._pending if start <= k and (end is None or k < end))
        committed = self._committed.irange(start, end, inclusive=(True, False))
        for key in _merge_unique(committed, pending):
            value = self.get(key)
            if value is not None:
                yield key, value

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo every write made inside the block if it raises."""
        self._undo.append({})
        try:
            yield
        except BaseException:
            for key, previous in self._undo.pop().items():
                if previous is _ABSENT:
                    self._pending.pop(key, None)
                else:
                    self._pending[key] = previous
            raise
        else:
            done = self._undo.pop()
            if self._undo:  # nested: the outer savepoint must be able to undo these too
                for key, previous in done.items():
                    self._undo[-1].setdefault(key, previous)

    def savepoint_growth(self) -> int:
        """Bytes of state the innermost open savepoint added so far (what state price charges).

        A key that did not exist counts its key and value bytes; a value that grew counts the
        growth; an overwrite of the same or smaller size and a deletion count nothing (and
        refund nothing). Deterministic: it depends only on the values, not on write order.
        """
        if not self._undo:
            raise RuntimeError("savepoint_growth outside a savepoint")
        grown = 0
        for key, previous in self._undo[-1].items():
            before = self._committed.get(key) if previous is _ABSENT else previous
            after = self._pending.get(key)
            if after is None:
                continue
            if before is None:
                grown += len(key) + len(after)
            elif len(after) > len(before):
                grown += len(after) - len(before)
        return grown

    def pending_writes(self) -> list[tuple[bytes, bytes | None]]:
        """The block's writes in key order (None = deleted), for the app hash and the store."""
        return sorted(self._pending.items())

    def commit_pending(self) -> list[tuple[bytes, bytes | None]]:
        """Fold the pending writes into the committed data and return them."""
        writes = self.pending_writes()
        for key, value in writes:
            if value is None:
                self._committed.pop(key, None)
            else:
                self._committed[key] = value
        self._pending = {}
        return writes

    def discard_pending(self) -> None:
        self._pending = {}

    def committed_items(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self._committed.items()


def get_record(state: State, key: bytes, type_: type[R]) -> R | None:
    raw = state.get(key)
    return None if raw is None else codec.decode(raw, type_)


def put_record(state: State, key: bytes, record: Any) -> None:
    state.put(key, codec.encode(record))
