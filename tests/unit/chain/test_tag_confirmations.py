"""Tag confirmations: ``files.tagged`` is believed only with the holders' signed word, only
confirmed holdings are challenged, and a holding never confirmed is released and rebuilt."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from deoss.chain import errors
from deoss.chain.modules.audit import ChallengeEntry, Round
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.holdings import Holding
from deoss.chain.modules.miners import Miner
from deoss.chain.modules.restoral import TAGS_UNCONFIRMED, ClaimOrder, CompleteOrder, Order
from deoss.chain.modules.tagging import ConfirmTags, ReportTagged
from deoss.core.layout import ObjectPlan
from tests.unit.chain.harness import (
    Chain,
    key,
    report_tagged,
    scheduler_name,
    setup_network,
    tag_confirmations,
    tag_key,
    upload,
)

DATA = bytes(range(256)) * 40  # three segments, each on miners 0..11 in fragment order
K = 4  # data shards of the harness layout
CONFIRM_BLOCKS = 60  # past the first round (at 50): unconfirmed holdings are still held then


@pytest.fixture
def untagged() -> tuple[Chain, ObjectPlan, str]:
    # rounds far apart: a refused tx must not share its block with a round opening
    chain = Chain(
        tag_confirm_blocks=CONFIRM_BLOCKS, tag_timeout_blocks=100, challenge_interval_blocks=50
    )
    setup_network(chain, miner_count=14)
    deal, p = upload(chain, DATA)
    return chain, p, scheduler_name(deal.scheduler)


def first_k(p: ObjectPlan) -> set[tuple[int, int]]:
    """Positions held by miners 0..k-1 in every segment."""
    return {(s.index, i) for s in p.segments for i in range(K)}


def maybe_holding(chain: Chain, who: str, fid: str, segment: int) -> Holding | None:
    found = [
        h
        for h in chain.query("/files/holdings", list[Holding], address=key(who).address)
        if (h.fid, h.segment) == (fid, segment)
    ]
    return found[0] if found else None


def holding(chain: Chain, who: str, fid: str, segment: int) -> Holding:
    found = maybe_holding(chain, who, fid, segment)
    assert found is not None, f"{who} holds nothing of segment {segment} of {fid}"
    return found


def record(chain: Chain, fid: str) -> FileRecord:
    return chain.query("/files/file", FileRecord, fid=fid)


def test_tagged_without_confirmations_is_refused(untagged: tuple[Chain, ObjectPlan, str]) -> None:
    chain, p, tagger = untagged
    chain.run(tagger, ReportTagged(fid=p.fid), valid=False, code=errors.BadReport.code)
    assert not record(chain, p.fid).tagged


def test_tagged_needs_k_confirmations_in_every_segment(
    untagged: tuple[Chain, ObjectPlan, str],
) -> None:
    chain, p, tagger = untagged
    short = first_k(p) - {(2, 0)}
    result = chain.run(
        tagger,
        report_tagged(chain, p.fid, tagger, only=short),
        valid=False,
        code=errors.BadReport.code,
    )
    assert "segment 2: 3 holder(s) confirmed tags, 4 needed" in result.log
    chain.run(tagger, report_tagged(chain, p.fid, tagger, only=first_k(p)))
    assert record(chain, p.fid).tagged


def test_a_forged_confirmation_refuses_the_whole_report(
    untagged: tuple[Chain, ObjectPlan, str],
) -> None:
    chain, p, tagger = untagged
    good = tag_confirmations(chain, p.fid, tagger)
    forged = replace(good[5], signature=bytes([good[5].signature[0] ^ 1]) + good[5].signature[1:])
    call = ReportTagged(fid=p.fid, confirmations=[*good[:5], forged, *good[6:]])
    result = chain.run(tagger, call, valid=False, code=errors.BadReport.code)
    assert "does not verify" in result.log
    assert not record(chain, p.fid).tagged
    assert not holding(chain, "miner0", p.fid, 0).tags_confirmed


def test_a_confirmation_from_a_non_holder_is_refused(
    untagged: tuple[Chain, ObjectPlan, str],
) -> None:
    chain, p, tagger = untagged
    good = tag_confirmations(chain, p.fid, tagger)
    # miner12 holds nothing of the file: its signature is valid but it does not hold (0, 3)
    stranger = tag_confirmations(chain, p.fid, tagger, only={(0, 3)}, signer="miner12")
    call = ReportTagged(fid=p.fid, confirmations=[c for c in good if c.fragment != 3] + stranger)
    result = chain.run(tagger, call, valid=False, code=errors.BadReport.code)
    assert "the fragment is held by" in result.log
    # a duplicate position is no second confirmation either
    call = ReportTagged(fid=p.fid, confirmations=[*good, good[0]])
    chain.run(tagger, call, valid=False, code=errors.BadReport.code)


def test_a_confirmation_for_another_tag_key_is_refused(
    untagged: tuple[Chain, ObjectPlan, str],
) -> None:
    chain, p, tagger = untagged
    other = "sched1" if tagger == "sched0" else "sched0"
    # signed for the other scheduler's key: the holders hold no tags of the tagger's key
    call = report_tagged(chain, p.fid, other)
    chain.run(tagger, call, valid=False, code=errors.BadReport.code)
    assert not record(chain, p.fid).tagged


def test_audit_challenges_only_confirmed_holdings(
    untagged: tuple[Chain, ObjectPlan, str],
) -> None:
    chain, p, tagger = untagged
    chain.run(tagger, report_tagged(chain, p.fid, tagger, only=first_k(p)))
    assert holding(chain, "miner0", p.fid, 1).tags_confirmed
    assert not holding(chain, "miner7", p.fid, 1).tags_confirmed
    interval = chain.params.challenge_interval_blocks
    chain.advance(interval - chain.height % interval)
    assert maybe_holding(chain, "miner7", p.fid, 1) is not None  # held, not challenged
    assert chain.query("/audit/round", Round).challenged > 0
    challenged = {e.address for e in chain.query("/audit/challenges", list[ChallengeEntry])}
    assert challenged == {key(f"miner{i}").address for i in range(K)}
    confirmed_hashes = {p.segments[s].fragment_hashes[i] for s, i in first_k(p)}
    for entry in chain.query("/audit/challenges", list[ChallengeEntry]):
        for k in entry.challenge.keys:
            assert {item.fragment_hash for item in k.items} <= confirmed_hashes


def test_confirm_tags_rules(untagged: tuple[Chain, ObjectPlan, str]) -> None:
    chain, p, tagger = untagged
    key_id = tag_key(tagger).public.key_id
    call = ConfirmTags(fid=p.fid, key_id=key_id, segments=[0])
    chain.run("miner6", call, valid=False, code=errors.InvalidTransition.code)  # not tagged
    chain.run(tagger, report_tagged(chain, p.fid, tagger, only=first_k(p)))
    chain.run("miner12", call, valid=False, code=errors.NotFound.code)  # holds no fragment
    wrong_key = ConfirmTags(fid=p.fid, key_id=bytes(32), segments=[0])
    chain.run("miner6", wrong_key, valid=False, code=errors.InvalidArgument.code)
    for bad in ([], [0, 0], [3]):
        chain.run(
            "miner6",
            ConfirmTags(fid=p.fid, key_id=key_id, segments=bad),
            valid=False,
            code=errors.InvalidArgument.code,
        )
    chain.run("miner0", call, valid=False, code=errors.AlreadyExists.code)
    result = chain.run("miner6", ConfirmTags(fid=p.fid, key_id=key_id, segments=[0, 2]))
    assert chain.events(result, "file.tags_confirmed")
    assert holding(chain, "miner6", p.fid, 0).tags_confirmed
    assert holding(chain, "miner6", p.fid, 2).tags_confirmed
    assert not holding(chain, "miner6", p.fid, 1).tags_confirmed


def test_unconfirmed_holdings_are_released_and_rebuilt_at_their_deadline(
    untagged: tuple[Chain, ObjectPlan, str],
) -> None:
    chain, p, tagger = untagged
    chain.run(tagger, report_tagged(chain, p.fid, tagger, only=first_k(p)))
    tagged_at = chain.height
    key_id = tag_key(tagger).public.key_id
    chain.run("miner5", ConfirmTags(fid=p.fid, key_id=key_id, segments=[0, 1, 2]))
    service_before = chain.query("/miners/miner", Miner, address=key("miner6").address)
    chain.advance(tagged_at + CONFIRM_BLOCKS - 1 - chain.height)
    assert chain.query("/restoral/orders", list[Order]) == []
    chain.advance(1)  # the due height
    orders = chain.query("/restoral/orders", list[Order])
    unconfirmed = {(s.index, i) for s in p.segments for i in range(K, 12)} - {
        (s.index, 5) for s in p.segments
    }
    assert {(o.segment, o.fragment) for o in orders} == unconfirmed
    assert {o.reason for o in orders} == {TAGS_UNCONFIRMED}
    assert maybe_holding(chain, "miner6", p.fid, 0) is None  # released: no space, no challenge
    assert holding(chain, "miner5", p.fid, 0).tags_confirmed  # confirmed in time: kept
    service_after = chain.query("/miners/miner", Miner, address=key("miner6").address)
    assert service_after.service_bytes < service_before.service_bytes
    # a released holder cannot confirm any more
    chain.run(
        "miner6",
        ConfirmTags(fid=p.fid, key_id=key_id, segments=[0]),
        valid=False,
        code=errors.NotFound.code,
    )
    # the restorer that completes with the file's tag key confirms by completing
    order = next(o for o in orders if (o.segment, o.fragment) == (0, 6))
    chain.run("miner12", ClaimOrder(order_id=order.id))
    chain.run(
        "miner12",
        CompleteOrder(order_id=order.id, fragment_hash=order.fragment_hash, tag_key_id=key_id),
    )
    assert holding(chain, "miner12", p.fid, 0).tags_confirmed
    assert record(chain, p.fid).holders[0][6] == key("miner12").public_key


def test_a_restorer_without_the_tags_must_confirm_later(
    untagged: tuple[Chain, ObjectPlan, str],
) -> None:
    chain, p, tagger = untagged
    chain.run(tagger, report_tagged(chain, p.fid, tagger))
    from deoss.chain.modules.restoral import ReportLoss

    chain.run("miner3", ReportLoss(fid=p.fid, segment=1, fragment=3))
    order = chain.query("/restoral/orders", list[Order])[0]
    chain.run("miner13", ClaimOrder(order_id=order.id))
    chain.run("miner13", CompleteOrder(order_id=order.id, fragment_hash=order.fragment_hash))
    restored = holding(chain, "miner13", p.fid, 1)
    assert not restored.tags_confirmed
    assert restored.confirm_due == chain.height + CONFIRM_BLOCKS
    key_id = tag_key(tagger).public.key_id
    chain.run("miner13", ConfirmTags(fid=p.fid, key_id=key_id, segments=[1]))
    chain.advance(CONFIRM_BLOCKS + 1)
    assert holding(chain, "miner13", p.fid, 1).tags_confirmed
    assert chain.query("/restoral/orders", list[Order]) == []


def test_deleting_the_file_clears_its_confirmation_deadlines(
    untagged: tuple[Chain, ObjectPlan, str],
) -> None:
    from deoss.chain.modules.files import DeleteObject

    chain, p, tagger = untagged
    chain.run(tagger, report_tagged(chain, p.fid, tagger, only=first_k(p)))
    assert any(True for _ in chain.machine.state.iter_prefix(b"tag-due/"))
    chain.run("alice", DeleteObject(bucket="photos", name="cat.jpg"))
    assert not any(True for _ in chain.machine.state.iter_prefix(b"tag-due/"))
