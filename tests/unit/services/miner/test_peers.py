"""The miner's peer reads (fragments for a repair, tags copied or requested): a dishonest peer
that streams far more than asked for is cut off just past the expected size."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from deoss.client.chain import ChainClient
from deoss.core.podr2 import TAG_BYTES, block_count
from deoss.services.miner.peers import PeerError, Peers
from tests.unit.chain.harness import key
from tests.unit.services.flood import CHUNK_BYTES, Flood, flooding

pytestmark = pytest.mark.anyio

FLOOD_BYTES = 64 * 1024 * 1024  # far past any expected size; bounded should a read not stop
ENDPOINT = "http://peer.test"
DIGEST = bytes(range(32))


@asynccontextmanager
async def peers_of(flood: Flood) -> AsyncIterator[Peers]:
    chain = ChainClient("http://chain.test")  # not asked: the endpoints are given
    peers = Peers(chain, key("miner12"), transport=flooding(flood))
    try:
        yield peers
    finally:
        await peers.aclose()
        await chain.aclose()


FRAGMENT_BYTES = 1024 * 1024
TAGS_BYTES = 32 * TAG_BYTES


def fetch_fragment(peers: Peers) -> Awaitable[bytes]:
    return peers.fetch_fragment(ENDPOINT, DIGEST, FRAGMENT_BYTES, order_id=7)


def fetch_tags(peers: Peers) -> Awaitable[bytes]:
    return peers.fetch_tags(ENDPOINT, DIGEST, bytes(48), TAGS_BYTES, order_id=7)


def request_tags(peers: Peers) -> Awaitable[bytes]:
    return peers.request_tags(ENDPOINT, "ab" * 32, DIGEST, b"d" * 4096, 1)


@pytest.mark.parametrize(
    ("read", "expected_bytes"),
    [
        (fetch_fragment, FRAGMENT_BYTES),
        (fetch_tags, TAGS_BYTES),
        (request_tags, block_count(4096, 1) * TAG_BYTES),
    ],
)
async def test_a_peer_streaming_far_more_is_cut_off(
    read: Callable[[Peers], Awaitable[bytes]], expected_bytes: int
) -> None:
    """PeerError, having taken at most one network chunk past the size expected."""
    flood = Flood(FLOOD_BYTES)
    async with peers_of(flood) as peers:
        with pytest.raises(PeerError, match=f"longer than the {expected_bytes} bytes expected"):
            await read(peers)
    assert expected_bytes < flood.sent_bytes <= expected_bytes + CHUNK_BYTES
    assert flood.closed


async def test_a_fragment_of_the_right_size_but_other_bytes_is_refused() -> None:
    async with peers_of(Flood(FRAGMENT_BYTES)) as peers:
        with pytest.raises(PeerError, match=f"do not hash to {DIGEST.hex()}"):
            await fetch_fragment(peers)
