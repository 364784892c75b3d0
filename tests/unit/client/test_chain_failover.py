"""ChainClient with several RPC endpoints: reads move to the next node when one fails, a
transaction whose answer was lost is re-sent as the same signed bytes (never signed again),
and the block feed follows the nodes that are up.

One chain cannot have two embedded nodes, so the tests use either a dead URL (a closed port)
beside a live one, or two names for one in-process node that a test can fail separately.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import msgspec
import pytest

from deoss.chain.modules.accounts import Transfer
from deoss.client.block_feed import BlockFeed, websocket_url
from deoss.client.chain import ChainClient, node_urls
from deoss.client.errors import NodeUnavailable, RpcError
from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app
from tests.chain_fixtures import KEYS, RECIPIENT, ServedNode, transfer
from tests.unit.client.test_block_feed import Relay, follow_heights

pytestmark = pytest.mark.anyio


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class TwoNames(httpx.AsyncBaseTransport):
    """One in-process node reachable as http://a and http://b; each name can be made to
    refuse connections (``down``) or to lose the answer to a method after the node ran it
    (``lose``: method -> hook run before the loss), as a node dying mid-request does."""

    def __init__(self, node: DevNode) -> None:
        self.inner = httpx.ASGITransport(app=create_app(node))
        self.down: set[str] = set()
        self.lose: dict[str, dict[str, Callable[[], object]]] = {"a": {}, "b": {}}
        self.calls: list[tuple[str, str]] = []
        self.behind: set[str] = set()  # names that answer the next ``block`` as a node behind

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = request.url.host
        method = msgspec.json.decode(request.content)["method"]
        self.calls.append((name, method))
        if name in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if method == "block" and name in self.behind:
            self.behind.discard(name)
            data = "height 9 must be less than or equal to the current blockchain height 1"
            error = {"code": -32603, "message": "Internal error", "data": data}
            request_id = msgspec.json.decode(request.content)["id"]
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": request_id, "error": error})
        response = await self.inner.handle_async_request(request)
        hook = self.lose[name].pop(method, None)
        if hook is not None:
            await response.aread()
            hook()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


@asynccontextmanager
async def two_names(
    node: DevNode, *, produce: bool = False
) -> AsyncIterator[tuple[ChainClient, TwoNames]]:
    node.block_ms = 20
    transport = TwoNames(node)
    stop = asyncio.Event()
    producer = asyncio.create_task(node.run(stop)) if produce else None
    try:
        async with ChainClient(
            ["http://a", "http://b"], transport=transport, poll_interval_s=0.01
        ) as client:
            yield client, transport
    finally:
        stop.set()
        if producer is not None:
            await producer


def test_node_urls_take_lists_and_commas_and_refuse_bad_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ["http://a:1", "https://b"] == node_urls(" http://a:1, https://b ,")
    assert ["http://a", "http://b"] == node_urls(["http://a", "http://b"])
    monkeypatch.setenv("DEOSS_NODE", "http://x:1,http://y:2")
    assert ["http://x:1", "http://y:2"] == node_urls(None) == node_urls("")
    assert ["http://x:1", "http://y:2"] == ChainClient(block_feed=False).urls
    with pytest.raises(ValueError, match="'ftp://a' is not an http"):
        node_urls("http://ok,ftp://a")
    with pytest.raises(ValueError, match="no chain node URL"):
        node_urls(" , ")
    with pytest.raises(ValueError, match="no chain node URL"):
        node_urls([])


async def test_a_dead_endpoint_before_a_live_one(served_node: ServedNode) -> None:
    """Reads, a submit and the block feed all reach the live node; the client stays there."""
    dead = closed_port_url()
    async with ChainClient([dead, served_node.url], poll_interval_s=0.01) as client:
        status = await client.status()
        assert served_node.url == client.url
        outcome = await client.submit(KEYS[0], Transfer(to=RECIPIENT, amount=1))
        heights = await follow_heights(client, status.height + 1, 3)
        assert client.feed is not None and client.feed.live
        assert websocket_url(served_node.url) == client.feed.url
        assert (await client.account(KEYS[0].address)).nonce == 1
    assert outcome.height is not None and 0 == outcome.result.code
    assert list(range(status.height + 1, status.height + 4)) == heights


async def test_a_dead_endpoint_after_a_live_one_is_never_used(served_node: ServedNode) -> None:
    async with ChainClient([served_node.url, closed_port_url()]) as client:
        await client.status()
        await client.block()
        assert served_node.url == client.url


async def test_no_endpoint_up_is_node_unavailable() -> None:
    urls = [closed_port_url(), closed_port_url()]
    async with ChainClient(urls, block_feed=False) as client:
        with pytest.raises(NodeUnavailable, match="unreachable"):
            await client.status()


async def test_reads_move_on_when_the_node_in_use_dies(node: DevNode) -> None:
    node.produce_block()
    async with two_names(node) as (client, transport):
        assert 1 == (await client.status()).height
        transport.down.add("a")
        assert 1 == (await client.block()).height
        assert "http://b" == client.url
        transport.down.clear()
        await client.status()
    assert [("a", "status"), ("a", "block"), ("b", "block"), ("b", "status")] == transport.calls


async def test_a_lost_broadcast_answer_is_resent_not_signed_again(node: DevNode) -> None:
    """The node got the tx, its answer was lost: the same bytes go to the other name, which
    answers "tx already exists in cache", taken as accepted; one tx, nonce used once."""
    async with two_names(node) as (client, transport):
        transport.lose["a"]["broadcast_tx_sync"] = lambda: None
        outcome = await client.submit(KEYS[0], Transfer(to=RECIPIENT, amount=1), wait=False)
        assert 1 == len(node.mempool)
        node.produce_block()
        account = await client.account(KEYS[0].address)
    sends = [c for c in transport.calls if c[1] == "broadcast_tx_sync"]
    assert [("a", "broadcast_tx_sync"), ("b", "broadcast_tx_sync")] == sends
    assert 1 == account.nonce
    assert [outcome.hash] == [hashlib.sha256(tx).digest() for tx in node.last_block.txs]


async def test_a_resent_tx_already_committed_is_found_not_refused(node: DevNode) -> None:
    """The tx was committed before the re-send: the node refuses it (BadNonce), so the client
    looks its hash up and reports the inclusion."""
    async with two_names(node) as (client, transport):
        transport.lose["a"]["broadcast_tx_sync"] = node.produce_block
        outcome = await client.broadcast(transfer(KEYS[1], 0), wait=False)
        assert 1 == (await client.account(KEYS[1].address)).nonce
    assert (1, 0) == (outcome.height, outcome.result.code)


async def test_a_lost_commit_answer_is_resent_and_the_inclusion_found(node: DevNode) -> None:
    async with two_names(node, produce=True) as (client, transport):
        transport.lose["a"]["broadcast_tx_commit"] = lambda: None
        outcome = await client.broadcast(transfer(KEYS[2], 0), wait=True)
        included = await client.tx(outcome.hash)
    assert outcome.height == included.height and 0 == outcome.result.code
    commits = [c for c in transport.calls if c[1] == "broadcast_tx_commit"]
    assert [("a", "broadcast_tx_commit"), ("b", "broadcast_tx_commit")] == commits


async def test_a_duplicate_without_a_resend_is_still_an_error(node: DevNode) -> None:
    async with two_names(node) as (client, _):
        tx = transfer(KEYS[3], 0)
        await client.broadcast(tx, wait=False)
        with pytest.raises(RpcError, match="tx already exists in cache"):
            await client.broadcast(tx, wait=False)


async def test_the_feed_moves_to_the_next_node_when_its_socket_dies(
    served_node: ServedNode,
) -> None:
    """The feed connected through a relay that goes away reconnects to the next URL."""
    relay = Relay(websocket_url(served_node.url))
    await relay.start()
    feed_urls = [relay.url, websocket_url(served_node.url)]
    feed = BlockFeed(feed_urls)
    feed.start()
    try:
        async with asyncio.timeout(10):
            while not feed.live:
                await asyncio.sleep(0.01)
        assert relay.url == feed.url
        await relay.stop()  # closes the server and its connections
        async with asyncio.timeout(10):
            while not (feed.live and feed.url == feed_urls[1]):
                await asyncio.sleep(0.01)
        newest = feed.latest
        assert await feed.wait_for(newest + 2, 10)
    finally:
        await feed.aclose()
        await relay.stop()


async def test_follow_waits_for_a_node_behind_after_a_fail_over(node: DevNode) -> None:
    """Moved to a node that has not reached the next height yet, follow waits for it: no
    error, no height skipped or repeated."""
    async with two_names(node, produce=True) as (client, transport):
        heights = []
        async for block in client.follow(1):
            heights.append(block.height)
            if block.height == 2:
                transport.down.add("a")
                transport.behind.add("b")
            if block.height == 5:
                break
    assert [1, 2, 3, 4, 5] == heights
    assert not transport.behind  # b did answer once as a node behind
