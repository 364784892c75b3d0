"""Process-wide settings for DeOSS processes (nodes, CLI, benchmarks). Call once at startup.

glibc serves allocations above its mmap threshold (128 KiB by default, adapting up to 32 MiB)
with fresh mmap() calls and returns freed heap tops to the system; for a process that handles
32 MiB segments and 8 MiB fragments, every erasure operation then pays tens of thousands of page
faults, each a page the kernel zeroes. Measured on the reference machine (docs/benchmarks.md):
ISA-L 4+8 parity decode of a 32 MiB segment 320 MB/s before, about 2,200 MB/s after.

Raising the thresholds is not enough for the services, which code, hash and copy in worker
threads: each thread that allocates gets an arena of its own, whose 64 MiB heaps are mapped
and unmapped as eagerly whatever the thresholds. So every thread allocates from the main
arena. Measured over a 256 MiB upload on the devnet (perf, every process): page faults and
zeroing were a quarter of all CPU before, 45 % of the scheduler's; the upload went from 39 to
60 MB/s (docs/benchmarks.md, "Uploads").

The price is memory: freed memory stays mapped for reuse (up to 256 MiB at the top of the
heap, and whatever lies free below it). ``release_freed_memory`` hands the free pages back;
services call it every 30 s (services/common/runner.py), so an idle one shrinks within a minute.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["release_freed_memory", "tune_allocator"]

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_THRESHOLD_BYTES = 256 * 1024 * 1024
_tuned = False


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    # glibc's; absent from musl and macOS
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds to 256 MiB and keep every thread on the main
    arena; False where glibc is absent."""
    global _tuned
    if _tuned:
        return True
    libc = _libc()
    if libc is None:  # not glibc (musl, macOS): nothing to tune
        return False
    ok = all(
        libc.mallopt(parameter, value)
        for parameter, value in (
            (_M_TRIM_THRESHOLD, _THRESHOLD_BYTES),
            (_M_MMAP_THRESHOLD, _THRESHOLD_BYTES),
            (_M_ARENA_MAX, 1),
        )
    )
    if not ok:
        log.warning("mallopt refused the allocator settings; large buffers will be slower")
    _tuned = ok
    return ok


def release_freed_memory() -> bool:
    """Hand the free pages of the heap back to the system (malloc_trim); True if any were."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))
