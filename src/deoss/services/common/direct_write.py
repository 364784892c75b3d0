"""Writing a fragment file with O_DIRECT: straight from an aligned buffer to the disk.

A miner fsyncs every fragment before it signs the receipt, so the page cache gives it nothing
on the way in, and costs it: copying each byte into freshly allocated cache pages, then
writing them back at fsync. Measured on the reference machine (ext4 on a virtio disk), 256 MiB
in 8 MiB files: 1.15 s buffered + fsync against 0.22 s with O_DIRECT + fsync, and the copy was a
third of a miner's CPU during uploads.

``DirectFile`` buffers incoming chunks in one page-aligned buffer and writes it in whole
blocks; the tail that is not a whole block is written after O_DIRECT is cleared on the
descriptor. Where O_DIRECT is not supported (tmpfs, some filesystems: EINVAL at open or at the
first write) it writes through the page cache instead, so the result is the same file either
way. The caller still fsyncs.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from types import TracebackType

__all__ = ["BLOCK", "DirectFile"]

BLOCK = 4096  # the alignment O_DIRECT needs for addresses, offsets and lengths (>= sector)
BUFFER_BYTES = 1024 * 1024
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class DirectFile:
    """A new file written with O_DIRECT where the filesystem allows it. Use as a context
    manager; ``write`` any chunks, ``finish`` writes the tail. Blocking."""

    def __init__(self, path: str, buffer_bytes: int = BUFFER_BYTES) -> None:
        if buffer_bytes <= 0 or buffer_bytes % BLOCK:
            raise ValueError(f"buffer_bytes must be a positive multiple of {BLOCK}")
        self.direct = bool(_O_DIRECT)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            self.fd = os.open(path, flags | _O_DIRECT, 0o644)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.direct = False
            self.fd = os.open(path, flags, 0o644)
        self._buffer = mmap.mmap(-1, buffer_bytes)  # page-aligned, reused for every block
        self._view = memoryview(self._buffer)
        self._held = 0

    def fileno(self) -> int:
        return self.fd

    def write(self, chunk: bytes | memoryview) -> None:
        data = memoryview(chunk).cast("B")
        while data:
            room = len(self._buffer) - self._held
            part = data[:room]
            self._view[self._held : self._held + len(part)] = part
            self._held += len(part)
            data = data[len(part) :]
            if self._held == len(self._buffer):
                self._write_out(self._held)

    def finish(self) -> None:
        """Write what is buffered: the whole blocks directly, the rest through the cache."""
        whole = self._held - self._held % BLOCK
        if whole:
            self._write_out(whole)
        if self._held:
            self._buffered()
            self._write_all(self._view[: self._held])
            self._held = 0

    def close(self) -> None:
        self._view.release()
        self._buffer.close()
        os.close(self.fd)

    def __enter__(self) -> DirectFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _write_out(self, length: int) -> None:
        """Write the first ``length`` buffered bytes (whole blocks), keep the rest in front."""
        self._write_all(self._view[:length])
        rest = self._held - length
        if rest:
            self._view[:rest] = self._view[length : self._held]
        self._held = rest

    def _buffered(self) -> None:
        if self.direct:
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
            self.direct = False

    def _write_all(self, data: memoryview) -> None:
        while data:
            try:
                written = os.write(self.fd, data)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self._buffered()  # this filesystem refuses direct writes: the same bytes, cached
                continue
            data = data[written:]
