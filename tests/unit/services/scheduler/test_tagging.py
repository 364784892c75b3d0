"""Tagging after SUCCESS (and after a reassignment): tags reach the holders, verify, and the
chain shows the file tagged; the follower's cursor and the local copies are kept right."""

from __future__ import annotations

import hashlib
import logging
import os
import tomllib
from pathlib import Path

import pytest
from msgspec.structs import replace

from deoss.chain.errors import BadReport
from deoss.chain.modules.deals import DealState, ReassignDeal, Receipt, ReportDeal, receipt_message
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.holdings import Holding
from deoss.chain.modules.schedulers import RegisterScheduler
from deoss.chain.modules.tagging import ReportTagged
from deoss.chain.modules.tags import TagConfirmation, tags_message
from deoss.chain.query import QueryArgs
from deoss.client.errors import TxRefused
from deoss.core.errors import BadProof
from deoss.core.keys import address_of
from deoss.core.podr2 import (
    TAG_BYTES,
    FragmentRef,
    TagKey,
    TagPublicKey,
    block_count,
    block_span,
    derive_challenge,
    prove,
    verify_proof,
)
from deoss.services.common.cursor import BlockCursor
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


async def tagged_file(net: Network, fid: str) -> FileRecord:
    async def probe() -> FileRecord | None:
        record = await net.chain.query("/files/file", QueryArgs(fid=fid), FileRecord)
        return record if record.tagged else None

    return await wait_for(probe, 15, f"file {fid} to be tagged")


def check_miner_proves(miner: FakeMiner, record: FileRecord, public: TagPublicKey) -> int:
    """The miner's tags have the right length, and a challenge over all its fragments of the
    file is answered with a proof that verifies. Returns the number of fragments checked."""
    refs = []
    for plan, holders in zip(record.segments, record.holders, strict=True):
        for index, holder in enumerate(holders):
            if holder == miner.key.public_key:
                digest = plan.fragment_hashes[index]
                size = len(miner.fragments[digest])
                assert block_count(size, SECTORS) * TAG_BYTES == len(miner.tags[digest])
                refs.append(FragmentRef(hash=digest, size=size))

    def read(digest: bytes, index: int) -> tuple[bytes, bytes]:
        fragment = miner.fragments[digest]
        offset, length = block_span(index, len(fragment), SECTORS)
        tag = miner.tags[digest][TAG_BYTES * index : TAG_BYTES * (index + 1)]
        return fragment[offset : offset + length], tag

    seed = hashlib.sha256(b"round" + miner.key.public_key).digest()
    items = derive_challenge(seed, refs, PARAMS.podr2)
    verify_proof(public, items, prove(items, read, SECTORS))
    return len(refs)


async def test_after_success_every_holder_gets_tags_that_verify(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tags of the right length for every fragment, proofs that verify (and fail on a changed
    fragment); the file is tagged with this key; local copies go; the secret is never logged."""
    caplog.set_level(logging.DEBUG)
    async with running_network(tmp_path, follow=True) as net:
        deal_id, segments = await net.declare(os.urandom(20_000))
        for segment in segments:
            assert 200 == (await net.put_segment(deal_id, segment)).status_code
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        record = await tagged_file(net, deal.fid)
        assert net.service.enclave.key_id == record.tag_key_id
        public = net.service.enclave.public_key
        checked = sum(check_miner_proves(m, record, public) for m in net.miners.values() if m.tags)
        assert 24 == checked
        assert 0 == sum(m.fragment_gets for m in net.miners.values())  # local copies used
        tampered = next(m for m in net.miners.values() if m.tags)
        digest = next(iter(tampered.tags))
        tampered.fragments[digest] = bytes(len(tampered.fragments[digest]))
        with pytest.raises(BadProof, match="does not verify"):
            check_miner_proves(tampered, record, public)

        await wait_for(
            lambda: _gone(net, deal_id), 5, "the local copies to be deleted after tagging"
        )
        assert (BlockCursor(net.service.settings.cursor_file).read() or 0) > 1
        secret = tomllib.loads(net.service.settings.tag_key_file.read_text())["secret"]
        assert "file_tagged" in caplog.text
        assert secret not in caplog.text


async def _gone(net: Network, deal_id: int) -> bool:
    return not net.service.store.has(deal_id) and not net.service.tagger.jobs()


async def test_a_file_reassigned_for_tagging_is_fetched_from_its_holders(tmp_path: Path) -> None:
    """Another scheduler reports the deal but never tags; at the deadline the chain names this
    scheduler, which fetches every fragment from its holder, tags it, and reports the file."""
    params = replace(PARAMS, tag_timeout_blocks=10)
    async with running_network(tmp_path, follow=True, params=params) as net:
        other = TagKey.generate(SECTORS, os.urandom)
        await net.submit(
            OTHER_SCHEDULER,
            RegisterScheduler(
                endpoint="http://other.test", stake=PARAMS.scheduler_min_stake, tag_key=other.public
            ),
        )
        deal_id, segments = await net.declare(os.urandom(3000))
        if (await net.deal(deal_id)).scheduler == net.service.key.public_key:
            await net.submit(ALICE, ReassignDeal(deal_id=deal_id))
        deal = await net.deal(deal_id)
        miners = list(net.miners.values())[:12]
        row = []
        for index, miner in enumerate(miners):
            fragment = bytes(segments[0].fragments[index])
            digest = segments[0].plan.fragment_hashes[index]
            miner.fragments[digest] = fragment
            message = receipt_message(
                CHAIN_ID, deal.id, deal.attempts, deal.fid, 0, index, digest, miner.key.public_key
            )
            row.append(Receipt(miner=miner.key.public_key, signature=miner.key.sign(message)))
        await net.submit(OTHER_SCHEDULER, ReportDeal(deal_id=deal_id, placements=[row]))

        record = await tagged_file(net, deal.fid)
        assert net.service.key.public_key == record.tagger
        assert net.service.enclave.key_id == record.tag_key_id
        public = net.service.enclave.public_key
        assert 12 == sum(check_miner_proves(m, record, public) for m in miners)
        assert [1] * 12 == [m.fragment_gets for m in miners]
        assert not net.service.store.has(deal_id)


async def test_holders_that_refuse_tags_hold_the_file_untagged_only_for_a_while(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While some holders refuse their tags the job retries; once ``partial_after_s`` has passed
    with every segment's k holders served, the file is reported tagged anyway (so that it is
    challenged and a dead holder is eventually found and repaired)."""
    caplog.set_level(logging.INFO)
    async with running_network(tmp_path, follow=True) as net:
        net.service.tagger.partial_after_s = 3600.0
        down = list(net.miners.values())[:3]  # 14 miners, 12 holders: at least one holds
        for miner in down:
            miner.mode = "tags_down"
        deal_id, segments = await net.declare(os.urandom(20_000))
        for segment in segments:
            assert 200 == (await net.put_segment(deal_id, segment)).status_code
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        await wait_for(lambda: _retried(caplog), 10, "the tag job to retry on the refusing holders")
        record = await net.chain.query("/files/file", QueryArgs(fid=deal.fid), FileRecord)
        assert not record.tagged
        net.service.tagger.partial_after_s = 0.0
        record = await tagged_file(net, deal.fid)
        assert "tagged_partially" in caplog.text
        holders = {h for row in record.holders for h in row}
        refusing = [m for m in down if m.key.public_key in holders]
        assert refusing and not any(m.tags for m in refusing)
        public = net.service.enclave.public_key
        served = [m for m in net.miners.values() if m.tags]
        assert sum(check_miner_proves(m, record, public) for m in served) == sum(
            len(row) for row in record.holders
        ) - sum(row.count(m.key.public_key) for row in record.holders for m in refusing)


async def _retried(caplog: pytest.LogCaptureFixture) -> bool:
    return "tagging_retry" in caplog.text


async def test_a_tagger_that_reports_without_delivering_cannot_tag(tmp_path: Path) -> None:
    """The chain believes the tagging only on the holders' confirmations: a report with none,
    or with confirmations the tagger signed itself, is refused and the file stays untagged."""
    async with running_network(tmp_path) as net:  # no follower: nothing is delivered
        deal_id, segments = await net.declare(os.urandom(20_000))
        for segment in segments:
            assert 200 == (await net.put_segment(deal_id, segment)).status_code
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        record = await net.chain.query("/files/file", QueryArgs(fid=deal.fid), FileRecord)
        me = net.service.key
        with pytest.raises(TxRefused) as refused:
            await net.chain.submit(me, ReportTagged(fid=deal.fid))
        assert BadReport.code == refused.value.code
        key_id = net.service.enclave.key_id
        forged = [
            TagConfirmation(
                segment=plan.index,
                fragment=index,
                miner=holder,
                signature=me.sign(
                    tags_message(CHAIN_ID, deal.fid, plan.index, index, digest, key_id, holder)
                ),
            )
            for plan, holders in zip(record.segments, record.holders, strict=True)
            for index, (holder, digest) in enumerate(
                zip(holders, plan.fragment_hashes, strict=True)
            )
        ]
        with pytest.raises(TxRefused) as refused:
            await net.chain.submit(me, ReportTagged(fid=deal.fid, confirmations=forged))
        assert BadReport.code == refused.value.code
        record = await net.chain.query("/files/file", QueryArgs(fid=deal.fid), FileRecord)
        assert not record.tagged
        assert not any(m.tags for m in net.miners.values())


async def test_a_confirmation_that_does_not_verify_is_a_failed_delivery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Holders whose confirmations do not verify count as not served: with fewer than k good
    ones in a segment the file is not reported even past ``partial_after_s``; once they
    confirm properly it is tagged, and every holding is confirmed on chain."""
    caplog.set_level(logging.INFO)
    async with running_network(tmp_path, follow=True) as net:
        net.service.tagger.partial_after_s = 0.0
        bad = list(net.miners.values())[:11]  # 14 miners, 12 holders: at most 3 good ones
        for miner in bad:
            miner.mode = "bad_confirmation"
        deal_id, segments = await net.declare(os.urandom(20_000))
        for segment in segments:
            assert 200 == (await net.put_segment(deal_id, segment)).status_code
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        await wait_for(lambda: _retried(caplog), 10, "the tag job to retry")
        assert "does not verify" in caplog.text
        record = await net.chain.query("/files/file", QueryArgs(fid=deal.fid), FileRecord)
        assert not record.tagged
        for miner in bad:
            miner.mode = "ok"
        record = await tagged_file(net, deal.fid)
        for holder in {h for row in record.holders for h in row}:
            held = await net.chain.query(
                "/files/holdings", QueryArgs(address=address_of(holder)), list[Holding]
            )
            assert held and all(h.tags_confirmed for h in held if h.fid == deal.fid)


async def test_each_tag_set_is_mirrored_at_the_two_holders_before_it(tmp_path: Path) -> None:
    """Besides its own tags, the holder of fragment i keeps copies of the tags of fragments
    i+1 and i+2 of the segment (``tag_mirrors`` = 2, the default): every tag set is at three
    places, so it outlives this scheduler (docs/podr2.md, "Tag mirrors")."""
    async with running_network(tmp_path, follow=True) as net:
        deal_id, segments = await net.declare(os.urandom(20_000))
        for segment in segments:
            assert 200 == (await net.put_segment(deal_id, segment)).status_code
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        record = await tagged_file(net, deal.fid)
        by_key = {m.key.public_key: m for m in net.miners.values()}
        copies = 0
        for plan, holders in zip(record.segments, record.holders, strict=True):
            for index, holder in enumerate(holders):
                own = by_key[holder].tags[plan.fragment_hashes[index]]
                for keeper in (holders[(index - 1) % 12], holders[(index - 2) % 12]):
                    assert own == by_key[keeper].mirrors[(deal.fid, plan.index, index)]
                    copies += 1
        assert copies == sum(len(m.mirrors) for m in net.miners.values()) == 2 * 24


async def test_a_file_is_not_reported_tagged_before_its_mirrors_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A holder refusing mirror copies holds the report back like one refusing its own tags;
    once it accepts them, the retried job delivers what is missing and reports the file."""
    caplog.set_level(logging.INFO)
    async with running_network(tmp_path, follow=True) as net:
        net.service.tagger.partial_after_s = 3600.0
        refusing = list(net.miners.values())[:3]
        for miner in refusing:
            miner.mode = "mirrors_down"
        deal_id, segments = await net.declare(os.urandom(20_000))
        for segment in segments:
            assert 200 == (await net.put_segment(deal_id, segment)).status_code
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        await wait_for(lambda: _retried(caplog), 10, "the tag job to retry on the mirrors")
        record = await net.chain.query("/files/file", QueryArgs(fid=deal.fid), FileRecord)
        assert not record.tagged
        for miner in refusing:
            miner.mode = "ok"
        record = await tagged_file(net, deal.fid)
        assert "tagged_partially" not in caplog.text
        assert 2 * 24 == sum(len(m.mirrors) for m in net.miners.values())


async def test_alike_segments_get_their_mirrors_at_every_place(tmp_path: Path) -> None:
    """Two identical segments share their fragment hashes. Miners keep mirrors per place
    (fid, segment, fragment), so each segment's copies are delivered even where one miner
    keeps the copies of the same hash for both segments (12 miners: every segment on all)."""
    async with running_network(tmp_path, miner_count=12, follow=True) as net:
        half = os.urandom(PARAMS.layout.segment_size)
        deal_id, segments = await net.declare(half + half)
        assert segments[0].plan.fragment_hashes == segments[1].plan.fragment_hashes
        for segment in segments:
            assert 200 == (await net.put_segment(deal_id, segment)).status_code
        deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
        record = await tagged_file(net, deal.fid)
        by_key = {m.key.public_key: m for m in net.miners.values()}
        for plan, holders in zip(record.segments, record.holders, strict=True):
            for index in range(12):
                for keeper in (holders[(index - 1) % 12], holders[(index - 2) % 12]):
                    assert (deal.fid, plan.index, index) in by_key[keeper].mirrors
        assert 2 * 24 == sum(len(m.mirrors) for m in net.miners.values())
