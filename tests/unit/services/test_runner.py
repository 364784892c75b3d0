"""Serving a service app (services/common/runner.py) on a real socket: the address file while
it listens, idle connections kept past the clients' pool expiry, a clean stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from deoss.services.common.app import create_service_app
from deoss.services.common.runner import serve_app
from deoss.serving import bind_socket

pytestmark = pytest.mark.anyio

# httpx drops a pooled connection after this long idle (httpx.Limits' default keepalive_expiry)
HTTPX_KEEPALIVE_EXPIRY_S = 5.0


def local_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


async def test_an_idle_connection_outlives_the_clients_pool(tmp_path: Path) -> None:
    """Clients close idle connections first, so a request never meets the server closing the
    connection it was sent on (ReadError in a client's log)."""
    app, _ = create_service_app("miner", title="t")
    addr_file = tmp_path / "addr"
    sock = bind_socket("127.0.0.1", 0)
    serving = asyncio.create_task(serve_app(app, sock, addr_file))
    try:
        async with asyncio.timeout(10):
            while not addr_file.exists():
                await asyncio.sleep(0.01)
        url = f"http://{addr_file.read_text().strip()}"
        limits = httpx.Limits(keepalive_expiry=60)
        async with httpx.AsyncClient(base_url=url, limits=limits) as client:
            first = await client.get("/healthz")
            first_port = local_port(first)
            await asyncio.sleep(HTTPX_KEEPALIVE_EXPIRY_S + 1)
            second = await client.get("/healthz")
            assert (200, 200) == (first.status_code, second.status_code)
            assert first_port == local_port(second)  # the same connection, still open
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        sock.close()
    assert not addr_file.exists()  # removed when serving stopped
