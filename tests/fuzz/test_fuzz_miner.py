"""Fuzzing the miner app from its OpenAPI (see tests/fuzz/openapi.py), in-process: the chain
and the miner of tests/unit/services/miner/test_miner_app.py, one declared deal."""

from __future__ import annotations

import pytest

from tests.fuzz.openapi import Fuzzer
from tests.unit.chain.harness import key
from tests.unit.services.miner.test_miner_app import MINER, SCHEDULER, Net, net

__all__ = ["net"]

pytestmark = pytest.mark.anyio


async def test_miner_answers_every_request_below_500(net: Net) -> None:
    segment = net.plan.segments[0]
    held = await net.put(0, 0)  # one fragment held, so reads and ranges reach the store
    assert 200 == held.status_code, held.text
    hints = {
        "fragment_hash": [h.hex() for h in segment.fragment_hashes[:2]],
        "deal": [str(net.deal_id)],
        "attempt": ["1", "2"],
        "segment": ["0", "2", "3"],
        "fragment": ["0", "11", "12"],
        "fid": [net.plan.fid],
        "key": ["00" * 32],
        "reason": ["download", "restoral", "tagging", "audit"],
        "owner": [key("alice").address, "not-an-address"],
        "order": ["0", "99"],
    }
    signers = [SCHEDULER, MINER, key("alice"), key("gw")]
    await Fuzzer(net.http, net.app.openapi(), signers, hints).run()
