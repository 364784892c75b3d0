"""The scheduler against the real miner service (in-process apps): an upload reaches SUCCESS,
the miners keep the fragments permanently, and every holder stores tags from this scheduler."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from deoss.chain.modules.deals import DealState
from deoss.chain.modules.files import FileRecord
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.core.podr2 import TAG_BYTES, block_count
from deoss.services.miner.app import create_app as create_miner_app
from deoss.services.miner.follower import ChainFollower
from deoss.services.miner.service import MinerService
from deoss.services.miner.settings import MinerSettings
from deoss.services.miner.store import FragmentStore
from deoss.services.scheduler.follower import Follower
from tests.unit.services.scheduler.harness import (
    MINERS,
    SECTORS,
    Uploader,
    background,
    miner_host,
    open_scheduler,
    running_chain,
    scheduler_settings,
    wait_for,
)

pytestmark = pytest.mark.anyio

MINER_COUNT = 13


class HostRouter(httpx.AsyncBaseTransport):
    """Sends each request to the in-process app named by its host."""

    def __init__(self, routes: dict[str, httpx.AsyncBaseTransport]) -> None:
        self.routes = routes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.routes[request.url.host].handle_async_request(request)


@asynccontextmanager
async def real_miners(
    tmp_path: Path, chain: ChainClient
) -> AsyncIterator[tuple[HostRouter, list[FragmentStore]]]:
    """Miner apps 0..MINER_COUNT-1 with their stores and chain followers."""
    routes: dict[str, httpx.AsyncBaseTransport] = {}
    stores = []
    async with AsyncExitStack() as stack:
        for i in range(MINER_COUNT):
            settings = MinerSettings(
                chain_url="http://node",
                key_path=tmp_path / f"miner{i}.toml",
                listen="127.0.0.1:0",
                data_dir=tmp_path / f"miner{i}",
            )
            store = FragmentStore(settings.fragments_dir)
            stack.callback(store.close)
            miner = MinerService.from_settings(settings, chain=chain, store=store, key=MINERS[i])
            app = create_miner_app(miner)
            follower = ChainFollower(miner, settings.cursor_path)
            await stack.enter_async_context(background(follower.run))
            routes[miner_host(i)] = httpx.ASGITransport(app=app)
            stores.append(store)
        yield HostRouter(routes), stores


async def test_upload_and_tagging_with_real_miners(tmp_path: Path) -> None:
    async with (
        running_chain(tmp_path, miner_count=MINER_COUNT) as (_, chain),
        real_miners(tmp_path, chain) as (router, stores),
        open_scheduler(chain, router, scheduler_settings(tmp_path)) as (service, client),
        background(Follower(service).run),
    ):
        user = Uploader(chain, client)
        deal_id, segments = await user.declare(os.urandom(20_000))
        for segment in segments:
            response = await user.put_segment(deal_id, segment)
            assert 200 == response.status_code, response.text
        deal = await user.wait_for_state(deal_id, DealState.SUCCESS)

        async def tagged() -> FileRecord | None:
            record = await chain.query("/files/file", QueryArgs(fid=deal.fid), FileRecord)
            return record if record.tagged else None

        record = await wait_for(tagged, 20, "the file to be tagged")
        for plan, holders in zip(record.segments, record.holders, strict=True):
            for index, holder in enumerate(holders):
                store = stores[next(i for i, k in enumerate(MINERS) if k.public_key == holder)]
                tags = await asyncio.to_thread(
                    store.read_tags, plan.fragment_hashes[index], record.tag_key_id
                )
                expected = block_count(plan.padded_size // 4, SECTORS) * TAG_BYTES
                assert expected == len(tags)

        async def promoted() -> bool:
            usage = [await asyncio.to_thread(s.usage) for s in stores]
            return 24 == sum(u["perm_places"] for u in usage)

        await wait_for(promoted, 10, "every fragment to be in a miner's permanent area")
