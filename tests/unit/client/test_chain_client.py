"""ChainClient against an in-process node (ASGITransport) and against scripted transports."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from deoss.chain.errors import InsufficientFunds, NotFound
from deoss.chain.modules.accounts import Account, Transfer, Treasury
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.chain_types import parse_rfc3339_ns
from deoss.client.errors import (
    BadResponse,
    InclusionTimeout,
    NodeUnavailable,
    QueryFailed,
    RpcError,
    TxRefused,
)
from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app
from deoss.node.rpc_json import rfc3339
from tests.chain_fixtures import BALANCE, KEYS, RECIPIENT, transfer

pytestmark = pytest.mark.anyio


class FlakyTransport(httpx.AsyncBaseTransport):
    """An ASGI transport that refuses connections while ``down`` is set."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


@asynccontextmanager
async def running(
    node: DevNode, *, produce: bool = True, **options: Any
) -> AsyncIterator[tuple[ChainClient, FlakyTransport]]:
    """A client of ``node``'s RPC, with the node producing a block every 20 ms."""
    node.block_ms = 20
    transport = FlakyTransport(httpx.ASGITransport(app=create_app(node)))
    stop = asyncio.Event()
    producer = asyncio.create_task(node.run(stop)) if produce else None
    options.setdefault("poll_interval_s", 0.01)
    async with ChainClient("http://node", transport=transport, **options) as client:
        try:
            yield client, transport
        finally:
            stop.set()
            if producer is not None:
                await producer


def scripted(reply: Callable[[dict[str, Any]], httpx.Response]) -> ChainClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return reply(httpx.Response(200, content=request.content).json())

    return ChainClient("http://node", transport=httpx.MockTransport(handler))


def rpc_result(result: Any) -> Callable[[dict[str, Any]], httpx.Response]:
    return lambda request: httpx.Response(
        200, json={"jsonrpc": "2.0", "id": request["id"], "result": result}
    )


async def test_submit_waits_for_inclusion_and_reads_back(node: DevNode) -> None:
    """submit signs with the chain's nonce, waits for the block; the reads agree."""
    async with running(node) as (client, _):
        outcome = await client.submit(KEYS[0], Transfer(to=RECIPIENT, amount=5))
        assert outcome.height is not None and outcome.index is not None
        assert Account(balance=5) == await client.account(RECIPIENT)
        assert outcome == await client.tx(outcome.hash)
        block = await client.block(outcome.height)
        results = await client.block_results(outcome.height)
        status = await client.status()
        info = await client.app_info()
    assert outcome.hash == hashlib.sha256(block.txs[outcome.index]).digest()
    assert 0 == results.tx_results[outcome.index].code
    assert ("test-chain", True) == (status.chain_id, status.height >= outcome.height)
    assert info.height >= outcome.height and 32 == len(info.app_hash)


async def test_fifty_concurrent_submits_from_one_key_all_land(node: DevNode) -> None:
    """50 transfers submitted at once from one key all land, in nonce order."""
    async with running(node) as (client, _):
        treasury_before = await client.query("/accounts/treasury", QueryArgs(), Treasury)
        outcomes = await asyncio.gather(
            *(client.submit(KEYS[0], Transfer(to=RECIPIENT, amount=i + 1)) for i in range(50))
        )
        recipient = await client.account(RECIPIENT)
        sender = await client.account(KEYS[0].address)
        treasury_after = await client.query("/accounts/treasury", QueryArgs(), Treasury)
    fees = treasury_after.balance - treasury_before.balance  # every fee goes to the treasury
    assert 50 == len({o.hash for o in outcomes})
    assert all(0 == o.result.code for o in outcomes)
    assert Account(balance=sum(range(1, 51))) == recipient
    assert 50 * node.machine.params.tx_fee <= fees
    assert (50, BALANCE - 1275 - fees) == (sender.nonce, sender.balance)


async def test_refused_at_check_does_not_burn_the_nonce(node: DevNode) -> None:
    """A refused transfer raises TxRefused with its code; the next submit still lands."""
    async with running(node) as (client, _):
        with pytest.raises(TxRefused, match="InsufficientFunds") as refused:
            await client.submit(KEYS[0], Transfer(to=RECIPIENT, amount=BALANCE * 2))
        assert (InsufficientFunds.code, "check") == (refused.value.code, refused.value.stage)
        outcome = await client.submit(KEYS[0], Transfer(to=RECIPIENT, amount=1))
    assert 0 == outcome.result.code


async def test_stale_nonce_is_resynced_from_the_chain(node: DevNode) -> None:
    """When another client used the key, BadNonce makes the client read the nonce again."""
    async with running(node) as (client, _), running(node, produce=False) as (other, _):
        await client.submit(KEYS[1], Transfer(to=RECIPIENT, amount=1))
        await other.submit(KEYS[1], Transfer(to=RECIPIENT, amount=1))
        await other.submit(KEYS[1], Transfer(to=RECIPIENT, amount=1))
        await client.submit(KEYS[1], Transfer(to=RECIPIENT, amount=1))  # its counter said 1
        assert 4 == (await client.account(KEYS[1].address)).nonce


async def test_submit_without_wait_then_follow_sees_every_block_once(node: DevNode) -> None:
    """follow yields consecutive heights from the start, with the submitted txs in them."""
    async with running(node) as (client, _):
        hashes = {
            (await client.submit(KEYS[2], Transfer(to=RECIPIENT, amount=1), wait=False)).hash
            for _ in range(3)
        }
        heights, seen = [], set()
        async for block in client.follow(1):
            heights.append(block.height)
            seen.update(block.tx_hashes)
            if hashes <= seen and len(heights) >= 3:
                break
    assert list(range(1, len(heights) + 1)) == heights


async def test_follow_survives_the_node_going_away(node: DevNode) -> None:
    """While the node is unreachable follow retries; it never skips or repeats a height."""
    async with running(node) as (client, transport):
        heights = []
        async for block in client.follow(1):
            heights.append(block.height)
            if block.height == 2:  # the node goes away for 150 ms while follow keeps going
                transport.down = True
                asyncio.get_running_loop().call_later(0.15, setattr, transport, "down", False)
            if block.height == 6:
                break
    assert [1, 2, 3, 4, 5, 6] == heights
    assert transport.refused > 0


async def test_broadcast_with_and_without_wait(node: DevNode) -> None:
    """broadcast(wait=False) returns after check; broadcast(wait=True) after the block."""
    async with running(node) as (client, _):
        checked = await client.broadcast(transfer(KEYS[3], 0), wait=False)
        included = await client.broadcast(transfer(KEYS[3], 1), wait=True)
        with pytest.raises(TxRefused, match="BadNonce"):
            await client.broadcast(transfer(KEYS[3], 7), wait=False)
    assert None is checked.height
    assert included.height is not None and 0 == included.result.code


async def test_inclusion_timeout(node: DevNode) -> None:
    """A checked tx that no block includes in time raises InclusionTimeout."""
    async with running(node, produce=False, inclusion_timeout_s=0.1) as (client, _):
        with pytest.raises(InclusionTimeout, match="not included within 0.1 s"):
            await client.submit(KEYS[0], Transfer(to=RECIPIENT, amount=1))


async def test_queries_and_their_failures(node: DevNode) -> None:
    """query decodes the record; a code != 0 is QueryFailed; a wrong type BadResponse."""
    async with running(node, produce=False) as (client, _):
        account = await client.query(
            "/accounts/account", QueryArgs(address=KEYS[0].address), Account
        )
        with pytest.raises(QueryFailed) as failed:
            await client.query("/no/such", QueryArgs(), Account)
        with pytest.raises(BadResponse, match="abci_query"):
            await client.query("/accounts/account", QueryArgs(address=KEYS[0].address), Transfer)
        with pytest.raises(RpcError, match="must be less than or equal"):
            await client.block(99)
    assert BALANCE == account.balance
    assert NotFound.code == failed.value.code


async def test_transport_failures_are_node_unavailable() -> None:
    """Refused connections and non-JSON 5xx are NodeUnavailable; other junk BadResponse."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with ChainClient("http://node", transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(NodeUnavailable, match="unreachable") as down:
            await client.status()
    assert isinstance(down.value.__cause__, httpx.ConnectError)
    bad_gateway = httpx.MockTransport(lambda r: httpx.Response(502, text="bad gateway"))
    async with ChainClient("http://node", transport=bad_gateway) as client:
        with pytest.raises(NodeUnavailable, match="HTTP 502"):
            await client.status()
    async with scripted(rpc_result({"nonsense": True})) as client:
        with pytest.raises(BadResponse, match="status"):
            await client.status()


async def test_commit_results_map_to_typed_errors() -> None:
    """broadcast_tx_commit: code != 0 in the block is TxRefused, the timeout InclusionTimeout."""
    failed_in_block = {
        "check_tx": {"code": 0},
        "tx_result": {"code": 7, "log": "transfer needs 5, balance is 1"},
        "hash": "AB" * 32,
        "height": "12",
    }
    async with scripted(rpc_result(failed_in_block)) as client:
        with pytest.raises(TxRefused, match="in block 12") as refused:
            await client.broadcast(b"tx", wait=True)
    assert ("block", 12, 7) == (refused.value.stage, refused.value.height, refused.value.code)

    def timeout(request: dict[str, Any]) -> httpx.Response:
        error = {"code": -32603, "message": "Internal error"}
        error["data"] = "timed out waiting for tx to be included in a block"
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": request["id"], "error": error})

    async with scripted(timeout) as client:
        with pytest.raises(InclusionTimeout):
            await client.broadcast(b"tx", wait=True)


def test_rfc3339_round_trip() -> None:
    """Times with and without fractions parse back to the same nanoseconds."""
    for time_ns in (
        0,
        1_700_000_000_000_000_000,
        1_700_000_000_123_456_789,
        1_700_000_000_5 * 10**8,
    ):
        assert time_ns == parse_rfc3339_ns(rfc3339(time_ns))
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339_ns("yesterday")
