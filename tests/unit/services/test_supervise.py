"""Supervising background tasks (services/common/supervise.py): a task that raises is logged
with its traceback and started again after a bounded, growing delay; one that returns is done;
a cancellation stops it at once. Served beside an app (runner.serve_app), a failing task no
longer stops the service."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest

from deoss.services.common.app import create_service_app
from deoss.services.common.runner import serve_app
from deoss.services.common.supervise import Backoff, supervise, wait_woken
from deoss.serving import bind_socket

pytestmark = pytest.mark.anyio


class Flaky:
    """A job that raises ``failures`` times, then runs until ``release`` is set."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = 0
        self.running = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise RuntimeError(f"failure {self.starts}")
        self.running.set()
        await self.release.wait()


class Sleeps:
    """Records the delays asked for instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)


def failures_logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "deoss.service"]
    return [line for line in lines if line["event"] == "task_failed"]


async def test_a_job_that_raises_is_logged_and_restarted_with_growing_delays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky(failures=3)
    flaky.release.set()  # the fourth start returns: the job is done
    sleeps = Sleeps()
    with caplog.at_level(logging.INFO, logger="deoss.service"):
        await supervise(
            flaky.run,
            name="flaky",
            role="miner",
            backoff=Backoff(first_s=1, max_s=60),
            sleep=sleeps,
        )
    assert 4 == flaky.starts
    assert [1, 2, 4] == sleeps.delays
    logged = failures_logged(caplog)
    assert ["flaky"] * 3 == [line["task"] for line in logged]
    assert "RuntimeError: failure 1" in str(logged[0]["traceback"])
    assert [1, 2, 4] == [line["restart_in_s"] for line in logged]


async def test_the_delay_is_bounded_and_starts_over_after_a_healthy_run() -> None:
    now = [0.0]
    starts = 0

    async def job() -> None:
        nonlocal starts
        starts += 1
        if starts == 6:
            now[0] += 1000.0  # this run lasted long: it was healthy before it failed
        if starts <= 8:
            raise OSError(f"failure {starts}")

    sleeps = Sleeps()
    backoff = Backoff(first_s=1, max_s=5, healthy_after_s=60)
    await supervise(
        job, name="j", role="gateway", backoff=backoff, sleep=sleeps, clock=lambda: now[0]
    )
    assert [1, 2, 4, 5, 5, 1, 2, 4] == sleeps.delays


async def test_cancelling_stops_the_job_while_it_runs_and_while_it_waits() -> None:
    flaky = Flaky(failures=0)
    task = asyncio.create_task(supervise(flaky.run, name="f", role="miner"))
    await flaky.running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 1 == flaky.starts

    waiting = asyncio.Event()

    async def failing() -> None:
        raise RuntimeError("always")

    async def sleep(delay_s: float) -> None:
        waiting.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervise(failing, name="g", role="miner", sleep=sleep))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_service_keeps_serving_while_a_background_job_fails_and_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A background job raises twice, then runs: the service answered all along and goes on;
    before, the first failure stopped the whole process."""
    app, _ = create_service_app("miner", title="t")
    addr_file = tmp_path / "addr"
    sock = bind_socket("127.0.0.1", 0)
    flaky = Flaky(failures=2)
    with caplog.at_level(logging.INFO, logger="deoss.service"):
        serving = asyncio.create_task(
            serve_app(
                app,
                sock,
                addr_file,
                background=[flaky.run],
                backoff=Backoff(first_s=0.01, max_s=0.05),
            )
        )
        running = asyncio.create_task(flaky.running.wait())
        try:
            async with asyncio.timeout(10):
                await asyncio.wait([serving, running], return_when=asyncio.FIRST_COMPLETED)
            assert not serving.done()
            assert 3 == flaky.starts
            url = f"http://{addr_file.read_text().strip()}"
            async with httpx.AsyncClient(base_url=url) as client:
                assert 200 == (await client.get("/healthz")).status_code
        finally:
            for task in (serving, running):
                task.cancel()
            await asyncio.gather(serving, running, return_exceptions=True)
            sock.close()
    logged = failures_logged(caplog)
    assert 2 == len(logged)
    assert all("Flaky.run" == line["task"] and "miner" == line["role"] for line in logged)
    assert not addr_file.exists()


async def test_a_wake_that_came_during_the_work_is_not_lost() -> None:
    """wait_woken returns at once for a wake set while the task worked, then clears it, so the
    next wait lasts until the next wake or the poll interval."""
    wake = asyncio.Event()
    wake.set()  # came while the task was busy
    async with asyncio.timeout(5):
        await wait_woken(wake, 60)
    assert not wake.is_set()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wait_woken(wake, 0.05)  # nothing wakes it: the poll interval ends the wait
    assert loop.time() - started >= 0.05
