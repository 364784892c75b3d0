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
