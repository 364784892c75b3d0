"""Deals and files: declare, assign, reassign, report, fail, tag, deduplicate, delete."""

from __future__ import annotations

import msgspec
import pytest

from deoss.chain import errors
from deoss.chain.modules import deals
from deoss.chain.modules.buckets import Bucket, CreateBucket
from deoss.chain.modules.deals import Deal, DealCounts, DealState, ReassignDeal, ReportDeal
from deoss.chain.modules.declare import DeclareDeal, check_declare
from deoss.chain.modules.files import DeleteObject, FileRecord, ObjectEntry, ObjectRecord
from deoss.chain.modules.miners import ExitMiner, Miner
from deoss.chain.modules.schedulers import Scheduler
from deoss.chain.modules.space import BuySpace, Lease
from deoss.chain.modules.tagging import ReportTagged
from deoss.chain.types import BlockContext, TxContext
from tests.unit.chain.harness import (
    Chain,
    declare_call,
    key,
    plan,
    receipts,
    report_tagged,
    scheduler_name,
    setup_network,
    upload,
)

DATA = bytes(range(256)) * 20  # 5120 bytes: two segments of the 4096-byte test layout


@pytest.fixture
def chain() -> Chain:
    c = Chain()
    setup_network(c)
    return c


def lease(chain: Chain, who: str = "alice") -> Lease:
    return chain.query("/space/lease", Lease, address=key(who).address)


def declare(
    chain: Chain, data: bytes = DATA, name: str = "cat.jpg", who: str = "alice", owner: str = ""
) -> Deal:
    result = chain.run(who, declare_call(plan(data, chain), name, owner=owner))
    deal_id = int(chain.events(result, "deal.declared")[0]["id"])
    return chain.query("/deals/deal", Deal, id=deal_id)


def test_declare_locks_space_and_is_assigned_in_the_same_block(chain: Chain) -> None:
    deal = declare(chain)
    assert (DealState.ASSIGNED, 1) == (deal.state, deal.attempts)
    assert scheduler_name(deal.scheduler) in ("sched0", "sched1")
    assert (len(DATA), 0) == (lease(chain).locked_bytes, lease(chain).used_bytes)
    assert (
        1
        == chain.query(
            "/buckets/bucket", Bucket, owner=key("alice").address, name="photos"
        ).pending_deals
    )


def test_gateway_declares_for_a_user_who_authorized_it(chain: Chain) -> None:
    deal = declare(chain, who="gw", owner=key("alice").address)
    assert (key("alice").public_key, key("gw").public_key) == (deal.owner, deal.declarer)
    p = plan(b"other", chain)
    chain.run(
        "gw",
        declare_call(p, "x", owner=key("bob").address),
        valid=False,
        code=errors.Unauthorized.code,
    )


def bad_declarations(chain: Chain) -> list[tuple[str, DeclareDeal, int]]:
    p = plan(DATA, chain)
    good = declare_call(p)
    seg0 = p.segments[0]
    short = msgspec.structs.replace(seg0, fragment_hashes=seg0.fragment_hashes[:-1])
    padded = msgspec.structs.replace(p.segments[1], padded_size=4096)
    other = plan(b"different bytes", chain)
    return [
        ("no bucket", msgspec.structs.replace(good, bucket="nope"), errors.NotFound.code),
        ("bad name", msgspec.structs.replace(good, name=""), errors.InvalidArgument.code),
        ("control char", msgspec.structs.replace(good, name="a\nb"), errors.InvalidArgument.code),
        (
            "fid of other data",
            msgspec.structs.replace(good, fid=other.fid),
            errors.InvalidArgument.code,
        ),
        ("fid not hex", msgspec.structs.replace(good, fid="zz"), errors.InvalidArgument.code),
        (
            "size too big",
            msgspec.structs.replace(good, size=len(DATA) + 1),
            errors.InvalidArgument.code,
        ),
        ("size too small", msgspec.structs.replace(good, size=4096), errors.InvalidArgument.code),
        (
            "missing segment",
            msgspec.structs.replace(good, segments=p.segments[:1]),
            errors.InvalidArgument.code,
        ),
        (
            "11 fragment hashes",
            msgspec.structs.replace(good, segments=[short, p.segments[1]]),
            errors.InvalidArgument.code,
        ),
        (
            "wrong padding",
            msgspec.structs.replace(good, segments=[seg0, padded]),
            errors.InvalidArgument.code,
        ),
    ]


@pytest.mark.parametrize("case", range(10))
def test_bad_declarations_are_refused(chain: Chain, case: int) -> None:
    _, call, code = bad_declarations(chain)[case]
    chain.run("alice", call, valid=False, code=code)
    assert 0 == lease(chain).locked_bytes


def test_declare_needs_space(chain: Chain) -> None:
    chain.run("bob", CreateBucket(name="bobs"))
    p = plan(b"data", chain)
    chain.run(
        "bob", declare_call(p, bucket="bobs"), valid=False, code=errors.InsufficientSpace.code
    )
    chain.run("bob", BuySpace(gib=1, days=1))
    chain.run("bob", declare_call(p, bucket="bobs"))


def test_same_name_or_fid_in_progress_is_refused(chain: Chain) -> None:
    declare(chain)
    chain.run(
        "alice", declare_call(plan(b"other", chain)), valid=False, code=errors.AlreadyExists.code
    )
    chain.run(
        "alice",
        declare_call(plan(DATA, chain), "copy.jpg"),
        valid=False,
        code=errors.AlreadyExists.code,
    )


def test_report_makes_a_file_and_moves_space_to_used(chain: Chain) -> None:
    deal, p = upload(chain, DATA)
    assert DealState.SUCCESS == deal.state
    record = chain.query("/files/file", FileRecord, fid=p.fid)
    assert [[key(f"miner{i}").public_key for i in range(12)]] * 2 == record.holders
    assert (0, len(DATA)) == (lease(chain).locked_bytes, lease(chain).used_bytes)
    obj = chain.query(
        "/files/object", ObjectRecord, owner=key("alice").address, bucket="photos", name="cat.jpg"
    )
    assert (p.fid, len(DATA)) == (obj.fid, obj.size)
    miner = chain.query("/miners/miner", Miner, address=key("miner0").address)
    assert 1024 + 256 == miner.service_bytes  # fragment of a full and of a 1024-byte segment
    assert DealCounts(success=1) == chain.query("/deals/counts", DealCounts)
    assert [] != chain.query(
        "/files/objects", list[ObjectEntry], owner=key("alice").address, bucket="photos"
    )


def report_cases(chain: Chain, deal: Deal) -> list[tuple[str, list[list[deals.Receipt]], int]]:
    p = plan(DATA, chain)
    good = receipts(chain, deal.id, p)
    duplicate = [[*good[0][:11], good[0][0]], good[1]]
    forged = [
        [*good[0][:11], deals.Receipt(miner=good[0][11].miner, signature=good[0][10].signature)],
        good[1],
    ]
    stranger = receipts(
        chain,
        deal.id,
        p,
        holders=[[f"miner{i}" for i in range(11)] + ["carol"], [f"miner{i}" for i in range(12)]],
    )
    return [
        ("one segment short", good[:1], errors.BadReport.code),
        ("11 receipts", [good[0][:11], good[1]], errors.BadReport.code),
        ("same miner twice", duplicate, errors.BadReport.code),
        ("forged receipt", forged, errors.BadReport.code),
        ("not a miner", stranger, errors.BadReport.code),
    ]


@pytest.mark.parametrize("case", range(5))
def test_bad_reports_are_refused(chain: Chain, case: int) -> None:
    deal = declare(chain)
    _, placements, code = report_cases(chain, deal)[case]
    chain.run(
        scheduler_name(deal.scheduler),
        ReportDeal(deal_id=deal.id, placements=placements),
        valid=False,
        code=code,
    )
    assert DealState.ASSIGNED == chain.query("/deals/deal", Deal, id=deal.id).state


def test_report_by_another_scheduler_is_refused(chain: Chain) -> None:
    deal = declare(chain)
    other = "sched1" if scheduler_name(deal.scheduler) == "sched0" else "sched0"
    placements = receipts(chain, deal.id, plan(DATA, chain))
    chain.run(
        other,
        ReportDeal(deal_id=deal.id, placements=placements),
        valid=False,
        code=errors.Unauthorized.code,
    )


def test_report_refuses_exiting_miner_and_full_miner() -> None:
    chain = Chain()
    setup_network(chain, miner_count=13)
    chain.run("miner12", ExitMiner())
    deal = declare(chain)
    holders = [[f"miner{i}" for i in range(11)] + ["miner12"]] * 2
    placements = receipts(chain, deal.id, plan(DATA, chain), holders=holders)
    chain.run(
        scheduler_name(deal.scheduler),
        ReportDeal(deal_id=deal.id, placements=placements),
        valid=False,
        code=errors.BadReport.code,
    )


def test_a_stale_reassign_is_refused_and_changes_nothing(chain: Chain) -> None:
    """A reassign naming an assignment the deal already left (the chain moved it at its
    deadline, or someone else asked first) must not move it again."""
    deal = declare(chain)
    assert 1 == deal.attempts
    chain.run("alice", ReassignDeal(deal_id=deal.id, attempt=1))
    moved = chain.query("/deals/deal", Deal, id=deal.id)
    assert 2 == moved.attempts
    chain.run(
        "alice",
        ReassignDeal(deal_id=deal.id, attempt=1),
        valid=False,
        code=errors.InvalidTransition.code,
    )
    assert moved == chain.query("/deals/deal", Deal, id=deal.id)
    chain.run("alice", ReassignDeal(deal_id=deal.id, attempt=2))
    assert 3 == chain.query("/deals/deal", Deal, id=deal.id).attempts


def test_reassign_on_request_then_fail_after_max_attempts(chain: Chain) -> None:
    deal = declare(chain)
    first = deal.scheduler
    chain.run("bob", ReassignDeal(deal_id=deal.id), valid=False, code=errors.Unauthorized.code)
    chain.run("alice", ReassignDeal(deal_id=deal.id))
    deal = chain.query("/deals/deal", Deal, id=deal.id)
    assert (2, DealState.ASSIGNED) == (deal.attempts, deal.state)
    assert first != deal.scheduler  # another scheduler when there is one
    chain.run("alice", ReassignDeal(deal_id=deal.id))
    result = chain.run("alice", ReassignDeal(deal_id=deal.id))
    assert "3 attempts" in chain.events(result, "deal.failed")[0]["reason"]
    deal = chain.query("/deals/deal", Deal, id=deal.id)
    assert DealState.FAILED == deal.state
    assert (0, 0) == (lease(chain).locked_bytes, lease(chain).used_bytes)
    chain.run(
        "alice", ReassignDeal(deal_id=deal.id), valid=False, code=errors.InvalidTransition.code
    )
    chain.run(
        scheduler_name(deal.scheduler),
        ReportDeal(deal_id=deal.id, placements=receipts(chain, deal.id, plan(DATA, chain))),
        valid=False,
        code=errors.InvalidTransition.code,
    )
    assert DealCounts(failed=1) == chain.query("/deals/counts", DealCounts)
    declare(chain)  # the name is free again


def test_deadline_reassigns_then_fails(chain: Chain) -> None:
    deal = declare(chain)
    timeout = chain.params.deal_timeout_blocks
    outcome = chain.advance(timeout)[-1]
    assert "2" == chain.events(outcome, "deal.assigned")[0]["attempt"]
    outcomes = chain.advance(2 * timeout)
    failed = [e for o in outcomes for e in chain.events(o, "deal.failed")]
    assert [str(deal.id)] == [e["id"] for e in failed]
    assert 0 == lease(chain).locked_bytes


def test_deal_without_any_scheduler_fails_at_deadline() -> None:
    chain = Chain()
    setup_network(chain, scheduler_count=0)
    deal = declare(chain)
    assert DealState.OPEN == deal.state
    chain.advance(chain.params.deal_timeout_blocks)
    assert DealState.FAILED == chain.query("/deals/deal", Deal, id=deal.id).state


def test_duplicate_fid_is_stored_once(chain: Chain) -> None:
    _, p = upload(chain, DATA)
    result = chain.run("alice", declare_call(p, "copy.jpg"))
    assert [] == chain.events(result, "deal.declared")
    assert 1 == len(chain.events(result, "deal.deduplicated"))
    assert 2 == chain.query("/files/file", FileRecord, fid=p.fid).owners
    assert 2 * len(DATA) == lease(chain).used_bytes
    miner = chain.query("/miners/miner", Miner, address=key("miner0").address)
    assert 1024 + 256 == miner.service_bytes  # stored once
    chain.run("alice", DeleteObject(bucket="photos", name="cat.jpg"))
    assert 1 == chain.query("/files/file", FileRecord, fid=p.fid).owners
    result = chain.run("alice", DeleteObject(bucket="photos", name="copy.jpg"))
    assert [{"fid": p.fid}] == chain.events(result, "file.deleted")
    assert 0 != chain.query_code("/files/file", fid=p.fid)
    assert 0 == chain.query("/miners/miner", Miner, address=key("miner0").address).service_bytes
    assert 0 == lease(chain).used_bytes


def test_owns_counts_an_owners_objects_of_a_fid(chain: Chain) -> None:
    """/files/owns: what a miner asks before serving a download (one indexed read)."""

    def owns(who: str) -> int:
        return chain.query("/files/owns", int, owner=key(who).address, fid=p.fid)

    _, p = upload(chain, DATA)
    assert (1, 0) == (owns("alice"), owns("bob"))
    chain.run("alice", declare_call(p, "copy.jpg"))
    assert 2 == owns("alice")
    chain.run("alice", DeleteObject(bucket="photos", name="cat.jpg"))
    assert 1 == owns("alice")
    chain.run("alice", DeleteObject(bucket="photos", name="copy.jpg"))
    assert 0 == owns("alice")
    assert 0 != chain.query_code("/files/owns", owner=key("alice").address, fid="xyz")


def test_delete_refusals(chain: Chain) -> None:
    upload(chain, DATA)
    chain.run(
        "alice", DeleteObject(bucket="photos", name="nope"), valid=False, code=errors.NotFound.code
    )
    chain.run(
        "bob",
        DeleteObject(bucket="photos", name="cat.jpg", owner=key("alice").address),
        valid=False,
        code=errors.Unauthorized.code,
    )
    chain.run("gw", DeleteObject(bucket="photos", name="cat.jpg", owner=key("alice").address))


def test_tag_report_by_the_reporter_only_once(chain: Chain) -> None:
    deal, p = upload(chain, DATA)
    reporter = scheduler_name(deal.scheduler)
    other = "sched1" if reporter == "sched0" else "sched0"
    chain.run(other, ReportTagged(fid=p.fid), valid=False, code=errors.Unauthorized.code)
    chain.run(reporter, report_tagged(chain, p.fid, reporter))
    record = chain.query("/files/file", FileRecord, fid=p.fid)
    scheduler = chain.query("/schedulers/scheduler", Scheduler, address=key(reporter).address)
    assert (True, scheduler.tag_key.key_id) == (record.tagged, record.tag_key_id)
    chain.run(reporter, ReportTagged(fid=p.fid), valid=False, code=errors.InvalidTransition.code)
    chain.run(reporter, ReportTagged(fid="ab" * 32), valid=False, code=errors.NotFound.code)


def test_late_tagging_is_penalised_and_handed_to_another_scheduler(chain: Chain) -> None:
    deal, p = upload(chain, DATA)
    late = scheduler_name(deal.scheduler)
    other = "sched1" if late == "sched0" else "sched0"
    outcome = chain.advance(chain.params.tag_timeout_blocks)[-1]
    event = chain.events(outcome, "file.tag_reassigned")[0]
    assert (key(late).address, key(other).address) == (event["late"], event["tagger"])
    stake = chain.query("/schedulers/scheduler", Scheduler, address=key(late).address)
    assert (chain.params.scheduler_min_stake - chain.params.late_tag_penalty, 1) == (
        stake.stake,
        stake.penalties,
    )
    chain.run(late, ReportTagged(fid=p.fid), valid=False, code=errors.Unauthorized.code)
    chain.run(other, report_tagged(chain, p.fid, other))


def test_deadline_grows_with_the_number_of_segments() -> None:
    chain = Chain(deal_blocks_per_segment=3)
    setup_network(chain)
    deal = declare(chain)  # two segments
    assert chain.height + chain.params.deal_timeout_blocks + 2 * 3 == deal.deadline


def test_receipts_of_an_earlier_deal_of_the_same_fid_are_refused(chain: Chain) -> None:
    """Receipts are public once reported. After the object is deleted (its fragments dropped)
    and the same bytes declared again, the new deal's scheduler must not report the old
    receipts: that would record a file nobody stored and get honest miners slashed."""
    first, p = upload(chain, DATA)
    old = receipts(chain, first.id, p)
    chain.run("alice", DeleteObject(bucket="photos", name="cat.jpg"))
    again = declare(chain)
    assert (p.fid, 1) == (again.fid, again.attempts)
    chain.run(
        scheduler_name(again.scheduler),
        ReportDeal(deal_id=again.id, placements=old),
        valid=False,
        code=errors.BadReport.code,
    )
    assert again == chain.query("/deals/deal", Deal, id=again.id)
    assert 0 != chain.query_code("/files/file", fid=p.fid)
    chain.run(
        scheduler_name(again.scheduler),
        ReportDeal(deal_id=again.id, placements=receipts(chain, again.id, p)),
    )


def test_receipts_of_an_earlier_assignment_are_refused(chain: Chain) -> None:
    """A receipt names the assignment it was given for: receipts collected (or seen in a
    refused report) under one scheduler's assignment do not pass for the next one."""
    deal = declare(chain)
    p = plan(DATA, chain)
    earlier = receipts(chain, deal.id, p)
    chain.run("alice", ReassignDeal(deal_id=deal.id, attempt=1))
    moved = chain.query("/deals/deal", Deal, id=deal.id)
    assert 2 == moved.attempts
    chain.run(
        scheduler_name(moved.scheduler),
        ReportDeal(deal_id=deal.id, placements=earlier),
        valid=False,
        code=errors.BadReport.code,
    )
    assert moved == chain.query("/deals/deal", Deal, id=deal.id)
    chain.run(
        scheduler_name(moved.scheduler),
        ReportDeal(deal_id=deal.id, placements=receipts(chain, deal.id, p)),
    )


ONE_SEGMENT = bytes(range(256)) * 12  # 3072 bytes: one segment, fragments of 768 bytes


def bob_with_space(chain: Chain) -> None:
    chain.run("bob", BuySpace(gib=1, days=10))
    chain.run("bob", CreateBucket(name="bobs"))


def test_a_dedup_declaration_with_a_forged_size_and_hashes_is_refused(chain: Chain) -> None:
    """The fid is a root over segment hashes only: anyone who read a fid and its segment hash
    on chain can declare it as a 1-byte object with made-up fragment hashes. Deduplicating that
    would charge 1 byte and keep the owner's file stored after the owner deletes it."""
    _, stored = upload(chain, ONE_SEGMENT)
    bob_with_space(chain)
    tiny = plan(b"x", chain)
    forged = msgspec.structs.replace(tiny.segments[0], hash=stored.segments[0].hash)
    call = DeclareDeal(bucket="bobs", name="free", size=1, fid=stored.fid, segments=[forged])
    chain.run("bob", call, valid=False, code=errors.InvalidArgument.code)
    assert 0 == lease(chain, "bob").used_bytes
    assert 1 == chain.query("/files/file", FileRecord, fid=stored.fid).owners
    chain.run("alice", DeleteObject(bucket="photos", name="cat.jpg"))
    assert 0 != chain.query_code("/files/file", fid=stored.fid)


def test_a_dedup_declaration_must_match_every_fragment_hash(chain: Chain) -> None:
    """Right sizes, right segment hash, one fragment hash made up: refused."""
    _, stored = upload(chain, ONE_SEGMENT)
    bob_with_space(chain)
    segment = stored.segments[0]
    hashes = [*segment.fragment_hashes[:-1], bytes(32)]
    forged = msgspec.structs.replace(segment, fragment_hashes=hashes)
    call = DeclareDeal(
        bucket="bobs", name="copy", size=stored.size, fid=stored.fid, segments=[forged]
    )
    chain.run("bob", call, valid=False, code=errors.InvalidArgument.code)
    assert 1 == chain.query("/files/file", FileRecord, fid=stored.fid).owners


def test_an_honest_dedup_is_charged_the_stored_file_size(chain: Chain) -> None:
    """Another user declaring the same bytes shares the file and pays for all of them; the same
    bytes with a zero byte added inside the last segment's padding (same fid, same fragments)
    are that object's own size, a download being cut to it."""
    data = DATA[:-2]  # the last segment is 1022 bytes, padded to 1024
    _, stored = upload(chain, data)
    bob_with_space(chain)
    result = chain.run("bob", declare_call(stored, "copy", bucket="bobs"))
    assert 1 == len(chain.events(result, "deal.deduplicated"))
    assert len(data) == lease(chain, "bob").used_bytes
    padded = plan(data + b"\x00", chain)
    assert stored.fid == padded.fid
    chain.run("bob", declare_call(padded, "copy0", bucket="bobs"))
    assert 2 * len(data) + 1 == lease(chain, "bob").used_bytes
    assert 3 == chain.query("/files/file", FileRecord, fid=stored.fid).owners


def test_the_receipt_message_names_the_deal_and_the_assignment() -> None:
    """Known answer for the receipt format (docs/chain.md): the v2 domain, then the canonical
    array [chain_id, deal_id, attempt, fid, segment, fragment, fragment_hash, miner]."""
    fid, digest, miner = "ab" * 32, bytes(range(32)), bytes(range(32, 64))
    message = deals.receipt_message("c", 7, 2, fid, 1, 3, digest, miner)
    domain = b"deoss-receipt-v2"
    assert domain == message[: len(domain)]
    assert ["c", 7, 2, fid, 1, 3, digest, miner] == msgspec.msgpack.decode(message[len(domain) :])
    other = {deals.receipt_message("c", 8, 2, fid, 1, 3, digest, miner)}
    other.add(deals.receipt_message("c", 7, 1, fid, 1, 3, digest, miner))
    assert message not in other and 2 == len(other)


def test_the_checks_of_a_declaration_write_nothing(chain: Chain) -> None:
    p = plan(DATA, chain)
    state = chain.machine.state
    block = BlockContext(chain.machine.chain_id, chain.height + 1, 0, b"", b"")
    ctx = TxContext(block=block, sender=key("alice").public_key)
    checked = check_declare(state, ctx, declare_call(p))
    assert (key("alice").public_key, False) == (checked.owner, checked.deduplicates)
    assert ([], []) == (state.pending_writes(), ctx.events)
    upload(chain, DATA)
    assert check_declare(state, ctx, declare_call(p, "copy.jpg")).deduplicates
    assert [] == state.pending_writes()


def test_a_declaration_breaking_several_rules_gets_the_first_in_check_order(
    chain: Chain,
) -> None:
    chain.run("bob", CreateBucket(name="photos"))  # bob has a bucket and no space
    p = plan(DATA, chain)
    chain.run("bob", declare_call(p), valid=False, code=errors.InsufficientSpace.code)
    chain.run("alice", declare_call(p))  # a deal for this fid is now in progress
    chain.run("bob", declare_call(p), valid=False, code=errors.AlreadyExists.code)
    other = plan(b"x" * 10, chain)
    chain.run("bob", declare_call(other, ""), valid=False, code=errors.InvalidArgument.code)
    chain.run("bob", declare_call(other, bucket="none"), valid=False, code=errors.NotFound.code)


def test_a_stored_fid_declared_otherwise_is_refused_before_the_space_check(chain: Chain) -> None:
    chain.run("bob", CreateBucket(name="photos"))
    _, p = upload(chain, DATA)
    chain.run("bob", declare_call(p), valid=False, code=errors.InsufficientSpace.code)
    wrong = [bytes(32), *p.segments[0].fragment_hashes[1:]]
    segments = [msgspec.structs.replace(p.segments[0], fragment_hashes=wrong), *p.segments[1:]]
    call = msgspec.structs.replace(declare_call(p), segments=segments)
    chain.run("bob", call, valid=False, code=errors.InvalidArgument.code)
