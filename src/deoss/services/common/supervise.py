"""Supervising a service's background tasks: a task that fails is restarted, never fatal.

Every background task of a service (a chain follower, a prover, a repairer, a scrubber) is
written to handle the failures it expects (an unreachable chain or peer) and go on. Anything
else it raises is a bug or a condition nobody foresaw; before, it ended the whole process, and a
miner that stops answering its challenges is slashed round after round until it is FAULTY. Here
such a failure is logged with its traceback (one ``task_failed`` line) and the task is started
again after a delay that doubles from ``Backoff.first_s`` up to ``Backoff.max_s``, and starts
over once a run lasted ``healthy_after_s``. Every task resumes from what the chain and its own
files say, so starting it again is safe.

A task that returns is done (a feature turned off in the config). Cancelling the supervisor
(the service stopping) cancels the task, or the wait before its restart, at once.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from deoss.services.common.app import log_event

__all__ = ["DEFAULT_BACKOFF", "Backoff", "job_name", "supervise", "wait_woken"]

Job = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Backoff:
    """Delays before a failed task starts again: ``first_s``, doubled after each failure, at
    most ``max_s``; back to ``first_s`` after a run that lasted ``healthy_after_s``."""

    first_s: float = 1.0
    max_s: float = 60.0
    healthy_after_s: float = 300.0


DEFAULT_BACKOFF = Backoff()


async def supervise(
    job: Job,
    *,
    name: str,
    role: str,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``job()`` until it returns, starting it again whenever it raises an Exception.

    Cancellation (and KeyboardInterrupt, SystemExit) is never caught: it stops the job.
    """
    delay_s = backoff.first_s
    while True:
        started = clock()
        try:
            await job()
            return
        except Exception as exc:  # noqa: BLE001 - any failure of a background task is survivable
            if clock() - started >= backoff.healthy_after_s:
                delay_s = backoff.first_s  # it ran well for a while: not a failure loop
            log_event(
                role,
                "task_failed",
                task=name,
                error=f"{type(exc).__name__}: {exc}",
                traceback="".join(traceback.format_exception(exc)),
                restart_in_s=delay_s,
            )
        await sleep(delay_s)
        delay_s = min(delay_s * 2, backoff.max_s)


def job_name(job: Callable[..., object]) -> str:
    """A readable name for a job: ``Prover.run`` for a bound method."""
    return getattr(job, "__qualname__", None) or repr(job)


async def wait_woken(wake: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``wake`` is set or ``timeout_s`` passed (a background task's "wake or poll"
    pause), then clear it: a wake that came while the task worked is not lost, since the task
    runs its pass again at once."""
    try:
        async with asyncio.timeout(timeout_s):
            await wake.wait()
    except TimeoutError:
        pass
    wake.clear()
