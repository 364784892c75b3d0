"""The miner defending its data, in-process: answering challenges, scrubbing, repairing.

Same in-process network as test_miner_app (a DevNode behind its RPC app, miner0 under test).
Blocks are produced by the test only when a transaction waits, so the short deadlines of the
test chain are not overrun while a proof is being built. Other miners and the scheduler are
answered by an httpx.MockTransport serving the fragments and computing real tags.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import httpx
import msgspec
import pytest

from deoss.chain.errors import NotFound
from deoss.chain.modules.audit import Challenge, Result, Round
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.holdings import Holding
from deoss.chain.modules.miners import Miner, RegisterMiner
from deoss.chain.modules.restoral import ClaimOrder, CompleteOrder, Order, OrderState, ReportLoss
from deoss.chain.modules.tagging import ReportTagged
from deoss.chain.types import Call
from deoss.core.keys import KeyPair
from deoss.core.podr2 import verify_proof
from deoss.services.miner.confirm import TagConfirmer
from deoss.services.miner.peers import Peers
from deoss.services.miner.prover import MissingData, Prover, build_proofs
from deoss.services.miner.repair import Repairer
from deoss.services.miner.scrub import Scrubber, fragment_intact
from deoss.services.miner.service import MinerService
from deoss.services.miner.store import Area, FragmentStore
from tests.unit.chain.harness import key, tag_key
from tests.unit.services.miner.test_miner_app import (
    MINER,
    PARAMS,
    SCHEDULER,
    SECTORS,
    Net,
    anyio_backend,
    caught_up,
    following,
    net,
    succeed,
    tag_confirmations_for,
)

__all__ = ["anyio_backend", "net"]

pytestmark = pytest.mark.anyio

T = TypeVar("T")
RESTORER = key("miner12")  # registered by the test: holds nothing of the file
SCHED0_KEY = tag_key("sched0").public.key_id  # the tag key of the scheduler that tags the file


async def with_blocks(net: Net, work: Awaitable[T]) -> T:
    """Run ``work``, producing a block whenever a transaction waits in the mempool."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.sleep(0.005)
        if len(net.node.mempool):
            await asyncio.to_thread(net.node.produce_block)
    return task.result()


async def stored_and_tagged(net: Net, *, delivered: bool = True) -> FileRecord:
    """miner0 holds fragment 0 of every segment, with real tags; the file is tagged with every
    holder's confirmation (``delivered``) or without miner0's, which has no tags then."""
    async with following(net):
        await succeed(net)
        await caught_up(net)
    if delivered:
        for segment in net.plan.segments:
            digest = segment.fragment_hashes[0]
            tags = tag_key("sched0").tag_fragment(net.fragments[segment.index][0], digest)
            net.store.put_tags(digest, tag_key("sched0").public.key_id, tags)
    confirmations = [
        c for c in tag_confirmations_for(net) if delivered or c.miner != MINER.public_key
    ]
    net.ledger.block((SCHEDULER, ReportTagged(fid=net.plan.fid, confirmations=confirmations)))
    record: FileRecord = net.ledger.query("/files/file", FileRecord, fid=net.plan.fid)
    assert record.tagged
    return record


def open_round(net: Net) -> Round:
    """Produce blocks until a challenge round opens."""
    for _ in range(PARAMS.challenge_interval_blocks + 1):
        net.ledger.advance(1)
        if net.node.height % PARAMS.challenge_interval_blocks == 0:
            round_: Round = net.ledger.query("/audit/round", Round)
            assert net.node.height == round_.started_at
            return round_
    raise AssertionError("no round opened")


def challenge_of(net: Net, who: str = MINER.address) -> Challenge:
    challenge: Challenge = net.ledger.query("/audit/challenge", Challenge, address=who)
    return challenge


def fragment_path(net: Net, digest: bytes) -> Path:
    name = digest.hex()
    return net.tmp / "fragments" / Area.PERM / name[:2] / name


def peers_for(net: Net, signer_store: FragmentStore | None = None) -> httpx.MockTransport:
    """Other miners serve the file's fragments; the scheduler computes real tags."""
    by_hash = {
        digest: net.fragments[segment.index][j]
        for segment in net.plan.segments
        for j, digest in enumerate(segment.fragment_hashes)
    }

    def answer(request: httpx.Request) -> httpx.Response:
        digest = bytes.fromhex(request.url.path.rsplit("/", 1)[1])
        if request.method == "GET" and request.url.path.startswith("/fragments/"):
            return httpx.Response(200, content=by_hash[digest])
        if request.method == "PUT" and request.url.path.startswith("/tags/"):
            body = request.read()
            assert hashlib.sha256(body).digest() == digest
            return httpx.Response(200, content=tag_key("sched0").tag_fragment(body, digest))
        return httpx.Response(404)

    return httpx.MockTransport(answer)


def restorer_registration() -> tuple[KeyPair, Call]:
    """RESTORER registers as a miner (it holds nothing of the file)."""
    register = RegisterMiner(
        endpoint="http://127.0.0.1:9300", capacity_bytes=2**30, stake=PARAMS.stake_per_tib
    )
    return RESTORER, register


def lose_fragment_0_of_segment_1(net: Net) -> None:
    """In one block: RESTORER registers, miner0 reports fragment 0 of segment 1 lost."""
    net.ledger.block(
        restorer_registration(), (MINER, ReportLoss(fid=net.plan.fid, segment=1, fragment=0))
    )


# --- proving -------------------------------------------------------------------------------


async def test_an_honest_miner_answers_its_challenge_and_passes(net: Net) -> None:
    await stored_and_tagged(net)
    round_ = open_round(net)
    assert Result.PENDING == challenge_of(net).result
    prover = Prover(net.service, Peers(net.chain, MINER, transport=peers_for(net)))
    await with_blocks(net, prover.answer_current_round())
    assert Result.PASSED == challenge_of(net).result
    assert round_.number == prover.answered_round
    await with_blocks(net, prover.answer_current_round())  # answered once only
    assert Result.PASSED == challenge_of(net).result


async def test_a_holder_without_tags_fetches_them_and_confirms_then_is_challenged(
    net: Net,
) -> None:
    """The tagger reported without miner0's confirmation: miner0 is not challenged (it could
    not have proven), fetches its tags from the tagger, confirms, and is challenged again."""
    await stored_and_tagged(net, delivered=False)
    held = net.ledger.query("/files/holdings", list[Holding], address=MINER.address)
    assert held and not any(h.tags_confirmed for h in held)
    open_round(net)
    assert NotFound.code == net.ledger.query_code("/audit/challenge", address=MINER.address)
    confirmer = TagConfirmer(net.service, Peers(net.chain, MINER, transport=peers_for(net)))
    assert len(held) == await with_blocks(net, confirmer.confirm_pending())
    held = net.ledger.query("/files/holdings", list[Holding], address=MINER.address)
    assert all(h.tags_confirmed for h in held)
    for segment in net.plan.segments:
        assert net.store.has_tags(segment.fragment_hashes[0], SCHED0_KEY)
    assert 0 == await with_blocks(net, confirmer.confirm_pending())  # nothing left to do
    open_round(net)
    prover = Prover(net.service, Peers(net.chain, MINER, transport=peers_for(net)))
    await with_blocks(net, prover.answer_current_round())
    assert Result.PASSED == challenge_of(net).result


async def test_proofs_read_only_challenged_blocks_and_verify(net: Net) -> None:
    await stored_and_tagged(net)
    open_round(net)
    challenge = challenge_of(net)
    proofs = build_proofs(net.store, challenge, SECTORS)
    assert [k.key_id for k in challenge.keys] == [p.key_id for p in proofs]
    for key_challenge, key_proof in zip(challenge.keys, proofs, strict=True):
        verify_proof(tag_key("sched0").public, key_challenge.items, key_proof.proof)


async def test_a_corrupted_fragment_makes_the_proof_fail_on_chain(net: Net) -> None:
    """The miner does not know (it reads only the challenged blocks): it sends, the chain
    verifies, records FAILED and slashes."""
    record = await stored_and_tagged(net)
    for segment in record.segments:
        path = fragment_path(net, segment.fragment_hashes[0])
        path.chmod(0o644)
        path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    open_round(net)
    before: Miner = net.ledger.query("/miners/miner", Miner, address=MINER.address)
    prover = Prover(net.service, Peers(net.chain, MINER, transport=peers_for(net)))
    await with_blocks(net, prover.answer_current_round())
    after: Miner = net.ledger.query("/miners/miner", Miner, address=MINER.address)
    assert Result.FAILED == challenge_of(net).result
    assert after.stake < before.stake
    assert 1 == after.consecutive_faults


async def test_a_missing_fragment_is_reported_lost_and_no_proof_is_sent(net: Net) -> None:
    record = await stored_and_tagged(net)
    open_round(net)
    challenged = {i.fragment_hash for k in challenge_of(net).keys for i in k.items}
    for digest in challenged:
        fragment_path(net, digest).unlink()
    prover = Prover(net.service, Peers(net.chain, MINER, transport=peers_for(net)))
    await with_blocks(net, prover.answer_current_round())
    assert Result.PENDING == challenge_of(net).result  # MISSED at the deadline
    orders: list[Order] = net.ledger.query("/restoral/orders", list[Order])
    lost = {
        record.segments[o.segment].fragment_hashes[o.fragment]
        for o in orders
        if o.former == MINER.public_key
    }
    assert challenged <= lost


async def test_missing_tags_are_fetched_from_the_tagger_then_the_proof_passes(net: Net) -> None:
    record = await stored_and_tagged(net)
    open_round(net)
    for segment in record.segments:
        digest = segment.fragment_hashes[0]
        (net.tmp / "fragments" / "tags" / digest.hex()[:2]).joinpath(
            f"{digest.hex()}.{SCHED0_KEY.hex()}"
        ).unlink()
        with net.store._lock:  # the tag file is gone; so is its index row (a lost tag file)
            net.store._db.execute("DELETE FROM key_tags WHERE hash = ?", (digest,))
    with pytest.raises(MissingData):
        build_proofs(net.store, challenge_of(net), SECTORS)
    prover = Prover(net.service, Peers(net.chain, MINER, transport=peers_for(net)))
    await with_blocks(net, prover.answer_current_round())
    assert Result.PASSED == challenge_of(net).result


# --- scrubbing ---------------------------------------------------------------------------


async def test_scrubbing_reports_a_corrupted_fragment_and_drops_it(net: Net) -> None:
    record = await stored_and_tagged(net)
    bad = record.segments[1].fragment_hashes[0]
    path = fragment_path(net, bad)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    assert not fragment_intact(net.store, bad)
    assert fragment_intact(net.store, record.segments[0].fragment_hashes[0])
    scrubber = Scrubber(net.service, rate_bytes_per_s=10**9)
    lost = await with_blocks(net, scrubber.scrub_pass())
    assert 1 == lost
    orders: list[Order] = net.ledger.query("/restoral/orders", list[Order])
    assert [(1, 0, "reported loss")] == [(o.segment, o.fragment, o.reason) for o in orders]
    assert [(0, 0), (2, 0)] == sorted((p.segment, p.fragment) for p in net.store.all_places())
    assert 3 == scrubber.stats.fragments_checked


# --- repair ------------------------------------------------------------------------------


async def test_a_restorer_rebuilds_a_lost_fragment_with_tags_and_takes_its_place(
    net: Net, tmp_path: Path
) -> None:
    """miner0 reports fragment 0 of segment 1 lost; miner12 (holding nothing of the file)
    claims, fetches k others, rebuilds, gets tags, completes; miner0's follower drops it."""
    record = await stored_and_tagged(net)
    lose_fragment_0_of_segment_1(net)
    store = FragmentStore(tmp_path / "restorer")
    restorer = MinerService(chain=net.chain, store=store, key=RESTORER)
    repairer = Repairer(restorer, Peers(net.chain, RESTORER, transport=peers_for(net)), retry_s=0)
    try:
        async with following(net):
            await with_blocks(net, repairer.scan())
            await with_blocks(net, asyncio.gather(*repairer._active.values()))
            await caught_up(net)
        after: FileRecord = net.ledger.query("/files/file", FileRecord, fid=net.plan.fid)
        digest = record.segments[1].fragment_hashes[0]
        assert RESTORER.public_key == after.holders[1][0]
        assert net.fragments[1][0] == store.read_range(digest, 0, len(net.fragments[1][0]))
        assert tag_key("sched0").tag_fragment(net.fragments[1][0], digest) == store.read_tags(
            digest, SCHED0_KEY
        )
        assert [] == net.ledger.query("/restoral/orders", list[Order])
        assert 1 == repairer.stats.repaired
        held = net.ledger.query("/files/holdings", list[Holding], address=RESTORER.address)
        assert [True] == [h.tags_confirmed for h in held]  # completing confirmed its tags
        assert [(0, 0), (2, 0)] == sorted((p.segment, p.fragment) for p in net.store.all_places())
    finally:
        store.close()


async def test_a_restorer_under_its_required_stake_claims_nothing_until_topped_up(
    net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the chain shows the restorer's stake under what its capacity requires (slashes do
    that), the chain would refuse its claims, so the repairer sends none; once the stake is
    back, the same scan claims and repairs."""
    await stored_and_tagged(net)
    lose_fragment_0_of_segment_1(net)
    store = FragmentStore(tmp_path / "restorer")
    restorer = MinerService(chain=net.chain, store=store, key=RESTORER)
    repairer = Repairer(restorer, Peers(net.chain, RESTORER, transport=peers_for(net)), retry_s=0)
    as_on_chain = restorer.view.miner

    async def slashed(public_key: bytes) -> Miner | None:
        miner = await as_on_chain(public_key)
        return None if miner is None else msgspec.structs.replace(miner, stake=0)

    try:
        async with following(net):
            monkeypatch.setattr(restorer.view, "miner", slashed)
            await with_blocks(net, repairer.scan())
            order: Order = net.ledger.query("/restoral/order", Order, id=0)
            assert (OrderState.OPEN, 0) == (order.state, repairer.active())
            monkeypatch.setattr(restorer.view, "miner", as_on_chain)  # topped up
            await with_blocks(net, repairer.scan())
            await with_blocks(net, asyncio.gather(*repairer._active.values()))
        assert 1 == repairer.stats.repaired
        assert [] == net.ledger.query("/restoral/orders", list[Order])
    finally:
        store.close()


async def test_a_completion_naming_another_hash_is_refused(net: Net) -> None:
    await stored_and_tagged(net)
    lose_fragment_0_of_segment_1(net)
    net.ledger.block((RESTORER, ClaimOrder(order_id=0)))
    from deoss.chain.calls import sign_tx
    from tests.unit.chain.harness import CHAIN_ID

    nonce = net.ledger.nonce(RESTORER)
    wrong = CompleteOrder(order_id=0, fragment_hash=hashlib.sha256(b"other bytes").digest())
    checked = net.node.check_tx(sign_tx(RESTORER, CHAIN_ID, nonce, wrong))
    assert 0 != checked.code
    assert "is not the declared" in checked.log
    order: Order = net.ledger.query("/restoral/order", Order, id=0)
    assert (OrderState.CLAIMED, RESTORER.public_key) == (order.state, order.claimer)


async def test_tags_that_do_not_verify_are_never_kept(net: Net, tmp_path: Path) -> None:
    """A tagger answering tags of another key: the attempt fails, nothing is completed."""
    await stored_and_tagged(net)
    lose_fragment_0_of_segment_1(net)
    honest = peers_for(net)

    def forging(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and request.url.path.startswith("/tags/"):
            body = request.read()
            digest = bytes.fromhex(request.url.path.rsplit("/", 1)[1])
            return httpx.Response(200, content=tag_key("sched1").tag_fragment(body, digest))
        return honest.handle_request(request)

    store = FragmentStore(tmp_path / "restorer")
    restorer = MinerService(chain=net.chain, store=store, key=RESTORER)
    transport = httpx.MockTransport(forging)
    repairer = Repairer(restorer, Peers(net.chain, RESTORER, transport=transport), retry_s=0)
    try:
        await with_blocks(net, repairer.scan())
        await with_blocks(net, asyncio.gather(*repairer._active.values()))
        digest = net.plan.segments[1].fragment_hashes[0]
        assert not store.has_tags(digest, SCHED0_KEY)
        assert (0, 1) == (repairer.stats.repaired, repairer.stats.failed_attempts)
        (order,) = net.ledger.query("/restoral/orders", list[Order])
        assert (OrderState.CLAIMED, RESTORER.public_key) == (order.state, order.claimer)
    finally:
        store.close()


async def test_an_exiting_holder_s_fragment_and_tags_are_copied_and_checked(
    net: Net, tmp_path: Path
) -> None:
    """miner0 exits: the restorer copies the fragment and its tags from it (no tagging asked
    of the scheduler), checks the tags, and takes the place."""
    from deoss.chain.modules.miners import ExitMiner

    record = await stored_and_tagged(net)
    net.ledger.block(restorer_registration(), (MINER, ExitMiner()))
    asked: list[str] = []

    def former(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.method} {request.url.path.split('/')[1]}")
        digest = bytes.fromhex(request.url.path.rsplit("/", 1)[1])
        if request.method == "GET" and request.url.path.startswith("/fragments/"):
            return httpx.Response(200, content=net.store.read_range(digest, 0, 1024))
        if request.method == "GET" and request.url.path.startswith("/tags/"):
            assert SCHED0_KEY.hex() == request.url.params["key"]
            return httpx.Response(200, content=net.store.read_tags(digest, SCHED0_KEY))
        return httpx.Response(404)

    store = FragmentStore(tmp_path / "restorer")
    restorer = MinerService(chain=net.chain, store=store, key=RESTORER)
    peers = Peers(net.chain, RESTORER, transport=httpx.MockTransport(former))
    repairer = Repairer(restorer, peers, retry_s=0, slots=1)
    try:
        await with_blocks(net, repairer.scan())
        await with_blocks(net, asyncio.gather(*repairer._active.values()))
        after: FileRecord = net.ledger.query("/files/file", FileRecord, fid=net.plan.fid)
        moved = [s for s, row in enumerate(after.holders) if row[0] == RESTORER.public_key]
        assert 1 == len(moved) and 1 == repairer.stats.tags_copied
        digest = record.segments[moved[0]].fragment_hashes[0]
        assert net.store.read_tags(digest, SCHED0_KEY) == store.read_tags(digest, SCHED0_KEY)
        assert {"GET fragments", "GET tags"} == set(asked)
    finally:
        store.close()


def test_one_fragment_of_two_files_tagged_by_two_keys_proves_for_both(tmp_path: Path) -> None:
    """Identical segments in two files give the same fragment hash; if two schedulers tagged
    them, the miner keeps both tag sets and answers each key's challenge with its own tags."""
    from deoss.chain.modules.audit import KeyChallenge
    from deoss.core.podr2 import FragmentRef, PodrParams, derive_challenge
    from deoss.services.miner.store import FragmentPlace

    data = bytes(range(256)) * 8
    digest = hashlib.sha256(data).digest()
    store = FragmentStore(tmp_path / "store")
    try:
        for fid in ("aa" * 32, "bb" * 32):
            place = FragmentPlace(digest, fid, 0, 3, Area.PERM, len(data))
            store.put_fragment(place, [data])
        keys = [tag_key("sched0"), tag_key("sched1")]
        for tagger in keys:
            store.put_tags(digest, tagger.public.key_id, tagger.tag_fragment(data, digest))
        params = PodrParams(sectors_per_block=SECTORS)
        items = derive_challenge(b"\x01" * 32, [FragmentRef(hash=digest, size=len(data))], params)
        challenge = Challenge(
            round=1, keys=[KeyChallenge(key_id=k.public.key_id, items=items) for k in keys]
        )
        proofs = build_proofs(store, challenge, SECTORS)
        for tagger, proof in zip(keys, proofs, strict=True):
            verify_proof(tagger.public, items, proof.proof)
    finally:
        store.close()
