"""ChainView: the miner's reads over ChainClient.reads, its error mapping and its caches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from deoss.client.chain import ChainClient
from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app
from deoss.services.common.cache import TtlCache
from deoss.services.common.errors import BadRequest, NotFound, ServiceUnavailable
from deoss.services.miner.chain_view import REASON_TTL_S, ChainView
from tests.chain_fixtures import KEYS, anyio_backend, node

__all__ = ["anyio_backend", "node"]

pytestmark = pytest.mark.anyio


class Counting(httpx.AsyncBaseTransport):
    """An ASGI transport that counts requests and refuses them while ``down`` is set."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests = 0
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.requests += 1
        return await self.inner.handle_async_request(request)


@asynccontextmanager
async def view_of(node: DevNode) -> AsyncIterator[tuple[ChainView, Counting]]:
    transport = Counting(httpx.ASGITransport(app=create_app(node)))
    async with ChainClient("http://node", transport=transport) as chain:
        yield ChainView(chain), transport


async def test_missing_records_are_none_and_a_missing_deal_is_the_miners_not_found(
    node: DevNode,
) -> None:
    async with view_of(node) as (view, _):
        missing = (
            await view.file("00" * 32),
            await view.deal_or_none(7),
            await view.miner(KEYS[0].public_key),
            await view.scheduler(KEYS[0].public_key),
            await view.order(3),
            await view.tag_key(bytes(32)),
            await view.object_fid(KEYS[0].public_key, "b", "n"),
        )
        owns = await view.owns_fid(KEYS[0].address, "00" * 32)
        acts = await view.gateway_acts_for(KEYS[1].public_key, KEYS[0].address)
        with pytest.raises(NotFound, match="no deal 7 on chain"):
            await view.deal(7)
    assert (None,) * 7 == missing
    assert (False, False) == (owns, acts)


async def test_chain_failures_become_service_errors(node: DevNode) -> None:
    """A refused query is BadRequest (it names what was read); an unreachable node 503."""
    async with view_of(node) as (view, transport):
        with pytest.raises(BadRequest, match="cannot read what an owner owns"):
            await view.owns_fid("not-an-address", "00" * 32)
        transport.down = True
        with pytest.raises(ServiceUnavailable, match="cannot read the file: .*unreachable"):
            await view.file("00" * 32)


async def test_parameters_are_read_once(node: DevNode) -> None:
    async with view_of(node) as (view, transport):
        first = await view.params()
        asked = transport.requests
        again = await view.params()
    assert first == again == node.machine.params
    assert asked == transport.requests


async def test_only_a_confirmed_reason_is_remembered(node: DevNode) -> None:
    checks: list[bool] = []

    async def check(answer: bool) -> bool:
        checks.append(answer)
        return answer

    async with view_of(node) as (view, _):
        denied = [await view.confirmed(("k", 1), lambda: check(False)) for _ in range(2)]
        allowed = [await view.confirmed(("k", 2), lambda: check(True)) for _ in range(2)]
    assert ([False, False], [True, True]) == (denied, allowed)
    assert [False, False, True] == checks  # the second True came from the cache


def test_ttl_cache_entries_expire() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(clock=lambda: now[0], max_entries=2)
    cache.put("a", 1, REASON_TTL_S)
    assert 1 == cache.get("a")
    now[0] = REASON_TTL_S + 0.1
    assert cache.get("a") is None
    cache.put("a", 1, 10)
    cache.put("b", 2, 10)
    cache.put("c", 3, 10)  # full: cleared first, bounded
    assert (None, None, 3) == (cache.get("a"), cache.get("b"), cache.get("c"))
