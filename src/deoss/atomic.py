"""Writing a whole file atomically: a reader (or a restart after a crash) sees the old file or
the new one, never half of one.

    data -> hidden temporary file beside the target -> (fsync) -> rename (or link) -> (fsync dir)

Used by every process for small state files (node home, key files, service address and cursor
files, scheduler receipts and jobs). Big data files (fragments, segment copies) have their own
writers that stream and bypass the page cache (deoss.services.common.direct_write).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["fsync_directory", "temporary_path", "write_atomic"]


def temporary_path(path: Path) -> Path:
    """A hidden name beside ``path``, unique per process and call (two threads writing the same
    file never share one), that directory scans skip (names starting with ".")."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def fsync_directory(path: Path) -> None:
    """Make a rename or link in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: Path,
    data: bytes | memoryview | str,
    *,
    durable: bool = True,
    mode: int = 0o666,
    overwrite: bool = True,
    sync_directory: bool = False,
) -> None:
    """Write ``data`` (str is written as UTF-8) to ``path`` atomically.

    ``durable`` fsyncs the file before it is renamed into place (a crash then keeps the new
    content once this returns); ``sync_directory`` also fsyncs the directory so the rename
    itself survives a crash. ``mode`` is the new file's permissions (before the umask), set
    when the temporary file is created so a secret is never readable by others, even briefly.
    Without ``overwrite`` an existing file is never replaced (the write is a link, which fails).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false (nothing was changed).
        OSError: the write failed; the temporary file is removed and ``path`` is unchanged.
    """
    raw = data.encode() if isinstance(data, str) else data
    temporary = temporary_path(path)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if the file exists: never clobber it
    finally:
        temporary.unlink(missing_ok=True)
    if sync_directory:
        fsync_directory(path.parent)
