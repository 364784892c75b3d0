"""Running a service process: bind (port 0 picks a free port), announce the address, serve
until SIGINT/SIGTERM, run background tasks beside the server, stop cleanly.

    <data_dir>/addr  holds "host:port" while the service listens (written atomically), so
                     scripts and tests can find a service started on port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from deoss.atomic import write_atomic
from deoss.http_server import (
    DEFAULT_HTTP_LIMITS,
    HttpLimits,
    raise_open_file_limit,
)
from deoss.runtime import release_freed_memory
from deoss.services.common.supervise import DEFAULT_BACKOFF, Backoff, job_name, supervise
from deoss.serving import guarded_server, parse_host_port

__all__ = ["listen_address", "serve_app"]

# How often a service hands freed memory back to the system (deoss.runtime): often enough
# that an idle service shrinks within a minute, rarely enough that a busy one barely notices.
RELEASE_MEMORY_EVERY_S = 30.0


def listen_address(text: str) -> tuple[str, int]:
    """Parse "host:port" (deoss.serving.parse_host_port: an IPv6 host may be in brackets).

    Raises:
        ValueError: not host:port, naming the listen address.
    """
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise ValueError(f"listen address: {exc}") from exc


async def _release_freed_memory_periodically() -> None:
    while True:
        await asyncio.sleep(RELEASE_MEMORY_EVERY_S)
        await asyncio.to_thread(release_freed_memory)


async def serve_app(
    app: FastAPI,
    sock: socket.socket,
    addr_file: Path,
    *,
    on_started: Callable[[str], Awaitable[None]] | None = None,
    background: list[Callable[[], Coroutine[Any, Any, None]]] | None = None,
    http_limits: HttpLimits = DEFAULT_HTTP_LIMITS,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> None:
    """Serve ``app`` on ``sock``; then ``on_started(url)``; run ``background`` tasks until a
    signal. A background task that fails is logged and started again after ``backoff``
    (``supervise``): it never stops the service; one that returns is done, the others go on."""
    raise_open_file_limit()  # every held connection is a file
    server = guarded_server(app, http_limits, lifespan="on")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    tasks: list[asyncio.Task[None]] = []
    try:
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        url = f"http://{host}:{port}"
        write_atomic(addr_file, f"{host}:{port}\n")
        if on_started is not None:
            await on_started(url)
        role = getattr(app.state, "role", "service")
        jobs = [*(background or []), _release_freed_memory_periodically]
        tasks = [
            asyncio.create_task(supervise(job, name=job_name(job), role=role, backoff=backoff))
            for job in jobs
        ]
        stopping = asyncio.create_task(stop.wait())
        pending: set[asyncio.Future[Any]] = {stopping, serving, *tasks}
        while True:  # a background task that returns (a feature turned off) is simply done
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = None if task is stopping else task.exception()
                if error is not None:
                    raise error
            if stopping in done or serving in done:
                break
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        addr_file.unlink(missing_ok=True)
        for task in tasks:
            task.cancel()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
