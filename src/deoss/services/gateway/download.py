"""Downloads: the segments covering a byte range, rebuilt from miners' fragments, streamed.

For each needed segment the gateway fetches fragments ``GET {miner}/fragments/{hash}`` (signed
by the gateway's key), data fragments first since the code is systematic: with all k of them
the segment is their concatenation and nothing is decoded. A range that lies in fewer than k
data fragments of a segment fetches only those (each whole: a fragment is checked by its
hash), and falls back to any k fragments when one of them fails or is slow. Invariants:

* Every fragment is checked (size and SHA-256 against the file record on chain) before it is
  used; a bad one counts as a failure and another fragment is fetched instead.
* A fetch that fails, or that is slower than ``hedge_after_s``, makes the race start another
  one (the next candidate), never more than ``max_in_flight`` at once. The first k good
  fragments win; the rest are cancelled.
* Miners that failed recently are tried last (``MinerBook``), so a dead miner costs one
  failure per ``SUSPECT_S``, not one per segment.
* At most two segments are in memory per download: the one being sent and the next one,
  fetched meanwhile. The first segment is fetched before the response starts, so a file that
  cannot be read gives an error status rather than a cut body.

This module streams a download; the fragment race and segment reader are ``segment_reader``,
the miners' endpoints and recent failures ``miner_book``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from deoss.chain.modules.files import FileRecord
from deoss.core.errors import DataPathError
from deoss.core.layout import (
    segment_span,
    segments_for_range,
)
from deoss.services.common.ranges import ByteRange
from deoss.services.gateway.segment_reader import SegmentReader

__all__ = ["ByteRange", "Download", "open_download"]

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Download:
    """What a GET answers: the object's fid and size, the range served, and the bytes."""

    fid: str
    size: int
    byte_range: ByteRange | None
    body: AsyncIterator[bytes]

    @property
    def length(self) -> int:
        return self.byte_range.length if self.byte_range else self.size


async def open_download(
    reader: SegmentReader, record: FileRecord, size: int, byte_range: ByteRange | None
) -> Download:
    """Start streaming ``byte_range`` (or all) of a ``size``-byte object stored as ``record``.

    The first needed segment is read here, so a file that cannot be read raises before any
    byte is sent (NotEnoughFragments: HTTP 503).
    """
    if size == 0:
        return Download(record.fid, 0, None, _empty())
    start, end = (byte_range.start, byte_range.end) if byte_range else (0, size - 1)
    wanted = ByteRange(start, end)
    indices = list(segments_for_range(start, end, size, reader.layout))
    first = await _read_part(reader, record, size, indices[0], wanted)
    body = _stream(reader, record, size, indices, wanted, first)
    return Download(record.fid, size, byte_range, body)


async def _read_part(
    reader: SegmentReader, record: FileRecord, size: int, index: int, wanted: ByteRange
) -> bytes:
    """The bytes of segment ``index`` inside ``wanted``."""
    offset, held = segment_span(index, size, reader.layout)
    low = max(wanted.start, offset) - offset
    high = min(wanted.end + 1, offset + held) - offset
    return await reader.read_span(record.segments[index], record.holders[index], low, high)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _stream(
    reader: SegmentReader,
    record: FileRecord,
    size: int,
    indices: list[int],
    wanted: ByteRange,
    first: bytes,
) -> AsyncIterator[bytes]:
    """Yield the wanted bytes segment by segment, reading the next segment meanwhile."""
    upcoming: asyncio.Task[bytes] | None = None
    try:
        data = first
        for position in range(len(indices)):
            if position + 1 < len(indices):
                after = indices[position + 1]
                upcoming = asyncio.create_task(_read_part(reader, record, size, after, wanted))
            view = memoryview(data)
            for at in range(0, len(data), CHUNK_BYTES):
                yield bytes(view[at : at + CHUNK_BYTES])
            if upcoming is not None:
                data, upcoming = await upcoming, None
    finally:
        if upcoming is not None:
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, DataPathError):
                await upcoming
