"""Fuzzing the scheduler app from its OpenAPI (see tests/fuzz/openapi.py), in-process: the chain
and fake miners of tests/unit/services/scheduler/harness.py, one declared deal."""

from __future__ import annotations

from pathlib import Path

import pytest

from deoss.services.scheduler.app import create_app
from tests.fuzz.openapi import Fuzzer
from tests.unit.services.scheduler.harness import ALICE, BOB, MINERS, running_network

pytestmark = pytest.mark.anyio


async def test_scheduler_answers_every_request_below_500(tmp_path: Path) -> None:
    async with running_network(tmp_path) as network:
        deal_id, segments = await network.declare(b"fuzz" * 1000)
        plan = segments[0].plan
        fid = (await network.deal(deal_id)).fid
        hints = {
            "deal_id": [str(deal_id), "0", str(deal_id + 1)],
            "index": ["0", "1"],
            "fragment_hash": [h.hex() for h in plan.fragment_hashes[:2]],
            "fid": [fid],
            "order": ["0", "1"],
        }
        schema = create_app(network.service).openapi()  # the routes of the app under test
        await Fuzzer(network.app_client, schema, [ALICE, BOB, MINERS[0]], hints).run()
