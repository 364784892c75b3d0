"""ChainReader: its queries are the chain's table, and its reads against an in-process node."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

import deoss
from deoss.chain.calls import QUERIES
from deoss.chain.errors import InvalidArgument, NotFound
from deoss.chain.genesis import ChainParams
from deoss.chain.modules.accounts import Account
from deoss.chain.modules.gateways import Gateway, GatewayEntry, RegisterGateway
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.chain_reads import ChainReader, Lookup
from deoss.client.errors import NodeUnavailable, QueryFailed
from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app
from tests.chain_fixtures import BALANCE, KEYS, RECIPIENT

pytestmark = pytest.mark.anyio


SRC = Path(deoss.__file__).parent
# Where a query path may be spelled: the chain's own table and the node serving it, the reader.
PATHS_MAY_APPEAR_IN = ("chain/", "node/", "client/chain_reads.py")


class Switch(httpx.AsyncBaseTransport):
    """An ASGI transport that refuses connections while ``down`` is set."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


@asynccontextmanager
async def client_of(node: DevNode) -> AsyncIterator[tuple[ChainClient, Switch]]:
    """A client of ``node``'s RPC, the node producing a block every 20 ms."""
    node.block_ms = 20
    transport = Switch(httpx.ASGITransport(app=create_app(node)))
    stop = asyncio.Event()
    producer = asyncio.create_task(node.run(stop))
    async with ChainClient("http://node", transport=transport, poll_interval_s=0.01) as client:
        try:
            yield client, transport
        finally:
            stop.set()
            await producer


# --- the reader's queries are the chain's ------------------------------------------------------


def test_every_reader_path_is_a_chain_query_and_every_chain_query_has_a_reader_method() -> None:
    paths = [query.path for _, query in ChainReader.queries()]
    assert len(paths) == len(set(paths)), "two reader methods for one query"
    assert set(QUERIES) == set(paths)


def test_no_query_path_is_spelled_outside_the_chain_node_and_reader() -> None:
    """Every other module reads through ``ChainClient.reads``: a path string literal elsewhere
    is a query that bypasses the typed reader."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith(PATHS_MAY_APPEAR_IN):
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.Constant) and node.value in QUERIES:
                found.append(f"{relative}:{node.lineno}: {node.value}")
    assert [] == found


def test_argument_builders_fill_the_fields_the_chain_reads() -> None:
    reader = ChainReader
    assert QueryArgs(owner="o", bucket="b", name="n") == reader.object.args("o", "b", "n")
    assert QueryArgs(owner="o", name="b") == reader.bucket.args("o", "b")
    assert QueryArgs(key_id="ab01") == reader.tag_key.args(b"\xab\x01")
    assert QueryArgs(id=7, limit=3) == reader.orders.args(7, 3)
    page = reader.objects.args("o", "b", prefix="p", start_after="a", limit=5)
    assert QueryArgs(owner="o", bucket="b", prefix="p", start_after="a", limit=5) == page


# --- against an in-process node ----------------------------------------------------------------


async def test_reads_decode_the_chain_records(node: DevNode) -> None:
    """Reads return the records typed; a Lookup of an existing record returns it."""
    async with client_of(node) as (client, _):
        params = await client.reads.params()
        account = await client.reads.account(KEYS[0].address)
        unknown = await client.reads.account(RECIPIENT)  # zero, not NotFound
        await client.submit(
            KEYS[1], RegisterGateway(endpoint="http://gw", stake=params.gateway_stake)
        )
        gateway = await client.reads.gateway(KEYS[1].address)
        required = await client.reads.gateway.required(KEYS[1].address)
        listed = await client.reads.gateways()
    assert isinstance(params, ChainParams) and BALANCE == account.balance
    assert Account() == unknown
    assert isinstance(gateway, Gateway) and "http://gw" == gateway.endpoint
    assert gateway == required
    assert [GatewayEntry(address=KEYS[1].address, endpoint="http://gw")] == listed


async def test_lookup_is_none_on_not_found_and_required_raises_the_chains_answer(
    node: DevNode,
) -> None:
    async with client_of(node) as (client, _):
        missing = (
            await client.reads.file("00" * 32),
            await client.reads.deal(12345),
            await client.reads.gateway(KEYS[2].address),
            await client.reads.round(),
        )
        with pytest.raises(QueryFailed, match="no deal 12345") as failed:
            await client.reads.deal.required(12345)
    assert (None, None, None, None) == missing
    assert (NotFound.code, "/deals/deal") == (failed.value.code, failed.value.path)


async def test_other_failures_pass_through_a_lookup(node: DevNode) -> None:
    """Only NotFound becomes None: a bad argument and an unreachable node raise as before."""
    async with client_of(node) as (client, transport):
        with pytest.raises(QueryFailed) as bad_address:
            await client.reads.lease("not-an-address")
        with pytest.raises(QueryFailed):
            await client.reads.lease.required("not-an-address")
        transport.down = True
        with pytest.raises(NodeUnavailable):
            await client.reads.file("00" * 32)
        with pytest.raises(NodeUnavailable):
            await client.reads.miners()
    assert InvalidArgument.code == bad_address.value.code


def test_a_lookup_is_a_read_of_a_record_that_may_be_missing() -> None:
    lookups = {name for name, query in ChainReader.queries() if isinstance(query, Lookup)}
    expected = {"lease", "gateway", "bucket", "scheduler", "tag_key", "miner", "deal", "file"}
    assert expected | {"object", "order", "round", "challenge"} == lookups
