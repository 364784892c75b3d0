"""The server plumbing every DeOSS process shares (chain node RPC, gateway, miner, scheduler):
parse a listen address, bind the listening socket, run uvicorn under the process's own signal
handling, with the same keep-alive and shutdown bounds. How slow clients are bounded is
deoss.http_server; what each process serves and runs beside it stays with the process
(deoss.node.serve, deoss.services.common.runner).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from deoss.http_server import BACKLOG, HttpLimits, guarded_protocol

__all__ = [
    "GRACEFUL_SHUTDOWN_S",
    "KEEP_ALIVE_S",
    "QuietServer",
    "bind_socket",
    "guarded_server",
    "parse_host_port",
]

# In-flight requests get this long to finish once a process is told to stop.
GRACEFUL_SHUTDOWN_S = 2
# An idle keep-alive connection is closed by its client first: httpx drops pooled connections
# after 5 s idle, uvicorn's own default is also 5 s, and when both end it at once a request
# sent on the closing connection fails with ReadError (seen in bench/e2e.py's logs).
KEEP_ALIVE_S = 30


def parse_host_port(text: str) -> tuple[str, int]:
    """("host", port) from "HOST:PORT"; an IPv6 host may be in brackets ("[::1]:80"); port 0
    means any free port.

    Raises:
        ValueError: not HOST:PORT with a port in 0..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'expected "HOST:PORT" with a port in 0..65535, got {text!r}')
    return host.strip("[]"), int(port)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 = any free port.

    The stricter of the two binds this replaces (the node's): a socket that fails to bind or
    listen is closed at once rather than left for the garbage collector.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and without
    # it every keep-alive response waits 40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def guarded_server(app: Any, http_limits: HttpLimits, **options: Any) -> QuietServer:
    """A server for ``app`` with the shared settings: no access log (the apps log requests
    themselves), the slow-client guard, the backlog, keep-alive and shutdown bounds.
    ``options`` are further ``uvicorn.Config`` arguments (lifespan, websockets)."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        http=guarded_protocol(http_limits),  # slow clients: deoss.http_server
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **options,
    )
    return QuietServer(config)
