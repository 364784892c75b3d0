"""fetch_exact and request_ok: a peer's body is read up to the size expected and no further;
every failure is a PeerError saying which kind (unreachable, refused, a bad answer)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from typing import Any

import httpx
import pytest

from deoss.client.errors import (
    ClientError,
    PeerBadAnswer,
    PeerError,
    PeerRefused,
    PeerUnreachable,
)
from deoss.client.fetch import ERROR_TEXT_BYTES, fetch_exact, request_ok
from tests.unit.services.flood import CHUNK_BYTES, Flood, flooding

pytestmark = pytest.mark.anyio

FLOOD_BYTES = 64 * 1024 * 1024  # far past any expected size; bounded should a read not stop


async def fetch(transport: httpx.AsyncBaseTransport, size: int, **options: Any) -> bytes:
    async with httpx.AsyncClient(transport=transport) as http:
        return await fetch_exact(http, "GET", "http://peer/fragments/x", size=size, **options)


async def test_a_peer_streaming_far_more_is_cut_off_just_past_the_size() -> None:
    """The read stops once it holds one byte more than expected: the reader takes at most one
    network chunk past the size, and hangs up on the rest."""
    size = 1000 * 1000
    flood = Flood(FLOOD_BYTES)
    with pytest.raises(PeerBadAnswer, match="longer than the 1000000 bytes expected"):
        await fetch(flooding(flood), size)
    assert size < flood.sent_bytes <= size + CHUNK_BYTES
    assert flood.closed


async def test_exact_bytes_hashing_right_are_returned() -> None:
    data = bytes(range(256)) * 1000
    digest = hashlib.sha256(data).digest()

    def answer(request: httpx.Request) -> httpx.Response:
        assert "identity" == request.headers["accept-encoding"]
        return httpx.Response(200, content=data)

    assert data == await fetch(httpx.MockTransport(answer), len(data), sha256=digest)


@pytest.mark.parametrize(
    ("answer", "error", "why"),
    [
        (
            httpx.Response(200, content=b"x" * 99),
            PeerBadAnswer,
            "Content-Length '99', 100 bytes expected",
        ),
        (httpx.Response(200, stream=Flood(99)), PeerBadAnswer, "99 bytes, 100 expected"),
        (httpx.Response(200, content=b"x" * 100), PeerBadAnswer, "do not hash to"),
        (
            httpx.Response(200, content=b"x" * 101),
            PeerBadAnswer,
            "Content-Length '101', 100 bytes expected",
        ),
        (
            httpx.Response(
                200, content=gzip.compress(b"y" * 100), headers={"content-encoding": "gzip"}
            ),
            PeerBadAnswer,
            "encoded as 'gzip'",
        ),
        (
            httpx.Response(404, content=b"no such fragment"),
            PeerRefused,
            "HTTP 404 'no such fragment'",
        ),
    ],
)
async def test_short_wrong_encoded_or_refused_answers_are_peer_errors_of_their_kind(
    answer: httpx.Response, error: type[PeerError], why: str
) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    with pytest.raises(error, match=why) as raised:
        await fetch(transport, 100, sha256=hashlib.sha256(b"y" * 100).digest())
    assert isinstance(raised.value, ClientError)
    if isinstance(raised.value, PeerRefused):
        assert 404 == raised.value.status


async def test_an_error_answer_is_quoted_from_its_first_bytes_only() -> None:
    """A refusal streaming far more costs one chunk, and its message a few hundred bytes."""
    flood = Flood(FLOOD_BYTES)
    with pytest.raises(PeerRefused) as refused:
        await fetch(flooding(flood, 500), 100)
    assert flood.sent_bytes <= CHUNK_BYTES
    assert len(str(refused.value)) < ERROR_TEXT_BYTES + 100


async def test_request_ok_reads_no_body_of_a_success_and_little_of_a_refusal() -> None:
    for status in (200, 503):
        flood = Flood(FLOOD_BYTES)
        async with httpx.AsyncClient(transport=flooding(flood, status)) as http:
            call = request_ok(http, "PUT", "http://peer/tags/x", content=b"t")
            if status == 200:
                await call
            else:
                with pytest.raises(PeerRefused, match="HTTP 503"):
                    await call
        assert flood.sent_bytes <= CHUNK_BYTES
        assert flood.closed


async def test_a_peer_that_stalls_is_unreachable_after_the_deadline() -> None:
    never = asyncio.Event()

    async def stall(request: httpx.Request) -> httpx.Response:
        await never.wait()
        raise AssertionError("unreachable")

    with pytest.raises(PeerUnreachable, match="no answer in 0.05 s"):
        await fetch(httpx.MockTransport(stall), 100, timeout_s=0.05)


async def test_transport_errors_are_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(PeerUnreachable, match="ConnectError: connection refused"):
        await fetch(httpx.MockTransport(refuse), 100)
