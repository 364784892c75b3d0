"""BlockFeed: blocks pushed over a real node's /websocket, and ChainClient.follow on top of it.

A relay between the client and the node's websocket lets a test cut the socket or make it
answer an error, as a node dropping a slow subscriber does.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager, suppress

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from deoss.chain.modules.accounts import Transfer
from deoss.client.block_feed import websocket_url
from deoss.client.chain import ChainClient
from deoss.client.chain_types import read_new_block
from deoss.client.errors import BadResponse
from tests.chain_fixtures import KEYS, RECIPIENT, ServedNode

pytestmark = pytest.mark.anyio


class CountingTransport(httpx.AsyncBaseTransport):
    """Real HTTP to the node, counting the JSON-RPC methods called."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.methods: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.methods[json.loads(request.content)["method"]] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Relay:
    """A websocket relay in front of the node's /websocket that a test can cut or poison."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.sessions = 0
        self.poison_next = False  # answer the next event with a subscription error instead
        self.server: Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await serve(self._relay, "127.0.0.1", 0)
        port = next(iter(self.server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/websocket"

    async def cut(self) -> None:
        assert self.server is not None
        for connection in list(self.server.connections):
            await connection.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _relay(self, client: ServerConnection) -> None:
        self.sessions += 1
        async with connect(self.upstream) as node:

            async def requests() -> None:
                async for message in client:
                    await node.send(message)

            async def events() -> None:
                async for message in node:
                    if self.poison_next and "NewBlock" in str(message):
                        self.poison_next = False
                        error = {"code": -32000, "message": "client is not pulling fast enough"}
                        await client.send(json.dumps({"jsonrpc": "2.0", "id": 1, "error": error}))
                        continue
                    await client.send(message)

            tasks = [asyncio.create_task(requests()), asyncio.create_task(events())]
            with suppress(ConnectionClosed):
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def relayed(served: ServedNode) -> AsyncIterator[tuple[ChainClient, Relay]]:
    relay = Relay(websocket_url(served.url))
    await relay.start()
    try:
        async with ChainClient(served.url, feed_url=relay.url) as client:
            yield client, relay
    finally:
        await relay.stop()


async def follow_heights(
    client: ChainClient,
    start: int,
    count: int,
    on_block: Callable[[int], Awaitable[None]] | None = None,
) -> list[int]:
    heights: list[int] = []
    async for block in client.follow(start):
        heights.append(block.height)
        if on_block is not None:
            await on_block(block.height)
        if len(heights) == count:
            break
    return heights


async def wait_live(client: ChainClient) -> None:
    assert client.feed is not None
    async with asyncio.timeout(10):
        while not client.feed.live:
            await asyncio.sleep(0.01)


async def test_follow_takes_blocks_from_the_feed(served_node: ServedNode) -> None:
    """Once the feed is live, following costs no block, block_results or status requests."""
    transport = CountingTransport()
    async with ChainClient(served_node.url, transport=transport, block_feed=True) as client:
        start = (await client.status()).height + 1
        first = await follow_heights(client, start, 3)
        await wait_live(client)
        before = transport.methods.copy()
        rest = await follow_heights(client, first[-1] + 1, 30)
        spent = transport.methods - before
    assert list(range(start, start + 33)) == first + rest
    assert spent["block"] + spent["block_results"] <= 4, spent  # only heights before live
    assert spent["status"] <= 2, spent


async def test_feed_blocks_equal_the_nodes_http_blocks(served_node: ServedNode) -> None:
    async with (
        ChainClient(served_node.url) as client,
        ChainClient(served_node.url, block_feed=False) as plain,
    ):
        client.feed.start()  # type: ignore[union-attr]
        await wait_live(client)
        outcomes = [
            await client.submit(KEYS[0], Transfer(to=RECIPIENT, amount=1)) for _ in range(3)
        ]
        for outcome in outcomes:
            height = outcome.height
            assert height is not None  # submit waited for the transaction's block
            from_feed = client.feed.get(height)  # type: ignore[union-attr]
            assert from_feed is not None
            async with aclosing(plain.follow(height)) as blocks:
                from_http = await anext(blocks)
            assert from_http == from_feed
            assert outcome.hash in from_feed.tx_hashes


async def test_follow_polls_when_there_is_no_websocket(served_node: ServedNode) -> None:
    """A node whose websocket cannot be reached is followed over HTTP alone."""
    async with ChainClient(served_node.url, feed_url="ws://127.0.0.1:9/websocket") as client:
        start = (await client.status()).height + 1
        heights = await follow_heights(client, start, 10)
        assert client.feed is not None and not client.feed.live
    assert list(range(start, start + 10)) == heights


async def test_follow_goes_on_through_a_cut_socket(served_node: ServedNode) -> None:
    """The socket is cut twice: follow skips and repeats nothing, and the feed reconnects."""
    async with relayed(served_node) as (client, relay):
        start = (await client.status()).height + 1

        async def cut_some(height: int) -> None:
            if height in (start + 5, start + 20):
                await relay.cut()

        heights = await follow_heights(client, start, 40, cut_some)
        await wait_live(client)
    assert list(range(start, start + 40)) == heights
    assert relay.sessions >= 3


async def test_a_dropped_subscription_sends_follow_back_to_http(served_node: ServedNode) -> None:
    """The node dropping the subscription (a JSON-RPC error on the socket) loses no block."""
    async with relayed(served_node) as (client, relay):
        start = (await client.status()).height + 1

        async def poison(height: int) -> None:
            if height == start + 5:
                relay.poison_next = True

        heights = await follow_heights(client, start, 30, poison)
        await wait_live(client)
    assert list(range(start, start + 30)) == heights
    assert relay.sessions >= 2 and not relay.poison_next


async def test_next_block_wakes_on_a_block_or_sleeps_without_a_feed(
    served_node: ServedNode,
) -> None:
    async with ChainClient(served_node.url) as client:
        client.feed.start()  # type: ignore[union-attr]
        await wait_live(client)
        seen = client.feed.latest  # type: ignore[union-attr]
        started = asyncio.get_running_loop().time()
        await client.next_block(10)
        assert asyncio.get_running_loop().time() - started < 5  # blocks come every 20 ms
        assert client.feed.latest > seen  # type: ignore[union-attr]
    async with ChainClient(served_node.url, feed_url="ws://127.0.0.1:9/websocket") as down:
        started = asyncio.get_running_loop().time()
        await down.next_block(0.2)
        assert asyncio.get_running_loop().time() - started >= 0.19


def test_websocket_url() -> None:
    assert "ws://127.0.0.1:26657/websocket" == websocket_url("http://127.0.0.1:26657")
    assert "wss://node.example/rpc/websocket" == websocket_url("https://node.example/rpc/")
    with pytest.raises(ValueError, match="not http or https"):
        websocket_url("ftp://node")


def test_malformed_new_block_events_are_bad_responses() -> None:
    with pytest.raises(BadResponse, match="block"):
        read_new_block({"block_id": {"hash": ""}})
    event = msgspec.json.decode(
        b'{"block":{"header":{"chain_id":"c","height":"3","time":"2026-01-01T00:00:00Z",'
        b'"last_block_id":{"hash":""},"app_hash":""},"data":{"txs":["AA=="]}},'
        b'"block_id":{"hash":""},"result_finalize_block":{"tx_results":[],"app_hash":""}}'
    )
    with pytest.raises(BadResponse, match="1 txs but 0 results"):
        read_new_block(event)
    del event["result_finalize_block"]
    with pytest.raises(BadResponse, match="NewBlock"):
        read_new_block(event)
