"""Slow clients against every DeOSS HTTP server (deoss.http_server), on real sockets on
127.0.0.1: a service served by the shared runner (services/common/runner.py) and the chain
node's RPC (node/serve.py). A request head or body that stops arriving is answered 408 and
its connection closed within the configured bound; a slow but progressing upload and an
application slower than the bound are not cut; /healthz answers while 500 half-open
connections are held."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi import Request
from websockets.asyncio.client import connect

from deoss.http_server import HttpLimits, raise_open_file_limit, read_http_limits
from deoss.node.home import HomeError, load_node_config
from deoss.node.serve import serve_node
from deoss.services.common.app import create_service_app
from deoss.services.common.config import ConfigError
from deoss.services.common.runner import serve_app
from deoss.services.gateway.settings import load_settings as load_gateway_settings
from deoss.services.miner.settings import load_settings as load_miner_settings
from deoss.services.scheduler.settings import load_settings as load_scheduler_settings
from deoss.serving import bind_socket
from tests.chain_fixtures import anyio_backend, open_node

__all__ = ["anyio_backend"]

HEADER_TIMEOUT_S = 1.0
BODY_IDLE_S = 1.0
FAST = HttpLimits(header_timeout_s=HEADER_TIMEOUT_S, body_idle_timeout_s=BODY_IDLE_S)
SLACK_S = 2.0  # scheduling on a busy 2-core machine
# The client's own pace in the "slow but progressing" tests: well inside the idle bound.
TRICKLE_EVERY_S = BODY_IDLE_S / 4
# An application slower than the body's idle bound (it reads the body late).
SLOW_APP_S = 2.5 * BODY_IDLE_S
HALF_OPEN = 500


@dataclass
class Served:
    host: str
    port: int
    health_path: str
    echo_path: str  # POST: reads the whole body, answers 200

    def body(self, size: int) -> bytes:
        """A body of ``size`` bytes the echo path accepts."""
        if self.echo_path == "/echo":
            return b"x" * size
        call = b'{"jsonrpc":"2.0","id":1,"method":"health","params":{}}'
        return call + b" " * (size - len(call))  # whitespace is valid JSON


Starter = Callable[..., contextlib.AbstractAsyncContextManager[Served]]


def service_app() -> Any:
    app, _ = create_service_app("miner", title="t")

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.post("/slow-echo")
    async def slow_echo(request: Request) -> dict[str, int]:
        await asyncio.sleep(SLOW_APP_S)  # the application is busy: the body waits for it
        return {"bytes": len(await request.body())}

    return app


@contextlib.asynccontextmanager
async def run_service(tmp_path: Path, limits: HttpLimits) -> AsyncIterator[Served]:
    addr_file = tmp_path / "addr"
    sock = bind_socket("127.0.0.1", 0)
    serving = asyncio.create_task(serve_app(service_app(), sock, addr_file, http_limits=limits))
    try:
        async with asyncio.timeout(10):
            while not addr_file.exists():
                if serving.done():
                    await serving
                await asyncio.sleep(0.01)
        host, port = addr_file.read_text().strip().rsplit(":", 1)
        yield Served(host, int(port), "/healthz", "/echo")
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        sock.close()


@contextlib.asynccontextmanager
async def run_node(tmp_path: Path, limits: HttpLimits) -> AsyncIterator[Served]:
    node = open_node(tmp_path / "chain.sqlite", block_ms=50)
    stop = asyncio.Event()
    listening = asyncio.Event()
    sock = bind_socket("127.0.0.1", 0)
    serving = asyncio.create_task(
        serve_node(node, sock, stop, on_listening=lambda h, p: listening.set(), http_limits=limits)
    )
    try:
        async with asyncio.timeout(10):
            while not listening.is_set():
                if serving.done():
                    await serving
                await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        yield Served(host, port, "/health", "/")
    finally:
        stop.set()
        await asyncio.gather(serving, return_exceptions=True)
        sock.close()
        node.store.close()


@pytest.fixture(params=["runner", "node"])
def start(request: pytest.FixtureRequest, tmp_path: Path) -> Starter:
    """Starts the server under test with given limits (an async context manager)."""

    def starter(limits: HttpLimits = FAST) -> contextlib.AbstractAsyncContextManager[Served]:
        runner = run_service if request.param == "runner" else run_node
        return runner(tmp_path, limits)

    return starter


async def read_until_closed(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after ``within_s``."""
    received = b""
    async with asyncio.timeout(within_s):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def trickle(writer: asyncio.StreamWriter, chunks: list[bytes]) -> None:
    """Send ``chunks`` at the client's own pace, one every TRICKLE_EVERY_S."""
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(TRICKLE_EVERY_S)


def post_head(served: Served, length: int, *extra: bytes) -> bytes:
    lines = [
        b"POST %s HTTP/1.1" % served.echo_path.encode(),
        b"Host: test",
        b"Content-Type: application/json",
        b"Content-Length: %d" % length,
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def timed(awaitable: Awaitable[bytes]) -> tuple[bytes, float]:
    started = time.monotonic()
    result = await awaitable
    return result, time.monotonic() - started


pytestmark = pytest.mark.anyio


async def test_a_head_trickled_forever_is_answered_408_at_the_header_timeout(
    start: Starter,
) -> None:
    """Slowloris: a client that keeps sending a byte of its headers now and then is cut at
    the header deadline (counted from the connection, not from its last byte)."""
    async with start() as served:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        writer.write(b"GET " + served.health_path.encode() + b" HTTP/1.1\r\nHost: test\r\n")
        slow = asyncio.create_task(trickle(writer, [b"X-Slow: a\r\n"] * 100))
        try:
            response, elapsed = await timed(read_until_closed(reader, HEADER_TIMEOUT_S + SLACK_S))
        finally:
            slow.cancel()
            await asyncio.gather(slow, return_exceptions=True)
            writer.close()
        assert 408 == status_of(response)
        assert b"request_timeout" in response
        assert elapsed >= HEADER_TIMEOUT_S * 0.9


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    start: Starter,
) -> None:
    """A silent connection is closed at the header timeout; there is no request to answer."""
    async with start() as served:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        response = await read_until_closed(reader, HEADER_TIMEOUT_S + SLACK_S)
        writer.close()
        assert b"" == response


async def test_a_kept_alive_connection_bounds_its_next_head_too(start: Starter) -> None:
    """After a first request, a second one whose head stops half way is cut as well."""
    async with start() as served:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        request = b"GET %s HTTP/1.1\r\nHost: test\r\n\r\n" % served.health_path.encode()
        writer.write(request + request[:20])
        response = await read_until_closed(reader, HEADER_TIMEOUT_S + SLACK_S)
        writer.close()
        assert response.startswith(b"HTTP/1.1 200")
        assert 2 == response.count(b"HTTP/1.1 ")
        assert b"HTTP/1.1 408" in response


async def test_a_pipelined_head_waits_for_the_response_before_it(tmp_path: Path) -> None:
    """A half head sent behind a request the app is still answering is not timed out
    under that answer: the first response arrives whole, then the 408."""
    async with run_service(tmp_path, FAST) as served:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        first = post_head(served, 10).replace(b"/echo", b"/slow-echo") + b"x" * 10
        writer.write(first + b"GET /healthz HTTP/1.1\r\nHost: te")
        response, elapsed = await timed(
            read_until_closed(reader, SLOW_APP_S + HEADER_TIMEOUT_S + SLACK_S)
        )
        writer.close()
        assert response.startswith(b"HTTP/1.1 200")
        assert b'{"bytes":10}HTTP/1.1 408' in response
        assert elapsed >= SLOW_APP_S


async def test_a_body_that_stalls_is_answered_408_at_the_idle_timeout(start: Starter) -> None:
    """Headers announce 1000 bytes, 100 arrive, then nothing: 408 and closed."""
    async with start() as served:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        writer.write(post_head(served, 1000) + served.body(1000)[:100])
        response, elapsed = await timed(read_until_closed(reader, BODY_IDLE_S + SLACK_S))
        writer.close()
        assert 408 == status_of(response)
        assert elapsed >= BODY_IDLE_S * 0.9


async def test_a_slow_but_progressing_body_is_not_cut(start: Starter) -> None:
    """A body arriving in small pieces, over three times the idle bound in all, is served."""
    async with start() as served:
        size = 1200
        body = served.body(size)
        reader, writer = await asyncio.open_connection(served.host, served.port)
        writer.write(post_head(served, size, b"Connection: close"))
        pieces = [body[i : i + 100] for i in range(0, size, 100)]  # 12 pieces, 3 s at 0.25 s
        await trickle(writer, pieces)
        response = await read_until_closed(reader, SLACK_S + 3)
        writer.close()
        assert 200 == status_of(response)


async def test_a_body_waiting_on_a_slow_application_is_not_cut(tmp_path: Path) -> None:
    """Back-pressure: the app reads the body later than the idle bound, so reading pauses
    with the client's bytes queued; the client is not idle, and the upload succeeds."""
    async with run_service(tmp_path, FAST) as served:
        size = 4 * 1024 * 1024
        reader, writer = await asyncio.open_connection(served.host, served.port)
        head = post_head(served, size, b"Connection: close")
        writer.write(head.replace(b"/echo", b"/slow-echo") + b"x" * size)
        response = await read_until_closed(reader, SLOW_APP_S + SLACK_S + 5)
        writer.close()
        assert 200 == status_of(response)
        assert response.endswith(b'{"bytes":%d}' % size)


async def test_a_client_waiting_for_100_continue_is_not_cut(tmp_path: Path) -> None:
    """Expect: 100-continue: the client waits for the app to ask for the body; that wait,
    longer than the idle bound, is the server's, not the client's."""
    async with run_service(tmp_path, FAST) as served:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        head = post_head(served, 10, b"Expect: 100-continue", b"Connection: close")
        writer.write(head.replace(b"/echo", b"/slow-echo"))
        async with asyncio.timeout(SLOW_APP_S + SLACK_S):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100")
        writer.write(b"x" * 10)
        response = await read_until_closed(reader, SLACK_S)
        writer.close()
        assert 200 == status_of(response)


async def test_an_oversized_head_is_answered_431(start: Starter) -> None:
    """A head larger than max_header_bytes is refused at once, not held in memory."""
    async with start() as served:
        reader, writer = await asyncio.open_connection(served.host, served.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * (FAST.max_header_bytes + 1)
        )
        response = await read_until_closed(reader, SLACK_S)
        writer.close()
        assert 431 == status_of(response)


@contextlib.contextmanager
def soft_file_limit(soft: int) -> Any:
    """Run with the soft RLIMIT_NOFILE at ``soft`` (as a service started from a usual shell)."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4 * HALF_OPEN:
        pytest.skip(f"the hard open-file limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before, hard))


def open_files() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64


async def test_health_answers_while_500_half_open_connections_are_held(start: Starter) -> None:
    """500 connections each holding half a request head do not keep the health check from
    answering promptly. The process starts with a soft file limit that leaves room for the
    clients' ends but not for the server's (a service under the usual soft limit of 1024
    with its own files open): the server raises it to the hard limit at start."""
    with soft_file_limit(open_files() + HALF_OPEN + 64):
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        async with start(HttpLimits(header_timeout_s=60.0)) as served:
            try:
                for _ in range(HALF_OPEN):
                    reader, writer = await asyncio.open_connection(served.host, served.port)
                    writer.write(b"GET / HTTP/1.1\r\nHost: te")
                    held.append((reader, writer))
                await asyncio.gather(*(writer.drain() for _, writer in held))
                reader, writer = await asyncio.open_connection(served.host, served.port)
                writer.write(b"GET %s HTTP/1.1\r\nHost: test\r\n\r\n" % served.health_path.encode())
                started = time.monotonic()
                async with asyncio.timeout(SLACK_S):
                    status_line = await reader.readline()
                elapsed = time.monotonic() - started
                writer.close()
                assert status_line.startswith(b"HTTP/1.1 200")
                assert elapsed < 1.0
                assert not any(reader.at_eof() for reader, _ in held)  # still held open
            finally:
                for _, writer in held:
                    writer.close()


async def test_a_websocket_outlives_the_request_bounds(tmp_path: Path) -> None:
    """Once upgraded, a websocket is its own protocol's: the head and body bounds stop."""
    async with run_node(tmp_path, FAST) as served:
        url = f"ws://{served.host}:{served.port}/websocket"
        query = {"query": "tm.event='NewBlock'"}
        call = {"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": query}
        messages = 0
        async with connect(url) as socket, asyncio.timeout(10):
            await socket.send(json.dumps(call))
            until = time.monotonic() + 2.5 * max(HEADER_TIMEOUT_S, BODY_IDLE_S)
            while time.monotonic() < until:  # blocks every 50 ms, the socket stays open
                await socket.recv()
                messages += 1
        assert messages > 10


# --- the limits and the process's file limit ---------------------------------------------


def test_limits_are_validated_naming_the_key() -> None:
    """A bad value is refused with its section.key; whole seconds are accepted."""
    assert 5.0 == read_http_limits({"header_timeout_s": 5}, "service").header_timeout_s
    assert HttpLimits() == read_http_limits({}, "rpc")
    for key, value in [
        ("header_timeout_s", 0),
        ("body_idle_timeout_s", -1.0),
        ("body_idle_timeout_s", float("inf")),
        ("header_timeout_s", True),
        ("header_timeout_s", "10"),
        ("max_header_bytes", 10),
        ("max_header_bytes", 1.5),
    ]:
        with pytest.raises(ValueError, match=f"^rpc\\.{key} must be"):
            read_http_limits({key: value}, "rpc")


def test_the_soft_file_limit_is_raised_to_the_hard_limit() -> None:
    """A process started with a low soft limit can hold as many files as its hard limit."""
    with soft_file_limit(256):
        soft = raise_open_file_limit()
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        assert (soft, soft) == (resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)


class ServiceSettings(Protocol):
    @property
    def http_limits(self) -> HttpLimits: ...


SETTINGS_LOADERS: dict[str, Callable[[Path], ServiceSettings]] = {
    "gateway": load_gateway_settings,
    "scheduler": load_scheduler_settings,
    "miner": load_miner_settings,
}


@pytest.mark.parametrize("role", sorted(SETTINGS_LOADERS))
def test_a_services_bounds_come_from_its_service_section(
    role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[service] header_timeout_s, body_idle_timeout_s, max_header_bytes (and DEOSS_SERVICE_*
    overrides) reach the settings; a bad value stops the service naming the key."""
    load = SETTINGS_LOADERS[role]
    config = tmp_path / f"{role}.toml"
    config.write_text("[service]\nheader_timeout_s = 3\nmax_header_bytes = 8192\n")
    monkeypatch.setenv("DEOSS_SERVICE_BODY_IDLE_TIMEOUT_S", "4.5")
    assert HttpLimits(3.0, 4.5, 8192) == load(config).http_limits
    monkeypatch.delenv("DEOSS_SERVICE_BODY_IDLE_TIMEOUT_S")
    assert HttpLimits(header_timeout_s=3.0, max_header_bytes=8192) == load(config).http_limits
    config.write_text("[service]\nheader_timeout_s = 0\n")
    with pytest.raises(ConfigError, match="service.header_timeout_s must be"):
        load(config)


def test_the_nodes_bounds_come_from_its_rpc_section(tmp_path: Path) -> None:
    """node.toml's [rpc] takes the same keys; a bad one is refused naming it."""
    (tmp_path / "node.toml").write_text('[rpc]\nlisten = "127.0.0.1:0"\nbody_idle_timeout_s = 7\n')
    assert HttpLimits(body_idle_timeout_s=7.0) == load_node_config(tmp_path).http_limits
    (tmp_path / "node.toml").write_text("[rpc]\nmax_header_bytes = 10\n")
    with pytest.raises(HomeError, match="rpc.max_header_bytes must be"):
        load_node_config(tmp_path)
