"""The follower: catching up from the cursor, and dropping the state of deals that failed or
went to another scheduler."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from msgspec.structs import replace

from deoss.atomic import write_atomic
from deoss.chain.modules.deals import DealState, ReassignDeal
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.schedulers import RegisterScheduler
from deoss.chain.query import QueryArgs
from deoss.core.podr2 import TagKey
from deoss.services.common.cursor import BlockCursor
from deoss.services.scheduler.follower import Follower
from tests.unit.services.scheduler.harness import (
    ALICE,
    OTHER_SCHEDULER,
    PARAMS,
    SECTORS,
    background,
    running_network,
    wait_for,
)

pytestmark = pytest.mark.anyio


async def test_a_follower_that_was_down_catches_up_and_tags(tmp_path: Path) -> None:
    """The deal succeeds while nothing follows the chain; a follower started later from the
    cursor sees deal.success, tags the file, and moves the cursor to the chain's head."""
    async with running_network(tmp_path) as net:
        write_atomic(net.service.settings.cursor_file, "1\n")
        deal_id, segments = await net.declare(os.urandom(3000))
        assert 200 == (await net.put_segment(deal_id, segments[0])).status_code
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        async with background(Follower(net.service).run):

            async def tagged() -> bool:
                args = QueryArgs(fid=deal.fid)
                return (await net.chain.query("/files/file", args, FileRecord)).tagged

            await wait_for(tagged, 10, "the file to be tagged")
        assert (BlockCursor(net.service.settings.cursor_file).read() or 0) > deal.created_at


async def test_a_failed_deal_leaves_nothing_behind(tmp_path: Path) -> None:
    params = replace(PARAMS, deal_timeout_blocks=10, max_deal_attempts=1)
    async with running_network(tmp_path, follow=True, params=params) as net:
        deal_id, segments = await net.declare(os.urandom(20_000))
        assert 200 == (await net.put_segment(deal_id, segments[0])).status_code
        assert net.service.store.has(deal_id)
        await net.wait_for_state(deal_id, DealState.FAILED)

        async def dropped() -> bool:
            return not net.service.store.has(deal_id)

        await wait_for(dropped, 5, "the failed deal's state to be dropped")


async def test_a_deal_reassigned_away_is_dropped(tmp_path: Path) -> None:
    async with running_network(tmp_path, follow=True) as net:
        await net.submit(
            OTHER_SCHEDULER,
            RegisterScheduler(
                endpoint="http://other.test",
                stake=PARAMS.scheduler_min_stake,
                tag_key=TagKey.generate(SECTORS, os.urandom).public,
            ),
        )
        deal_id, segments = await net.declare(os.urandom(20_000))
        if (await net.deal(deal_id)).scheduler != net.service.key.public_key:
            await net.submit(ALICE, ReassignDeal(deal_id=deal_id))
        assert 200 == (await net.put_segment(deal_id, segments[0])).status_code
        await net.submit(ALICE, ReassignDeal(deal_id=deal_id))

        async def dropped() -> bool:
            return not net.service.store.has(deal_id)

        await wait_for(dropped, 5, "the reassigned deal's state to be dropped")
        response = await net.put_segment(deal_id, segments[1])
        assert 409 == response.status_code
