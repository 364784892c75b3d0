"""The node's RPC server: real sockets on 127.0.0.1, no 40 ms delayed-ACK stalls."""

from __future__ import annotations

import socket
import time

import httpx

from deoss.node.serve import bind_socket
from tests.chain_fixtures import ServedNode


def test_bound_socket_is_tcp_so_asyncio_sets_nodelay() -> None:
    """The listening socket names TCP as its protocol (asyncio only then sets TCP_NODELAY)."""
    with bind_socket("127.0.0.1", 0) as sock:
        assert (socket.IPPROTO_TCP, True) == (sock.proto, sock.getsockname()[1] > 0)


def test_keep_alive_requests_are_fast(served_node: ServedNode) -> None:
    """Twenty requests on one kept-alive connection take far less than 20 x 40 ms."""
    with httpx.Client(base_url=served_node.url) as client:
        client.get("/health")
        started = time.perf_counter()
        for _ in range(20):
            assert 200 == client.get("/health").status_code
        assert time.perf_counter() - started < 0.4


# httpx drops a pooled connection after this long idle (httpx.Limits' default keepalive_expiry)
HTTPX_KEEPALIVE_EXPIRY_S = 5.0


def local_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def test_an_idle_connection_outlives_the_clients_pool(served_node: ServedNode) -> None:
    """The server keeps an idle connection open past httpx's pool expiry, so clients close
    first and a request never meets the server closing the connection it was sent on."""
    with httpx.Client(base_url=served_node.url, limits=httpx.Limits(keepalive_expiry=60)) as client:
        first = client.get("/health")
        first_port = local_port(first)
        time.sleep(HTTPX_KEEPALIVE_EXPIRY_S + 1)
        second = client.get("/health")
        assert (200, 200) == (first.status_code, second.status_code)
        assert first_port == local_port(second)  # the same connection, still open
