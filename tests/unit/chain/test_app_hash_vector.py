"""Known answer: the app hash after every block of a fixed transaction stream (accounts, space,
buckets, deals with reports, tagging, miners, an audit round with a failed proof, a restoral
order, an exit) equals tests/vectors/app_hash.json. A difference is a consensus-breaking change:
nodes of the old and new code would fork. If it is intended, regenerate with
``DEOSS_REGEN_VECTORS=1 pytest tests/unit/chain/test_app_hash_vector.py`` and say so in the
commit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deoss.chain.machine import BlockOutcome
from deoss.chain.modules import miners, restoral, space
from deoss.chain.modules.accounts import Transfer
from deoss.chain.modules.audit import Round
from deoss.chain.modules.buckets import CreateBucket, DeleteBucket
from deoss.chain.modules.tagging import ConfirmTags
from tests.unit.chain.harness import (
    Chain,
    GiB,
    MinerDisk,
    answer_challenge,
    key,
    report_tagged,
    scheduler_name,
    setup_network,
    tag_key,
    upload,
)

VECTOR = Path(__file__).parents[2] / "vectors" / "app_hash.json"
DATA = bytes(range(256)) * 20  # two segments


class Recorder(Chain):
    """A chain that keeps (height, app hash) from genesis on, after every block."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[dict[str, object]] = []
        self._record()

    def _record(self) -> None:
        height, app_hash = self.machine.info()
        self.history.append({"height": height, "app_hash": app_hash.hex()})

    def block(self, *txs: bytes) -> BlockOutcome:
        outcome = super().block(*txs)
        self._record()
        return outcome


def stream() -> list[dict[str, object]]:
    """Run the fixed stream; every transaction in it is checked to do what it is there for."""
    chain = Recorder()
    setup_network(chain, miner_count=13)
    outcome = chain.block(
        chain.tx("alice", Transfer(to=key("bob").address, amount=10**9)),
        chain.tx("bob", space.BuySpace(gib=1, days=3)),
        chain.tx("bob", CreateBucket(name="notes")),
        chain.tx("carol", space.BuySpace(gib=0, days=1)),  # refused: a failed tx is hashed too
    )
    assert [0, 0, 0] == [r.code for r in outcome.tx_results[:3]] and outcome.tx_results[3].code
    chain.run("bob", DeleteBucket(name="notes"))
    deal, p = upload(chain, DATA)
    tagger = scheduler_name(deal.scheduler)
    everywhere = {(s.index, i) for s in p.segments for i in range(12)}
    # miner4 confirms its segment-0 tags late, in its own tx
    chain.run(tagger, report_tagged(chain, p.fid, tagger, only=everywhere - {(0, 4)}))
    key_id = tag_key(tagger).public.key_id
    chain.run("miner4", ConfirmTags(fid=p.fid, key_id=key_id, segments=[0]))
    disk = MinerDisk()
    disk.store(chain, DATA, tagger)
    chain.run(
        "miner13",
        miners.RegisterMiner(
            endpoint="http://127.0.0.1:9113", capacity_bytes=GiB, stake=chain.params.stake_per_tib
        ),
    )
    chain.run("miner12", miners.AddStake(amount=10**6))
    interval = chain.params.challenge_interval_blocks
    chain.advance(interval - chain.height % interval)
    round_ = chain.query("/audit/round", Round)
    assert round_.challenged == 12
    answers: list[bytes] = []
    for i in range(12):
        if i == 5:  # miner5 misses the round
            continue
        answer = answer_challenge(chain, disk, f"miner{i}", corrupt=i == 11)
        assert answer is not None, f"miner{i} cannot answer its challenge"
        answers.append(chain.tx(f"miner{i}", answer))
    outcome = chain.block(*answers)
    assert [0] * len(answers) == [r.code for r in outcome.tx_results]
    assert 1 == sum(len(chain.events(r, "audit.failed")) for r in outcome.tx_results)
    chain.advance(round_.deadline - chain.height)
    chain.run("miner3", restoral.ReportLoss(fid=p.fid, segment=1, fragment=3))
    (order,) = chain.query("/restoral/orders", list[restoral.Order])
    chain.run("miner12", restoral.ClaimOrder(order_id=order.id))
    chain.run(
        "miner12",
        restoral.CompleteOrder(
            order_id=order.id, fragment_hash=order.fragment_hash, tag_key_id=key_id
        ),
    )
    chain.run("miner13", miners.ExitMiner())
    chain.advance(2)
    return chain.history


def test_app_hashes_match_the_vector() -> None:
    got = stream()
    if os.environ.get("DEOSS_REGEN_VECTORS") == "1":
        note = (
            "(height, app hash) after each block of stream() in "
            "tests/unit/chain/test_app_hash_vector.py; a change is consensus-breaking"
        )
        VECTOR.write_text(json.dumps({"note": note, "blocks": got}, indent=1) + "\n")
        pytest.skip(f"regenerated {VECTOR}")
    want = json.loads(VECTOR.read_text())["blocks"]
    for mine, recorded in zip(got, want, strict=True):
        assert mine == recorded, (
            f"app hash at height {recorded['height']} differs from {VECTOR.name}: this is a "
            "consensus-breaking change (old and new nodes would fork). If intended, regenerate "
            "with DEOSS_REGEN_VECTORS=1 and say so in the commit."
        )
