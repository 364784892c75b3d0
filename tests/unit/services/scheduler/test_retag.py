"""Tags on request (``PUT /tags/{hash}?fid=[&order=]``): a fragment's holder, or the claimer of
its restoral order, gets tags that verify; anyone else, a body that is not the fragment, an
unknown file or fragment, and a file whose tag key is elsewhere are refused, with no tag
computed."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from deoss.chain.modules.deals import DealState, ReassignDeal, Receipt, ReportDeal, receipt_message
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.restoral import ClaimOrder, Order, OrderState, ReportLoss
from deoss.chain.modules.schedulers import RegisterScheduler
from deoss.chain.modules.tagging import ReportTagged
from deoss.chain.modules.tags import TagConfirmation, tags_message
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.core.errors import BadProof
from deoss.core.keys import KeyPair
from deoss.core.podr2 import (
    TAG_BYTES,
    FragmentRef,
    TagKey,
    block_count,
    block_span,
    derive_challenge,
    prove,
    verify_proof,
)
from deoss.services.scheduler.enclave import Enclave
from tests.unit.services.scheduler.harness import (
    ALICE,
    BOB,
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

NO_FID = hashlib.sha256(b"no such file").hexdigest()


async def store_file(net: Network, size: int = 20_000) -> FileRecord:
    """Upload ``size`` random bytes through the scheduler; the file it is to tag."""
    deal_id, segments = await net.declare(os.urandom(size))
    for segment in segments:
        assert 200 == (await net.put_segment(deal_id, segment)).status_code
    deal = await net.wait_for_state(deal_id, DealState.SUCCESS)
    return await file_record(net, deal.fid)


async def file_record(net: Network, fid: str) -> FileRecord:
    return await net.chain.query("/files/file", QueryArgs(fid=fid), FileRecord)


def holder_of(net: Network, record: FileRecord, segment: int, index: int) -> FakeMiner:
    holder = record.holders[segment][index]
    return next(m for m in net.miners.values() if m.key.public_key == holder)


def fragment(net: Network, record: FileRecord, segment: int, index: int) -> tuple[bytes, bytes]:
    """(hash, bytes) of a fragment, as its holder stores it."""
    digest = record.segments[segment].fragment_hashes[index]
    return digest, holder_of(net, record, segment, index).fragments[digest]


def non_holder(net: Network, record: FileRecord, segment: int) -> FakeMiner:
    """A registered miner holding no fragment of ``segment`` (it may claim its orders)."""
    return next(m for m in net.miners.values() if m.key.public_key not in record.holders[segment])


async def request_tags(
    net: Network,
    who: KeyPair | None,
    fid: str,
    digest: bytes,
    body: bytes | AsyncIterator[bytes],
    *,
    order: int | None = None,
    signed_sha256: bytes | None = None,
) -> httpx.Response:
    """PUT /tags/{digest}?fid=[&order=] signed by ``who`` (unsigned if None); ``signed_sha256``
    signs that body hash instead of the body's own."""
    params: dict[str, str | int] = {"fid": fid}
    if order is not None:
        params["order"] = order
    headers = {} if signed_sha256 is None else {HEADER_BODY: signed_sha256.hex()}
    return await net.app_client.put(
        f"/tags/{digest.hex()}",
        params=params,
        content=body,
        headers=headers,
        auth=SigningAuth(who) if who is not None else httpx.Auth(),  # Auth(): none
    )


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def check_tags_prove(enclave: Enclave, digest: bytes, data: bytes, tags: bytes) -> None:
    """A challenge over the fragment is answered, from these tags, with a proof that verifies."""

    def read(name: bytes, index: int) -> tuple[bytes, bytes]:
        offset, length = block_span(index, len(data), SECTORS)
        return data[offset : offset + length], tags[TAG_BYTES * index : TAG_BYTES * (index + 1)]

    seed = hashlib.sha256(b"round").digest()
    items = derive_challenge(seed, [FragmentRef(hash=digest, size=len(data))], PARAMS.podr2)
    verify_proof(enclave.public_key, items, prove(items, read, SECTORS))


async def report_loss(net: Network, record: FileRecord, segment: int, index: int) -> int:
    """The holder reports the fragment lost; the id of the restoral order the chain opens."""
    holder = holder_of(net, record, segment, index)
    outcome = await net.chain.submit(
        holder.key, ReportLoss(fid=record.fid, segment=segment, fragment=index)
    )
    (event,) = [e for e in outcome.result.events if e.type == "restoral.order"]
    return int(event.get("id") or -1)


# --- served ------------------------------------------------------------------------------


async def test_a_holder_gets_tags_that_verify(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The answer is the enclave's tags of the fragment, block_count * 48 bytes of octets; a
    proof built from them verifies; one log line names the file, fragment and miner."""
    caplog.set_level(logging.INFO)
    async with running_network(tmp_path) as net:
        record = await store_file(net)
        assert not record.tagged and net.service.key.public_key == record.tagger
        miner = holder_of(net, record, 1, 5)
        digest, data = fragment(net, record, 1, 5)

        response = await request_tags(net, miner.key, record.fid, digest, data)

        assert 200 == response.status_code, response.text
        assert "application/octet-stream" == response.headers["content-type"]
        assert block_count(len(data), SECTORS) * TAG_BYTES == len(response.content)
        assert net.service.enclave.tag_fragment(data, digest) == response.content
        check_tags_prove(net.service.enclave, digest, data, response.content)
        with pytest.raises(BadProof):
            check_tags_prove(net.service.enclave, digest, bytes(len(data)), response.content)
        assert "tags_served" in caplog.text
        assert miner.key.address in caplog.text


async def test_after_tagging_a_holder_gets_the_tags_it_was_given(tmp_path: Path) -> None:
    """Once the file is tagged with this scheduler's key, a holder that lost its tags gets
    again exactly those the tag job delivered."""
    async with running_network(tmp_path, follow=True) as net:
        record = await store_file(net, size=3000)

        async def tagged() -> FileRecord | None:
            current = await file_record(net, record.fid)
            return current if current.tagged else None

        record = await wait_for(tagged, 15, "the file to be tagged")
        miner = holder_of(net, record, 0, 2)
        digest, data = fragment(net, record, 0, 2)

        response = await request_tags(net, miner.key, record.fid, digest, data)

        assert 200 == response.status_code, response.text
        assert miner.tags[digest] == response.content


async def test_the_claimer_of_a_restoral_order_gets_tags(tmp_path: Path) -> None:
    """A miner that claimed the order for a lost fragment gets its tags by naming the order;
    without the order, or naming an order it did not claim or that is for another fragment,
    it is refused (403)."""
    async with running_network(tmp_path) as net:
        record = await store_file(net)
        digest, data = fragment(net, record, 0, 3)
        order_id = await report_loss(net, record, 0, 3)
        claimer = non_holder(net, record, 0)
        await net.chain.submit(claimer.key, ClaimOrder(order_id=order_id))
        order = await net.chain.query("/restoral/order", QueryArgs(id=order_id), Order)
        assert (OrderState.CLAIMED, claimer.key.public_key) == (order.state, order.claimer)

        response = await request_tags(net, claimer.key, record.fid, digest, data, order=order_id)

        assert 200 == response.status_code, response.text
        assert net.service.enclave.tag_fragment(data, digest) == response.content
        check_tags_prove(net.service.enclave, digest, data, response.content)

        refused = await request_tags(net, claimer.key, record.fid, digest, data)
        assert (403, "forbidden") == (refused.status_code, error_code(refused))
        other = next(
            m
            for m in net.miners.values()
            if m is not claimer and m.key.public_key not in record.holders[0]
        )
        refused = await request_tags(net, other.key, record.fid, digest, data, order=order_id)
        assert 403 == refused.status_code
        assert "is not claimed by" in refused.json()["error"]["message"]
        other_digest, other_data = fragment(net, record, 0, 4)
        refused = await request_tags(
            net, claimer.key, record.fid, other_digest, other_data, order=order_id
        )
        assert 403 == refused.status_code
        assert "is for fragment" in refused.json()["error"]["message"]
        refused = await request_tags(net, claimer.key, record.fid, digest, data, order=999)
        assert 403 == refused.status_code


async def test_an_open_order_grants_nothing(tmp_path: Path) -> None:
    """An order nobody claimed yet lets nobody have the fragment tagged."""
    async with running_network(tmp_path) as net:
        record = await store_file(net)
        digest, data = fragment(net, record, 0, 3)
        order_id = await report_loss(net, record, 0, 3)
        restorer = non_holder(net, record, 0)

        response = await request_tags(net, restorer.key, record.fid, digest, data, order=order_id)

        assert 403 == response.status_code
        assert "is not claimed by" in response.json()["error"]["message"]


# --- refused -----------------------------------------------------------------------------


async def test_a_signer_holding_another_fragment_or_nothing_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """bob (no miner) and the holder of another fragment of the file get 403, no tags."""
    caplog.set_level(logging.INFO)
    async with running_network(tmp_path) as net:
        record = await store_file(net)
        digest, data = fragment(net, record, 0, 0)
        neighbour = holder_of(net, record, 0, 1)
        for who in (BOB, neighbour.key):
            response = await request_tags(net, who, record.fid, digest, data)
            assert (403, "forbidden") == (response.status_code, error_code(response))
            assert "does not hold" in response.json()["error"]["message"]
        assert "tags_served" not in caplog.text


async def test_a_body_that_is_not_the_fragment_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """422 fragment_mismatch for: a signed hash other than the fragment's; the right signed
    hash over other bytes of the right size; a short body; a long body; a short streamed body
    (no Content-Length)."""
    caplog.set_level(logging.INFO)
    async with running_network(tmp_path) as net:
        record = await store_file(net)
        miner = holder_of(net, record, 0, 0)
        digest, data = fragment(net, record, 0, 0)
        flipped = bytes([data[0] ^ 1]) + data[1:]

        async def streamed() -> AsyncIterator[bytes]:
            yield data[:100]
            yield data[100:-1]

        cases: list[tuple[bytes | AsyncIterator[bytes], bytes | None]] = [
            (flipped, None),
            (flipped, digest),
            (data[:-1], digest),
            (data + b"\x00", digest),
            (streamed(), digest),
        ]
        for body, signed in cases:
            response = await request_tags(
                net, miner.key, record.fid, digest, body, signed_sha256=signed
            )
            assert (422, "fragment_mismatch") == (response.status_code, error_code(response))
        assert "tags_served" not in caplog.text


async def test_an_unknown_file_or_fragment_is_not_found(tmp_path: Path) -> None:
    """404 for a fid the chain does not know and for a hash the file does not declare."""
    async with running_network(tmp_path) as net:
        record = await store_file(net, size=3000)
        miner = holder_of(net, record, 0, 0)
        digest, data = fragment(net, record, 0, 0)

        response = await request_tags(net, miner.key, NO_FID, digest, data)
        assert (404, "not_found") == (response.status_code, error_code(response))
        assert NO_FID in response.json()["error"]["message"]

        stranger = b"not a fragment of the file"
        response = await request_tags(
            net, miner.key, record.fid, hashlib.sha256(stranger).digest(), stranger
        )
        assert (404, "not_found") == (response.status_code, error_code(response))
        assert "declares no fragment" in response.json()["error"]["message"]


async def test_a_file_whose_tag_key_is_elsewhere_is_refused(tmp_path: Path) -> None:
    """Another scheduler reported the file: 403 naming it while untagged, and naming its tag
    key once it tagged the file."""
    async with running_network(tmp_path) as net:
        other_key = TagKey.generate(SECTORS, os.urandom)
        await net.submit(
            OTHER_SCHEDULER,
            RegisterScheduler(
                endpoint="http://other.test",
                stake=PARAMS.scheduler_min_stake,
                tag_key=other_key.public,
            ),
        )
        deal_id, segments = await net.declare(os.urandom(3000))
        if (await net.deal(deal_id)).scheduler == net.service.key.public_key:
            await net.submit(ALICE, ReassignDeal(deal_id=deal_id))
        deal = await net.deal(deal_id)
        miners = list(net.miners.values())[:12]
        row = []
        for index, miner in enumerate(miners):
            digest = segments[0].plan.fragment_hashes[index]
            miner.fragments[digest] = bytes(segments[0].fragments[index])
            message = receipt_message(
                CHAIN_ID, deal.id, deal.attempts, deal.fid, 0, index, digest, miner.key.public_key
            )
            row.append(Receipt(miner=miner.key.public_key, signature=miner.key.sign(message)))
        await net.submit(OTHER_SCHEDULER, ReportDeal(deal_id=deal_id, placements=[row]))
        digest = segments[0].plan.fragment_hashes[0]
        data = miners[0].fragments[digest]

        response = await request_tags(net, miners[0].key, deal.fid, digest, data)
        assert (403, "forbidden") == (response.status_code, error_code(response))
        assert OTHER_SCHEDULER.address in response.json()["error"]["message"]

        confirmations = [
            TagConfirmation(
                segment=0,
                fragment=index,
                miner=miner.key.public_key,
                signature=miner.key.sign(
                    tags_message(
                        CHAIN_ID,
                        deal.fid,
                        0,
                        index,
                        segments[0].plan.fragment_hashes[index],
                        other_key.public.key_id,
                        miner.key.public_key,
                    )
                ),
            )
            for index, miner in enumerate(miners)
        ]
        await net.submit(OTHER_SCHEDULER, ReportTagged(fid=deal.fid, confirmations=confirmations))
        assert (await file_record(net, deal.fid)).tagged
        response = await request_tags(net, miners[0].key, deal.fid, digest, data)
        assert (403, "forbidden") == (response.status_code, error_code(response))
        assert other_key.public.key_id.hex() in response.json()["error"]["message"]


async def test_an_unsigned_request_is_unauthenticated(tmp_path: Path) -> None:
    async with running_network(tmp_path) as net:
        record = await store_file(net, size=3000)
        digest, data = fragment(net, record, 0, 0)

        response = await request_tags(net, None, record.fid, digest, data)

        assert (401, "unauthenticated") == (response.status_code, error_code(response))


async def test_an_unreachable_chain_is_unavailable(tmp_path: Path) -> None:
    """The chain cannot be read: 503, not a refusal."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with running_network(tmp_path) as net:
        record = await store_file(net, size=3000)
        miner = holder_of(net, record, 0, 0)
        digest, data = fragment(net, record, 0, 0)
        async with ChainClient("http://node", transport=httpx.MockTransport(refuse)) as down:
            net.service.retagger.chain = down

            response = await request_tags(net, miner.key, record.fid, digest, data)

        assert (503, "unavailable") == (response.status_code, error_code(response))


# --- the tagger's share ------------------------------------------------------------------


async def test_at_most_tag_workers_requests_tag_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With tag_workers = 2, six requests at once compute tags two at a time; all are served."""
    running = 0
    most = 0
    real = Enclave.tag

    async def slow_tag(self: Enclave, data: bytes, digest: bytes) -> bytes:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1
        return await real(self, data, digest)

    monkeypatch.setattr(Enclave, "tag", slow_tag)
    async with running_network(tmp_path, tag_workers=2) as net:
        record = await store_file(net)
        requests = []
        for index in range(6):
            miner = holder_of(net, record, 0, index)
            digest, data = fragment(net, record, 0, index)
            requests.append(request_tags(net, miner.key, record.fid, digest, data))

        responses = await asyncio.gather(*requests)

        assert [200] * 6 == [r.status_code for r in responses]
        assert 2 == most
