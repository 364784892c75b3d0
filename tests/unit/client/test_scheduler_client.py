"""SchedulerClient against the real scheduler app in-process (the network of the scheduler
tests, with fake miners): a segment PUT returns the typed placement, a deal's progress reads
back as its wire record, refusals are PeerRefused with the status and the scheduler's message;
against a dishonest scheduler (a mock transport): oversized or malformed answers are refused."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from deoss.client.errors import PeerBadAnswer, PeerRefused, PeerUnreachable
from deoss.client.scheduler import ANSWER_MAX_BYTES, SchedulerClient
from deoss.client.scheduler_types import DealProgress, SegmentPlacement
from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.core.keys import KeyPair
from deoss.core.layout import EncodedSegment
from deoss.core.podr2 import TAG_BYTES, block_count
from tests.unit.services.flood import CHUNK_BYTES, Flood, flooding
from tests.unit.services.scheduler.harness import ALICE, Network, key, running_network

pytestmark = pytest.mark.anyio

ENDPOINT = "http://scheduler.test"


@asynccontextmanager
async def client_of(
    who: KeyPair, transport: httpx.AsyncBaseTransport
) -> AsyncIterator[SchedulerClient]:
    async with httpx.AsyncClient(transport=transport, auth=SigningAuth(who)) as http:
        yield SchedulerClient(http, timeout_s=10)


def app_transport(net: Network) -> httpx.AsyncBaseTransport:
    return net.app_client._transport  # the scheduler app's ASGITransport


async def body_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def put(schedulers: SchedulerClient, deal_id: int, segment: EncodedSegment) -> object:
    return await schedulers.put_segment(
        ENDPOINT,
        deal_id,
        segment.index,
        body_of(bytes(segment.data)),
        sha256=segment.plan.hash,
        size=len(segment.data),
    )


async def test_a_segment_put_returns_its_placement_and_the_progress_shows_it(
    tmp_path: Path,
) -> None:
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        async with client_of(ALICE, app_transport(net)) as schedulers:
            placed = await put(schedulers, deal_id, segments[0])
            progress = await schedulers.deal_progress(ENDPOINT, deal_id)
        assert isinstance(placed, SegmentPlacement)
        assert 0 == placed.segment
        assert 12 == len(set(placed.miners))
        for index, address in enumerate(placed.miners):
            digest = segments[0].plan.fragment_hashes[index]
            assert bytes(segments[0].fragments[index]) == net.miner(address).fragments[digest]
        assert isinstance(progress, DealProgress)
        assert (deal_id, [0], 1) == (progress.deal, progress.placed, progress.segments)


async def test_refusals_are_peer_refused_with_the_status_and_the_schedulers_message(
    tmp_path: Path,
) -> None:
    async with running_network(tmp_path) as net:
        deal_id, segments = await net.declare(os.urandom(3000))
        async with client_of(key("bob"), app_transport(net)) as schedulers:
            with pytest.raises(PeerRefused, match=f"HTTP 403: .*{ALICE.address}") as refused:
                await put(schedulers, deal_id, segments[0])
            assert 403 == refused.value.status
            with pytest.raises(PeerRefused, match="HTTP 404") as missing:
                await schedulers.deal_progress(ENDPOINT, deal_id + 100)
            assert 404 == missing.value.status
        assert 0 == net.fragment_puts()


@pytest.mark.parametrize(
    ("answer", "error", "why"),
    [
        (httpx.Response(200, content=b" " * (ANSWER_MAX_BYTES + 1)), PeerBadAnswer, "longer"),
        (httpx.Response(200, json={"segment": 0}), PeerBadAnswer, "not a SegmentPlacement"),
        (httpx.Response(200, content=b"<html>"), PeerBadAnswer, "not JSON"),
        (
            httpx.Response(409, json={"error": {"code": "conflict", "message": "moved"}}),
            PeerRefused,
            "HTTP 409: moved$",
        ),
        (httpx.Response(502, content=b"x" * (10 * ANSWER_MAX_BYTES)), PeerRefused, "HTTP 502"),
    ],
)
async def test_a_placement_answer_that_is_not_one_is_refused(
    answer: httpx.Response, error: type[Exception], why: str
) -> None:
    seen: list[httpx.Request] = []

    def scheduler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer

    data = b"segment"
    async with client_of(ALICE, httpx.MockTransport(scheduler)) as schedulers:
        with pytest.raises(error, match=why):
            await schedulers.put_segment(
                ENDPOINT, 4, 1, body_of(data), sha256=hashlib.sha256(data).digest(), size=7
            )
    assert "/deals/4/segments/1" == seen[0].url.path
    assert hashlib.sha256(data).hexdigest() == seen[0].headers[HEADER_BODY]


async def test_tags_are_read_for_their_length_and_a_flood_is_cut_off() -> None:
    data = b"d" * 4096
    expected = block_count(len(data), 1) * TAG_BYTES
    seen: list[httpx.Request] = []

    def tagger(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"t" * expected)

    async with client_of(key("miner1"), httpx.MockTransport(tagger)) as schedulers:
        tags = await schedulers.tags(ENDPOINT, "ab" * 32, bytes(32), data, 1, order_id=9)
    assert b"t" * expected == tags
    assert {"fid": "ab" * 32, "order": "9"} == dict(seen[0].url.params)
    flood = Flood(64 * 1024 * 1024)
    async with client_of(key("miner1"), flooding(flood)) as schedulers:
        with pytest.raises(PeerBadAnswer, match=f"longer than the {expected} bytes expected"):
            await schedulers.tags(ENDPOINT, "ab" * 32, bytes(32), data, 1)
    assert expected < flood.sent_bytes <= expected + CHUNK_BYTES


async def test_an_unreachable_scheduler_is_peer_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client_of(ALICE, httpx.MockTransport(refuse)) as schedulers:
        with pytest.raises(PeerUnreachable, match="ConnectError"):
            await schedulers.deal_progress(ENDPOINT, 1)
