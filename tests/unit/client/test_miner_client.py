"""MinerClient against the real miner app in-process (the DevNode network of the miner app
tests): it builds the routes' requests, returns typed answers, and turns every failure into a
PeerError of its kind; against dishonest miners (a mock transport): oversized, wrong-hash and
malformed answers are refused, a flood is cut off."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from deoss.chain.modules import deals
from deoss.client.errors import PeerBadAnswer, PeerRefused, PeerUnreachable
from deoss.client.miner import RECEIPT_MAX_BYTES, MinerClient
from deoss.client.miner_types import ReadReason, Receipt
from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.core.keys import KeyPair, verify
from tests.unit.chain.harness import CHAIN_ID, key
from tests.unit.services.flood import CHUNK_BYTES, Flood, flooding
from tests.unit.services.miner.test_miner_app import (  # the network and its fixture
    MINER,
    SCHEDULER,
    Net,
    net,
    succeed,
)

__all__ = ["net"]

pytestmark = pytest.mark.anyio

ENDPOINT = "http://miner"
FLOOD_BYTES = 64 * 1024 * 1024  # far past any expected size; bounded should a read not stop


@asynccontextmanager
async def client_of(
    who: KeyPair, transport: httpx.AsyncBaseTransport
) -> AsyncIterator[MinerClient]:
    async with httpx.AsyncClient(transport=transport, auth=SigningAuth(who)) as http:
        yield MinerClient(http, timeout_s=10)


def app_transport(net: Net) -> httpx.AsyncBaseTransport:
    return httpx.ASGITransport(app=net.app)


def placement(net: Net, segment: int, fragment: int) -> dict[str, str]:
    return {
        "deal": str(net.deal_id),
        "attempt": "1",
        "segment": str(segment),
        "fragment": str(fragment),
    }


async def test_put_fragment_returns_the_miners_receipt_which_verifies(net: Net) -> None:
    digest = net.plan.segments[1].fragment_hashes[3]
    async with client_of(SCHEDULER, app_transport(net)) as miners:
        receipt = await miners.put_fragment(
            ENDPOINT, digest, net.fragments[1][3], placement(net, 1, 3)
        )
    assert MINER.address == receipt.miner
    message = deals.receipt_message(
        CHAIN_ID, net.deal_id, 1, net.plan.fid, 1, 3, digest, MINER.public_key
    )
    verify(MINER.public_key, message, receipt.signature)
    assert net.fragments[1][3] == net.store.read_range(digest, 0, len(net.fragments[1][3]))


async def test_a_refused_fragment_is_peer_refused_with_the_status_and_the_reason(
    net: Net,
) -> None:
    digest = net.plan.segments[0].fragment_hashes[0]
    async with client_of(key("sched1"), app_transport(net)) as miners:
        with pytest.raises(PeerRefused, match="is assigned to scheduler") as refused:
            await miners.put_fragment(ENDPOINT, digest, net.fragments[0][0], placement(net, 0, 0))
    assert 403 == refused.value.status
    assert [] == net.places()


async def test_a_fragment_read_for_tagging_is_returned_checked(net: Net) -> None:
    await net.put(0, 2)
    await succeed(net)  # sched0 reported the deal: it tags the file
    digest = net.plan.segments[0].fragment_hashes[2]
    fragment = net.fragments[0][2]
    reason = ReadReason("tagging", fid=net.plan.fid)
    async with client_of(SCHEDULER, app_transport(net)) as miners:
        assert fragment == await miners.fragment(ENDPOINT, digest, len(fragment), reason)
        with pytest.raises(PeerBadAnswer, match=f"{len(fragment) + 1} bytes expected"):
            await miners.fragment(ENDPOINT, digest, len(fragment) + 1, reason)
    async with client_of(key("miner5"), app_transport(net)) as miners:
        with pytest.raises(PeerRefused, match="is not the tagger of file") as refused:
            await miners.fragment(ENDPOINT, digest, len(fragment), reason)
    assert 403 == refused.value.status


async def test_a_fragment_of_other_bytes_is_a_bad_answer() -> None:
    digest = hashlib.sha256(b"wanted").digest()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b"x" * 6))
    async with client_of(SCHEDULER, transport) as miners:
        with pytest.raises(PeerBadAnswer, match=f"do not hash to {digest.hex()}"):
            await miners.fragment(ENDPOINT, digest, 6, ReadReason("tagging", fid="ab" * 32))


async def test_a_miner_flooding_a_fragment_read_is_cut_off_past_its_size() -> None:
    flood = Flood(FLOOD_BYTES)
    size = 1024 * 1024
    async with client_of(SCHEDULER, flooding(flood)) as miners:
        with pytest.raises(PeerBadAnswer, match=f"longer than the {size} bytes expected"):
            await miners.fragment(ENDPOINT, bytes(32), size, ReadReason("restoral", order=7))
    assert size < flood.sent_bytes <= size + CHUNK_BYTES
    assert flood.closed


@pytest.mark.parametrize(
    ("answer", "error", "why"),
    [
        (httpx.Response(200, content=b"{" * (RECEIPT_MAX_BYTES + 1)), PeerBadAnswer, "longer"),
        (httpx.Response(200, json={"miner": "m"}), PeerBadAnswer, "malformed receipt"),
        (httpx.Response(200, json={"miner": "m", "signature": "zz"}), PeerBadAnswer, "malformed"),
        (httpx.Response(201, json={"miner": "m", "signature": "00"}), PeerRefused, "HTTP 201"),
        (httpx.Response(507, content=b"disk full"), PeerRefused, "HTTP 507 'disk full'"),
    ],
)
async def test_a_receipt_answer_that_is_not_one_is_refused(
    answer: httpx.Response, error: type[Exception], why: str
) -> None:
    seen: list[httpx.Request] = []

    def miner(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    data = b"fragment"
    digest = hashlib.sha256(data).digest()
    async with client_of(SCHEDULER, httpx.MockTransport(miner)) as miners:
        with pytest.raises(error, match=why):
            await miners.put_fragment(ENDPOINT, digest, data, {"deal": "1"}, what="miner m")
    assert digest.hex() == seen[0].headers[HEADER_BODY]  # the signed body hash is the fragment's
    assert str(len(data)) == seen[0].headers["content-length"]


async def test_tags_and_mirror_tags_are_read_for_their_length_and_puts_name_the_placement() -> None:
    requests: list[httpx.Request] = []

    def miner(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.method == "GET":
            return httpx.Response(200, content=b"t" * 96)
        if request.url.path.startswith("/tags/"):
            return httpx.Response(200, json={"blocks": 2})
        return httpx.Response(200, json={"fragment_hash": "ab", "blocks": 2})

    digest, key_id = bytes(range(32)), bytes(32)
    async with client_of(SCHEDULER, httpx.MockTransport(miner)) as miners:
        assert b"t" * 96 == await miners.tags(
            ENDPOINT, digest, key_id, 96, ReadReason("restoral", order=3)
        )
        assert b"t" * 96 == await miners.mirror_tags(ENDPOINT, digest, key_id, 96, 4)
        with pytest.raises(PeerBadAnswer, match="95 bytes expected"):
            await miners.mirror_tags(ENDPOINT, digest, key_id, 95)
        answer = await miners.put_tags(
            ENDPOINT,
            digest,
            b"t" * 96,
            {"fid": "f", "segment": "0", "fragment": "1"},
            max_answer_bytes=100,
        )
        assert b'{"blocks":2}' == answer
        await miners.put_mirror_tags(ENDPOINT, digest, b"t" * 96, "f", 0, 1)
    queries = [(r.method, r.url.path, dict(r.url.params)) for r in requests]
    assert [
        ("GET", f"/tags/{digest.hex()}", {"key": key_id.hex(), "reason": "restoral", "order": "3"}),
        ("GET", f"/mirror-tags/{digest.hex()}", {"key": key_id.hex(), "order": "4"}),
        ("GET", f"/mirror-tags/{digest.hex()}", {"key": key_id.hex()}),
        ("PUT", f"/tags/{digest.hex()}", {"fid": "f", "segment": "0", "fragment": "1"}),
        ("PUT", f"/mirror-tags/{digest.hex()}", {"fid": "f", "segment": "0", "fragment": "1"}),
    ] == queries


async def test_an_unreachable_miner_is_peer_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client_of(SCHEDULER, httpx.MockTransport(refuse)) as miners:
        with pytest.raises(PeerUnreachable, match="ConnectError: connection refused"):
            await miners.put_mirror_tags(ENDPOINT, bytes(32), b"t", "f", 0, 1)


def test_a_read_reason_names_only_what_it_has() -> None:
    assert {"reason": "download", "fid": "f", "owner": "o"} == ReadReason(
        "download", fid="f", owner="o"
    ).query()
    assert {"reason": "restoral", "order": "0"} == ReadReason("restoral", order=0).query()
    assert {"reason": "tagging", "fid": "f"} == ReadReason("tagging", fid="f").query()


def test_a_receipt_is_read_from_the_miners_json() -> None:
    answer = b'{"miner": "m", "signature": "0a0b"}'
    assert Receipt("m", b"\x0a\x0b") == Receipt.from_answer(answer, "put")
    with pytest.raises(PeerBadAnswer, match="put: malformed receipt"):
        Receipt.from_answer(b"[]", "put")
