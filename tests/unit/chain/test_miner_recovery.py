"""A FAULTY miner's way back: top up, cool down, ``miners.recover`` -> ACTIVE, holding nothing it
held when it failed (its fragments stay ordered and are rebuilt elsewhere)."""

from __future__ import annotations

import pytest

from deoss.chain import errors
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.miners import (
    AddStake,
    ExitMiner,
    MinerState,
    RecoverMiner,
    recovery_height,
    required_stake,
)
from deoss.chain.modules.restoral import ClaimOrder, CompleteOrder, Order
from tests.unit.chain.harness import (
    Chain,
    MinerDisk,
    key,
    report_tagged,
    scheduler_name,
    upload,
)
from tests.unit.chain.test_audit import answer_all, challenge, miner, stored, to_round

__all__ = ["stored"]  # the fixture, imported for pytest

DATA = bytes(range(256)) * 20
OTHERS = [f"miner{i}" for i in range(1, 12)]


@pytest.fixture
def faulty(stored: tuple[Chain, MinerDisk]) -> tuple[Chain, MinerDisk]:
    """miner0 misses every round until FAULTY (slashed under its required stake)."""
    chain, disk = stored
    for _ in range(chain.params.max_consecutive_faults):
        round_ = to_round(chain)
        answer_all(chain, disk, OTHERS)
        chain.advance(round_.deadline - chain.height)
    assert MinerState.FAULTY == miner(chain, "miner0").state
    return chain, disk


def top_up(chain: Chain, who: str) -> None:
    m = miner(chain, who)
    missing = required_stake(chain.params, m.capacity_bytes) - m.stake
    if missing > 0:
        chain.run(who, AddStake(amount=missing))


def cool_down(chain: Chain, disk: MinerDisk, who: str) -> None:
    """Blocks until ``who`` may recover; the other miners answer their rounds meanwhile."""
    ready = recovery_height(chain.params, miner(chain, who))
    while chain.height + 1 < ready:
        chain.block()
        if chain.height % chain.params.challenge_interval_blocks == 0:
            answer_all(chain, disk, OTHERS)


def quiet_block(chain: Chain) -> None:
    """Step past a round's settlement, so a refused call's block writes nothing else."""
    chain.advance(1)


def test_a_faulty_miner_tops_up_recovers_and_holds_nothing_it_lost(
    faulty: tuple[Chain, MinerDisk],
) -> None:
    chain, disk = faulty
    before = miner(chain, "miner0")
    assert before.service_bytes > 0
    assert before.stake < required_stake(chain.params, before.capacity_bytes)
    top_up(chain, "miner0")
    cool_down(chain, disk, "miner0")
    result = chain.run("miner0", RecoverMiner())
    assert [{"miner": key("miner0").address, "released": "2"}] == chain.events(
        result, "miner.recovered"
    )
    after = miner(chain, "miner0")
    assert MinerState.ACTIVE == after.state
    assert 0 == after.consecutive_faults
    assert before.total_faults == after.total_faults
    assert 0 == after.service_bytes
    # the orders stand; the file record names it until the fragments are rebuilt elsewhere
    orders = chain.query("/restoral/orders", list[Order])
    assert [(0, 0), (1, 0)] == [(o.segment, o.fragment) for o in orders]
    assert all(o.former == key("miner0").public_key for o in orders)
    # it cannot claim back what it lost (it is still named in those segments)
    chain.run(
        "miner0", ClaimOrder(order_id=orders[0].id), valid=False, code=errors.Unauthorized.code
    )
    # another miner rebuilds: the placement moves, miner0's space is not touched twice
    order = orders[0]
    chain.run("miner12", ClaimOrder(order_id=order.id))
    chain.run("miner12", CompleteOrder(order_id=order.id, fragment_hash=order.fragment_hash))
    record = chain.query("/files/file", FileRecord, fid=order.fid)
    assert key("miner12").public_key == record.holders[order.segment][order.fragment]
    assert 0 == miner(chain, "miner0").service_bytes


def test_a_recovered_miner_gets_new_fragments_and_is_challenged(
    faulty: tuple[Chain, MinerDisk],
) -> None:
    chain, disk = faulty
    top_up(chain, "miner0")
    cool_down(chain, disk, "miner0")
    chain.run("miner0", RecoverMiner())
    # a new file is placed on miners 0..11 again (the harness's receipts)
    data = b"after recovery" * 300
    deal, _ = upload(chain, data, "new.bin")
    tagger = scheduler_name(deal.scheduler)
    chain.run(tagger, report_tagged(chain, deal.fid, tagger))
    service = miner(chain, "miner0").service_bytes
    assert 0 < service
    # rebuilding a fragment it held before it failed does not take from its new space
    order = chain.query("/restoral/orders", list[Order])[0]
    chain.run("miner12", ClaimOrder(order_id=order.id))
    chain.run("miner12", CompleteOrder(order_id=order.id, fragment_hash=order.fragment_hash))
    assert service == miner(chain, "miner0").service_bytes
    disk = MinerDisk()
    disk.store(chain, data, tagger)
    round_ = to_round(chain)
    own = challenge(chain, "miner0")
    assert round_.number == own.round
    # challenged only on the new file: nothing it held when it failed
    fids = {item.fragment_hash for k in own.keys for item in k.items}
    new_hashes = {
        h
        for s in chain.query("/files/file", FileRecord, fid=deal.fid).segments
        for h in s.fragment_hashes
    }
    assert fids <= new_hashes
    passed = answer_all(chain, disk, ["miner0"])
    assert [key("miner0").address] == [e["miner"] for e in passed]


@pytest.mark.parametrize(
    ("who", "state"), [("miner0", "ACTIVE"), ("miner0", "EXITING"), ("miner12", "EXITED")]
)
def test_recover_is_refused_unless_faulty(
    stored: tuple[Chain, MinerDisk], who: str, state: str
) -> None:
    chain, _ = stored
    if state != "ACTIVE":
        chain.run(who, ExitMiner())  # miner12 holds nothing: it leaves at once
    assert state == miner(chain, who).state.name
    chain.run(who, RecoverMiner(), valid=False, code=errors.InvalidTransition.code)


def test_recover_is_refused_under_stake(faulty: tuple[Chain, MinerDisk]) -> None:
    chain, disk = faulty
    cool_down(chain, disk, "miner0")
    quiet_block(chain)
    chain.run("miner0", RecoverMiner(), valid=False, code=errors.InvalidArgument.code)
    assert MinerState.FAULTY == miner(chain, "miner0").state


def test_recover_is_refused_during_the_cool_down(faulty: tuple[Chain, MinerDisk]) -> None:
    chain, disk = faulty
    top_up(chain, "miner0")
    assert chain.height + 1 < recovery_height(chain.params, miner(chain, "miner0"))
    chain.run("miner0", RecoverMiner(), valid=False, code=errors.InvalidTransition.code)
    cool_down(chain, disk, "miner0")
    chain.run("miner0", RecoverMiner())


def test_recover_by_another_account_is_refused(faulty: tuple[Chain, MinerDisk]) -> None:
    chain, disk = faulty
    top_up(chain, "miner0")
    cool_down(chain, disk, "miner0")
    quiet_block(chain)
    # the call names no miner: it recovers the sender, which is not a miner or not faulty
    chain.run("alice", RecoverMiner(), valid=False, code=errors.NotFound.code)
    chain.run("miner1", RecoverMiner(), valid=False, code=errors.InvalidTransition.code)
    assert MinerState.FAULTY == miner(chain, "miner0").state
