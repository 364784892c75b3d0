"""A dishonest peer's body for tests: more bytes than asked for, counted as they are taken."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

CHUNK_BYTES = 64 * 1024


class Flood(httpx.AsyncByteStream):
    """``total_bytes`` of ``fill`` in ``CHUNK_BYTES`` pieces; ``sent_bytes`` counts what the
    reader took, ``closed`` tells whether it hung up."""

    def __init__(self, total_bytes: int, fill: bytes = b"x") -> None:
        self.total_bytes = total_bytes
        self.piece = fill * (CHUNK_BYTES // len(fill))
        self.sent_bytes = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent_bytes < self.total_bytes:
            piece = self.piece[: self.total_bytes - self.sent_bytes]
            self.sent_bytes += len(piece)
            yield piece

    async def aclose(self) -> None:
        self.closed = True


def flooding(flood: Flood, status_code: int = 200) -> httpx.MockTransport:
    """A peer that answers every request with ``flood`` (no Content-Length: it streams)."""

    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status_code, stream=flood)

    return httpx.MockTransport(handle)
