"""A large request body sent with ``sent_once`` is not kept by httpx once the request is done
(a bytes ``content`` stays in reference cycles until the garbage collector runs)."""

from __future__ import annotations

import gc
import hashlib
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest

from deoss.client.signing import HEADER_BODY, SigningAuth, now_ms, sent_once
from deoss.core.keys import KeyPair
from deoss.services.common.auth import RequestVerifier, host_names

pytestmark = pytest.mark.anyio

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Server:
    """An ASGI app that checks the signature and the bytes it receives."""

    def __init__(self) -> None:
        self.verifier = RequestVerifier()
        self.received: list[tuple[int, bool]] = []  # (bytes, signed hash matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        target = scope["raw_path"].decode()
        hosts = host_names(*scope["server"])
        _, body_sha = self.verifier.verify(scope["method"], target, headers, now_ms(), hosts=hosts)
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append((len(body), hashlib.sha256(body).hexdigest() == body_sha))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.disable()
    yield
    gc.enable()


async def test_the_body_is_released_when_the_request_is_done(no_gc: None) -> None:
    """Signed, sent whole with its Content-Length, and no reference left (garbage collection
    off: with ``content=data`` two references stay, in httpx's Request/Response cycles)."""
    server = Server()
    data = bytes(range(256)) * 32768  # 8 MiB
    digest = hashlib.sha256(data).hexdigest()
    before = sys.getrefcount(data)
    transport = httpx.ASGITransport(app=server)
    key = KeyPair.generate()
    async with httpx.AsyncClient(transport=transport, auth=SigningAuth(key)) as http:
        body, length = sent_once(data)
        headers = {HEADER_BODY: digest, **length}
        response = await http.put("http://s/x", content=body, headers=headers)
        del body
        assert 200 == response.status_code
        assert {"content-length": str(len(data))}.items() <= response.request.headers.items()
        del response
    assert [(len(data), True)] == server.received
    assert before == sys.getrefcount(data)
