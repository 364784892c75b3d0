"""Per-block hooks read only what is due: an empty block walks a deadline index up to its first
entry in the future, not every lease, deal, tagging or restoral deadline ever set (issue 12)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from deoss.chain.modules import deals, files, holdings, restoral, space
from deoss.chain.modules.audit import SAMPLE_PROBES_PER_FRAGMENT, SAMPLE_SCAN_LIMIT
from deoss.chain.modules.holdings import Holding
from deoss.core import codec

from .harness import Chain, key, report_tagged, scheduler_name, setup_network, upload

DATA = bytes(range(256)) * 20

FAR = (10**9).to_bytes(8, "big")
FUTURE_ENTRIES = 5_000

DEADLINE_INDEXES = {
    "space lease expiry": space.EXPIRY,
    "deal deadline": deals.DEADLINE,
    "tagging deadline": files.TAG_DEADLINE,
    "restoral claim deadline": restoral.DEADLINE,
}


@pytest.mark.parametrize("prefix", DEADLINE_INDEXES.values(), ids=DEADLINE_INDEXES.keys())
def test_an_empty_block_does_not_walk_deadlines_that_are_not_due(prefix: bytes) -> None:
    chain = Chain()
    committed = chain.machine.state._committed
    committed.update({prefix + FAR + i.to_bytes(32, "big"): b"" for i in range(FUTURE_ENTRIES)})
    walked = 0
    plain_irange = committed.irange  # SortedDict binds irange on the instance

    def counting_irange(*args: object, **kwargs: object) -> Iterator[bytes]:
        nonlocal walked
        for key_ in plain_irange(*args, **kwargs):
            if key_.startswith(prefix):
                walked += 1
            yield key_

    committed.irange = counting_irange
    chain.advance(3)
    # each block reads the first (future) entry and stops; the old code walked all 5,000
    assert walked <= 3
    assert sum(1 for k in committed if k.startswith(prefix)) == FUTURE_ENTRIES


def test_opening_an_audit_round_does_not_read_every_holding() -> None:
    chain = Chain()
    setup_network(chain, miner_count=13)
    deal, _ = upload(chain, DATA)
    tagger = scheduler_name(deal.scheduler)
    chain.run(tagger, report_tagged(chain, deal.fid, tagger))
    miner = key("miner0").public_key
    committed = chain.machine.state._committed
    many = 5_000
    for i in range(many):
        fid = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        holding = Holding(fid=fid, segment=0, fragment=0, fragment_hash=bytes(32), size=4096)
        committed[holdings.hold_key(miner, fid, 0, 0)] = codec.encode(holding)
    prefix = holdings.HOLD + miner
    walked = 0
    plain_irange = committed.irange

    def counting_irange(*args: object, **kwargs: object) -> Iterator[bytes]:
        nonlocal walked
        for key_ in plain_irange(*args, **kwargs):
            if key_.startswith(prefix):
                walked += 1
            yield key_

    committed.irange = counting_irange
    interval = chain.params.challenge_interval_blocks
    outcome = chain.advance(interval - chain.height % interval)[-1]
    assert chain.events(outcome, "audit.round")  # a round opened in this block
    # probes x keys per probe bounds the reads; the old code read all 5,000 and more
    bound = chain.params.podr2.fragments_per_challenge * SAMPLE_PROBES_PER_FRAGMENT
    assert walked <= bound * 2 * SAMPLE_SCAN_LIMIT < many


def _index_entries(chain: Chain, prefix: bytes) -> list[bytes]:
    return [k for k, _ in chain.machine.state.iter_prefix(prefix)]


def test_cleared_and_moved_deadlines_leave_no_index_entry() -> None:
    chain = Chain()
    setup_network(chain, miner_count=13)
    alice = key("alice").public_key
    assert 1 == sum(1 for k in _index_entries(chain, space.EXPIRY) if k.endswith(alice))
    chain.run("alice", space.RenewSpace(days=3))  # the lease's deadline moves
    entries = [k for k in _index_entries(chain, space.EXPIRY) if k.endswith(alice)]
    lease = space.get_lease(chain.machine.state, alice)
    assert lease is not None
    assert [space.EXPIRY + lease.expires_at.to_bytes(8, "big") + alice] == entries
    deal, _ = upload(chain, DATA)  # the deal's deadline is cleared at SUCCESS
    assert [] == _index_entries(chain, deals.DEADLINE)
    assert 1 == len(_index_entries(chain, files.TAG_DEADLINE))
    tagger = scheduler_name(deal.scheduler)
    chain.run(tagger, report_tagged(chain, deal.fid, tagger))  # tagging cleared
    assert [] == _index_entries(chain, files.TAG_DEADLINE)
