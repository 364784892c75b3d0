"""How a service process asks glibc to handle its large buffers.

Services handle segments (32 MiB) and fragments (8 MiB) as Python bytes, and the erasure
coder allocates buffers of the same sizes. glibc serves each allocation above its mmap
threshold (128 KiB, growing to at most 32 MiB) with a fresh mapping and unmaps it when freed,
so the kernel zeroes every page of every such buffer again on first touch. Measured on a
256 MiB upload (perf, whole devnet): page faults and zeroing were a quarter of all CPU, 45 %
of the scheduler's; coding and copying eight segments took 1.27 s of CPU with the default and
0.41 s with freed memory kept (docs/benchmarks.md, "Memory reuse").

``keep_freed_memory`` makes every thread allocate from the one main heap (thread arenas map
64 MiB heaps of their own and give them back as eagerly), turns mmap off for allocations and
raises the trim threshold, so freed buffers are reused. The cost is resident memory that
stays near its high-water mark; ``release_freed_memory`` hands the free pages back, and the
runner calls it every 30 s (runner.py), so an idle service shrinks within a minute.

On a C library other than glibc both are no-ops that report False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["TRIM_THRESHOLD", "keep_freed_memory", "release_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

# Free memory at the top of a heap beyond this is handed back at once; below it, kept.
TRIM_THRESHOLD = 512 * 1024 * 1024


def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Ask glibc to reuse freed large buffers instead of unmapping them; True if it agreed."""
    libc = _glibc()
    if libc is None:
        return False
    return all(
        libc.mallopt(parameter, value)
        for parameter, value in (
            (_M_ARENA_MAX, 1),
            (_M_MMAP_MAX, 0),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        )
    )


def release_freed_memory() -> bool:
    """Hand free heap pages back to the kernel (malloc_trim); True if any were released."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))
