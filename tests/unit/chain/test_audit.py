"""Audit: rounds, proofs verified on chain, rewards, slashing, faults."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from deoss.chain import errors
from deoss.chain.modules.accounts import Account
from deoss.chain.modules.audit import Challenge, KeyProof, Result, Round, SubmitProof
from deoss.chain.modules.deals import ReportDeal
from deoss.chain.modules.holdings import Holding
from deoss.chain.modules.miners import Miner, MinerState
from deoss.chain.modules.restoral import Order
from deoss.core.podr2 import prove
from tests.unit.chain.harness import (
    SECTORS,
    Chain,
    MinerDisk,
    declare_call,
    key,
    plan,
    receipts,
    report_tagged,
    scheduler_name,
    setup_network,
    upload,
)

DATA = bytes(range(256)) * 20


@pytest.fixture
def stored() -> tuple[Chain, MinerDisk]:
    """A network with one tagged two-segment file on miners 0..11, before the first round."""
    chain = Chain()
    setup_network(chain, miner_count=13)
    deal, p = upload(chain, DATA)
    tagger = scheduler_name(deal.scheduler)
    chain.run(tagger, report_tagged(chain, p.fid, tagger))
    disk = MinerDisk()
    disk.store(chain, DATA, tagger)
    return chain, disk


def to_round(chain: Chain) -> Round:
    interval = chain.params.challenge_interval_blocks
    chain.advance(interval - chain.height % interval)
    return chain.query("/audit/round", Round)


def challenge(chain: Chain, who: str) -> Challenge:
    return chain.query("/audit/challenge", Challenge, address=key(who).address)


def answer(
    chain: Chain,
    disk: MinerDisk,
    who: str,
    round_number: int | None = None,
    source: Challenge | None = None,
) -> SubmitProof:
    c = source or challenge(chain, who)
    proofs = [KeyProof(key_id=k.key_id, proof=prove(k.items, disk.read, SECTORS)) for k in c.keys]
    return SubmitProof(round=c.round if round_number is None else round_number, proofs=proofs)


def answer_all(chain: Chain, disk: MinerDisk, names: list[str]) -> list[dict[str, str]]:
    """All answers in one block (a round's deadline is a few blocks away)."""
    outcome = chain.block(*[chain.tx(n, answer(chain, disk, n)) for n in names])
    assert [0] * len(names) == [r.code for r in outcome.tx_results]
    return [e for r in outcome.tx_results for e in chain.events(r, "audit.passed")]


def miner(chain: Chain, who: str) -> Miner:
    return chain.query("/miners/miner", Miner, address=key(who).address)


def test_round_challenges_holders_of_tagged_fragments(stored: tuple[Chain, MinerDisk]) -> None:
    chain, _ = stored
    round_ = to_round(chain)
    assert (1, 12) == (round_.number, round_.challenged)
    c = challenge(chain, "miner0")
    assert 1 == len(c.keys) and c.keys[0].items
    assert errors.NotFound.code == chain.query_code(
        "/audit/challenge", address=key("miner12").address
    )


def test_untagged_files_are_not_challenged() -> None:
    chain = Chain()
    setup_network(chain)
    upload(chain, DATA)
    assert 0 == to_round(chain).challenged


def test_honest_proofs_pass_and_are_rewarded(stored: tuple[Chain, MinerDisk]) -> None:
    chain, disk = stored
    round_ = to_round(chain)
    assert 12 == len(answer_all(chain, disk, [f"miner{i}" for i in range(12)]))
    before = chain.query("/accounts/account", Account, address=key("miner0").address).balance
    outcomes = chain.advance(round_.deadline - chain.height)
    rewards = [e for o in outcomes for e in chain.events(o, "audit.reward")]
    assert 12 == len(rewards)
    share = chain.params.reward_per_round // 12
    assert (
        before + share
        == chain.query("/accounts/account", Account, address=key("miner0").address).balance
    )
    assert (share, 0, 0) == (
        miner(chain, "miner0").rewards,
        miner(chain, "miner0").slashed,
        miner(chain, "miner0").consecutive_faults,
    )


def test_corrupted_data_fails_and_is_slashed_at_once(stored: tuple[Chain, MinerDisk]) -> None:
    chain, disk = stored
    to_round(chain)
    c = challenge(chain, "miner3")
    item = c.keys[0].items[0]
    fragment = bytearray(disk.fragments[item.fragment_hash])
    fragment[0] ^= 0xFF
    disk.fragments[item.fragment_hash] = bytes(fragment)
    for index in item.indices:  # make sure a challenged block is the corrupted one
        start = index * SECTORS * 31
        fragment[start] ^= 0x55
    disk.fragments[item.fragment_hash] = bytes(fragment)
    stake = miner(chain, "miner3").stake
    result = chain.run("miner3", answer(chain, disk, "miner3"))
    failed = chain.events(result, "audit.failed")
    assert 1 == len(failed)
    slashed = stake * chain.params.slash_failed_bps // 10_000
    assert str(slashed) == failed[0]["slashed"]
    assert (stake - slashed, 1) == (
        miner(chain, "miner3").stake,
        miner(chain, "miner3").consecutive_faults,
    )
    assert Result.FAILED == challenge(chain, "miner3").result
    chain.run("miner3", answer(chain, disk, "miner3"), valid=False, code=errors.AlreadyExists.code)


def test_missing_proof_is_slashed_at_settlement(stored: tuple[Chain, MinerDisk]) -> None:
    chain, _ = stored
    round_ = to_round(chain)
    stake = miner(chain, "miner5").stake
    outcomes = chain.advance(round_.deadline - chain.height)
    missed = [e["miner"] for o in outcomes for e in chain.events(o, "audit.missed")]
    assert key("miner5").address in missed
    assert stake - stake * chain.params.slash_missed_bps // 10_000 == miner(chain, "miner5").stake
    assert Result.MISSED == challenge(chain, "miner5").result


def test_replayed_proof_from_an_earlier_round_is_refused(stored: tuple[Chain, MinerDisk]) -> None:
    chain, disk = stored
    first = to_round(chain)
    old = answer(chain, disk, "miner1")
    chain.run("miner1", old)
    second = to_round(chain)
    assert second.number == first.number + 1
    chain.run("miner1", old, valid=False, code=errors.InvalidArgument.code)
    relabelled = replace(old, round=second.number)  # old proof presented as the new round's
    result = chain.run("miner1", relabelled)
    assert 1 == len(chain.events(result, "audit.failed"))


def test_proof_of_another_miner_fails(stored: tuple[Chain, MinerDisk]) -> None:
    chain, disk = stored
    to_round(chain)
    borrowed = answer(chain, disk, "miner0")
    result = chain.run("miner1", borrowed)
    assert 1 == len(chain.events(result, "audit.failed"))


def test_submission_refusals(stored: tuple[Chain, MinerDisk]) -> None:
    chain, disk = stored
    round_ = to_round(chain)
    chain.run(
        "miner12",
        answer(chain, disk, "miner0", source=challenge(chain, "miner0")),
        valid=False,
        code=errors.NotFound.code,
    )
    chain.run(
        "miner2",
        SubmitProof(round=round_.number, proofs=[]),
        valid=False,
        code=errors.InvalidArgument.code,
    )
    late = answer(chain, disk, "miner2")
    chain.advance(round_.deadline - chain.height + 1)
    chain.run("miner2", late, valid=False, code=errors.InvalidTransition.code)


def test_repeated_faults_make_a_miner_faulty_with_restoral_orders(
    stored: tuple[Chain, MinerDisk],
) -> None:
    chain, disk = stored
    for _ in range(chain.params.max_consecutive_faults):
        round_ = to_round(chain)
        answer_all(chain, disk, [f"miner{i}" for i in range(1, 12)])
        chain.advance(round_.deadline - chain.height)
    assert MinerState.FAULTY == miner(chain, "miner0").state
    assert 0 == miner(chain, "miner1").consecutive_faults
    orders = chain.query("/restoral/orders", list[Order])
    assert [(0, 0), (1, 0)] == [(o.segment, o.fragment) for o in orders]
    # a faulty miner gets no new fragments
    p = plan(b"new data", chain)
    result = chain.run("alice", declare_call(p, "new"))
    deal_id = int(chain.events(result, "deal.declared")[0]["id"])
    from deoss.chain.modules.deals import Deal

    deal = chain.query("/deals/deal", Deal, id=deal_id)
    chain.run(
        scheduler_name(deal.scheduler),
        ReportDeal(deal_id=deal_id, placements=receipts(chain, deal_id, p)),
        valid=False,
        code=errors.BadReport.code,
    )


def test_fragments_a_miner_reported_lost_are_not_challenged(
    stored: tuple[Chain, MinerDisk],
) -> None:
    from deoss.chain.modules.files import FileRecord
    from deoss.chain.modules.restoral import ReportLoss

    chain, _ = stored
    (fid,) = {
        h.fid for h in chain.query("/files/holdings", list[Holding], address=key("miner0").address)
    }
    record = chain.query("/files/file", FileRecord, fid=fid)
    chain.run("miner0", ReportLoss(fid=fid, segment=0, fragment=0))
    lost = record.segments[0].fragment_hashes[0]
    kept = record.segments[1].fragment_hashes[0]
    round_ = to_round(chain)
    challenged = {item.fragment_hash for k in challenge(chain, "miner0").keys for item in k.items}
    assert lost not in challenged and kept in challenged
    assert 12 == round_.challenged
    # once both are reported, miner0 has nothing left to prove
    chain.run("miner0", ReportLoss(fid=fid, segment=1, fragment=0))
    chain.advance(round_.deadline - chain.height)
    assert 11 == to_round(chain).challenged
