"""The tagger's reads from holders: a holder that streams far more than its fragment is cut off
just past the fragment's size, and the others are tagged all the same."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest
from msgspec.structs import replace

from deoss.chain.modules.deals import ReassignDeal, Receipt, ReportDeal, receipt_message
from deoss.chain.modules.schedulers import RegisterScheduler
from deoss.core.podr2 import TagKey
from tests.unit.services.flood import CHUNK_BYTES, Flood
from tests.unit.services.scheduler.harness import (
    ALICE,
    CHAIN_ID,
    OTHER_SCHEDULER,
    PARAMS,
    SECTORS,
    FakeMiner,
    Network,
    running_network,
    wait_for,
)

pytestmark = pytest.mark.anyio

FLOOD_BYTES = 64 * 1024 * 1024  # far past the fragment; bounded should the read not stop


async def reassign_for_tagging(net: Network, data: bytes) -> list[tuple[FakeMiner, bytes, int]]:
    """Another scheduler reports the deal and never tags, so this one must fetch every
    fragment from its holder. Returns (holder, fragment hash, fragment size) per fragment."""
    other = TagKey.generate(SECTORS, os.urandom)
    await net.submit(
        OTHER_SCHEDULER,
        RegisterScheduler(
            endpoint="http://other.test", stake=PARAMS.scheduler_min_stake, tag_key=other.public
        ),
    )
    deal_id, segments = await net.declare(data)
    if (await net.deal(deal_id)).scheduler == net.service.key.public_key:
        await net.submit(ALICE, ReassignDeal(deal_id=deal_id))
    deal = await net.deal(deal_id)
    holders, row = [], []
    for index, miner in enumerate(list(net.miners.values())[:12]):
        digest = segments[0].plan.fragment_hashes[index]
        fragment = bytes(segments[0].fragments[index])
        miner.fragments[digest] = fragment
        message = receipt_message(
            CHAIN_ID, deal.id, deal.attempts, deal.fid, 0, index, digest, miner.key.public_key
        )
        row.append(Receipt(miner=miner.key.public_key, signature=miner.key.sign(message)))
        holders.append((miner, digest, len(fragment)))
    await net.submit(OTHER_SCHEDULER, ReportDeal(deal_id=deal_id, placements=[row]))
    return holders


async def test_a_holder_streaming_far_more_than_its_fragment_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The flooding holder's read stops one network chunk past the fragment's size, the job
    retries with a TaggingError saying so, and every honest holder gets its tags."""
    caplog.set_level(logging.INFO)
    params = replace(PARAMS, tag_timeout_blocks=10)
    async with running_network(tmp_path, follow=True, params=params) as net:
        floods: list[Flood] = []
        flooder = list(net.miners.values())[0]
        honest_handle = flooder.handle

        async def flood_fragments(request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and request.url.path.startswith("/fragments/"):
                floods.append(Flood(FLOOD_BYTES))
                return httpx.Response(200, stream=floods[-1])
            return await honest_handle(request)

        flooder.handle = flood_fragments  # type: ignore[method-assign]
        holders = await reassign_for_tagging(net, os.urandom(3000))
        size = holders[0][2]

        async def retried() -> bool:
            return "longer than the" in caplog.text and all(
                digest in miner.tags for miner, digest, _ in holders[1:]
            )

        await wait_for(retried, 15, "a retry after the flood, and the honest holders tagged")
    assert floods
    for flood in floods:
        assert size < flood.sent_bytes <= size + CHUNK_BYTES
        assert flood.closed
    assert holders[0][1] not in flooder.tags
