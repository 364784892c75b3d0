"""Large buffers are reused once a process has tuned glibc's allocator, from worker threads
too, and handed back to the system on request (deoss.runtime)."""

from __future__ import annotations

import asyncio
import json
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the allocator settings are glibc's"
)

MiB = 1 << 20


def _run(script: str, *args: str) -> dict[str, int]:
    """Run ``script`` in a fresh interpreter (the settings are process-wide); its last line
    of output is a JSON object."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    counts: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


FAULTS = """
    import json, resource, sys
    from concurrent.futures import ThreadPoolExecutor
    from deoss.runtime import tune_allocator
    kept = tune_allocator() if sys.argv[-1] == "tuned" else False

    def segment(_):
        return len(b"\\x01" * (32 << 20))  # a fresh 32 MiB buffer, written, then freed

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(segment, range(4)))  # the first ones may fault: the heap grows
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        list(pool.map(segment, range(16)))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(json.dumps({"kept": kept, "faults": after - before}))
"""


def test_freed_buffers_are_reused_by_worker_threads_instead_of_faulted_in_again() -> None:
    default = _run(FAULTS, "default")
    kept = _run(FAULTS, "tuned")
    assert kept["kept"] is True
    # 16 buffers of 32 MiB are 131,072 pages: faulted in again each time by default
    assert default["faults"] > 16 * 32 * MiB // 4096 // 2
    assert kept["faults"] < default["faults"] // 20


def test_release_hands_free_pages_back() -> None:
    script = """
        import json
        from deoss.runtime import release_freed_memory, tune_allocator

        def rss_mib():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024

        tune_allocator()
        buffers = [b"\\x01" * (32 << 20) for _ in range(6)]  # below the trim threshold
        del buffers
        kept = rss_mib()
        released = release_freed_memory()
        print(json.dumps({"kept": kept, "released": released, "after": rss_mib()}))
    """
    result = _run(script)
    assert result["kept"] >= 192  # freed, but still resident for reuse
    assert result["released"] is True
    assert result["after"] < result["kept"] - 150


@pytest.mark.anyio
async def test_a_service_hands_memory_back_periodically(monkeypatch: pytest.MonkeyPatch) -> None:
    from deoss.services.common import runner

    calls: list[float] = []
    monkeypatch.setattr(runner, "RELEASE_MEMORY_EVERY_S", 0.01)

    def release() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(runner, "release_freed_memory", release)
    task = asyncio.create_task(runner._release_freed_memory_periodically())
    await asyncio.sleep(0.2)
    task.cancel()
    assert len(calls) >= 3
