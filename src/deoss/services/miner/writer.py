"""Streaming a fragment body from the event loop into the store's writer thread.

The event loop reads the request body; a worker thread writes it (``FragmentStore.put_fragment``
blocks on disk). ``ChunkPipe`` carries batches of chunks between them, at most ``PIPE_DEPTH``
in flight, and hands on the end of the stream only once the body passed its checks; ``abort``
makes the writer fail so the store keeps nothing. ``MinerService`` drives it through
``write_streamed``. (``FragmentMismatch`` lives in ``errors.py`` so that this module needs
nothing of ``service.py``.)
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Iterator

from deoss.services.common.auth import AuthError
from deoss.services.miner.errors import FragmentMismatch
from deoss.services.miner.store import BodyMismatch, FragmentPlace, FragmentStore, StoreError

__all__ = [
    "PIPE_DEPTH",
    "WRITE_BATCH",
    "Aborted",
    "BodyOpener",
    "ChunkPipe",
    "batched",
    "write_from_pipe",
    "write_streamed",
]

PIPE_DEPTH = 8  # chunks in flight between the event loop and the writer thread
WRITE_BATCH = 1024 * 1024  # fewer thread hops per fragment received

BodyOpener = Callable[[int], AsyncIterator[bytes]]
"""Given the most bytes allowed, the request body's chunks, at most that many. Checked against
the signature by the opener, or, for fragments, by the store against the declared hash (which
must be the signed one)."""


class Aborted(Exception):
    """Raised inside the writer thread when the body failed on the event loop's side."""


class ChunkPipe:
    """Batches of chunks from the event loop to a writer thread, at most ``depth`` in flight.

    The end of the stream is handed on only after the producer's checks passed (``finish``);
    ``abort`` makes the writer fail, so the store drops what it wrote.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = PIPE_DEPTH) -> None:
        self._loop = loop
        self._slots = asyncio.Semaphore(depth)
        self._items: queue.SimpleQueue[list[bytes] | None | Aborted] = queue.SimpleQueue()
        self._closed = False

    async def send(self, batch: list[bytes]) -> bool:
        """Hand on one batch of chunks; False once the writer stopped reading."""
        await self._slots.acquire()
        if self._closed:
            return False
        self._items.put(batch)
        return True

    def finish(self) -> None:
        self._items.put(None)

    def abort(self) -> None:
        self._items.put(Aborted("the request body failed its checks or was cut off"))

    def __iter__(self) -> Iterator[bytes]:  # the writer thread's side
        while True:
            item = self._items.get()
            if item is None:
                return
            if isinstance(item, Aborted):
                raise item
            self._loop.call_soon_threadsafe(self._slots.release)
            yield from item

    def close(self) -> None:  # the writer thread's side, when it stops reading
        self._closed = True
        self._loop.call_soon_threadsafe(self._slots.release)


def write_from_pipe(store: FragmentStore, place: FragmentPlace, pipe: ChunkPipe) -> None:
    try:
        store.put_fragment(place, pipe)
    finally:
        pipe.close()


async def batched(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[list[bytes]]:
    """Group small body chunks (the server hands 64 KiB) into batches of about ``size`` bytes:
    each batch costs one hand-over to the writer thread instead of sixteen. The chunks are
    handed on as they are (joining them cost two copies of every fragment)."""
    batch: list[bytes] = []
    held = 0
    async for chunk in chunks:
        batch.append(chunk)
        held += len(chunk)
        if held >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


async def write_streamed(
    store: FragmentStore, place: FragmentPlace, chunks: AsyncIterator[bytes]
) -> None:
    """Feed ``chunks`` to ``store.put_fragment`` in a worker thread; on any failure the store
    keeps nothing and the failure (not the writer's reaction to it) is raised.

    Raises:
        FragmentMismatch: the bytes do not match the place's hash or size.
    """
    pipe = ChunkPipe(asyncio.get_running_loop())
    writer = asyncio.ensure_future(asyncio.to_thread(write_from_pipe, store, place, pipe))
    try:
        async for batch in batched(chunks, WRITE_BATCH):
            if not await pipe.send(batch):
                break  # the writer stopped early: the bytes were here already, or it failed
        else:
            pipe.finish()
    except BaseException:
        pipe.abort()
        await asyncio.wait([writer])  # the store has cleaned up before the error is answered
        if not writer.cancelled():
            writer.exception()  # the writer's Aborted: retrieved, the body's failure is raised
        raise
    try:
        await writer
    except BodyMismatch as exc:  # the place's hash is the signed one (accept_fragment checks)
        raise AuthError(f"body does not match the signed SHA-256: {exc}") from exc
    except StoreError as exc:
        raise FragmentMismatch(str(exc)) from exc
