"""Tags a miner is given are checked against the fragment before they are kept, and a bad tag
found at proving time is a handled case: the miner replaces it or misses the round, never
crashes (docs/services.md, "Miner").

Same in-process network as test_miner_app (a DevNode behind its RPC app, miner0 under test).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from pathlib import Path

import httpx
import pytest
from py_arkworks_bls12381 import G1Point

from deoss.chain.modules.audit import Result
from deoss.client.signing import SigningAuth
from deoss.core.errors import BadProof
from deoss.core.podr2 import TAG_BYTES, _coefficient, block_count, check_tags
from deoss.services.miner.peers import PeerError, Peers
from deoss.services.miner.prover import Prover
from tests.unit.chain.harness import tag_key
from tests.unit.services.miner.test_miner_app import (
    MINER,
    SCHEDULER,
    SECTORS,
    Net,
    anyio_backend,
    caught_up,
    following,
    net,
    succeed,
)
from tests.unit.services.miner.test_miner_audit import (
    SCHED0_KEY,
    challenge_of,
    open_round,
    peers_for,
    stored_and_tagged,
    with_blocks,
)

__all__ = ["anyio_backend", "net"]

pytestmark = pytest.mark.anyio


def tag_file(net: Net, digest: bytes) -> Path:
    name = digest.hex()
    return net.tmp / "fragments" / "tags" / name[:2] / f"{name}.{SCHED0_KEY.hex()}"


async def put_tags(net: Net, segment: int, fragment: int, tags: bytes) -> httpx.Response:
    digest = net.plan.segments[segment].fragment_hashes[fragment]
    return await net.http.put(
        f"/tags/{digest.hex()}?fid={net.plan.fid}", content=tags, auth=SigningAuth(SCHEDULER)
    )


def garbage_tags(net: Net, segment: int = 0, fragment: int = 0) -> bytes:
    """Bytes of the right length for the fragment's tags that are not curve points (a zero
    first byte lacks the compressed-point flag)."""
    size = len(net.fragments[segment][fragment])
    return bytes(block_count(size, SECTORS) * TAG_BYTES)


# --- tags PUT by the tagger --------------------------------------------------------------------


async def test_garbage_tags_from_the_tagger_are_refused_and_not_stored(net: Net) -> None:
    """The tagger itself sends bytes of the right length that are not tags: 422, nothing kept
    (before, they were stored, and the first challenge of the fragment stopped the miner)."""
    async with following(net):
        await succeed(net)
        await caught_up(net)
    digest = net.plan.segments[0].fragment_hashes[0]
    for tags in (garbage_tags(net), os.urandom(len(garbage_tags(net)))):
        response = await put_tags(net, 0, 0, tags)
        assert 422 == response.status_code, response.text
        assert "fragment_mismatch" == response.json()["error"]["code"]
        assert "do not verify" in response.json()["error"]["message"]
        assert not net.store.has_tags(digest, SCHED0_KEY)
        assert not tag_file(net, digest).exists()


async def test_real_tags_of_another_key_or_fragment_are_refused(net: Net) -> None:
    """Well-formed tags, but by another tag key, or of another fragment of the same size."""
    async with following(net):
        await succeed(net)
        await caught_up(net)
    plan = net.plan.segments[0]
    digest, other = plan.fragment_hashes[0], plan.fragment_hashes[1]
    data, other_data = net.fragments[0][0], net.fragments[0][1]
    assert len(data) == len(other_data)
    wrong_key = tag_key("sched1").tag_fragment(data, digest)
    wrong_fragment = tag_key("sched0").tag_fragment(other_data, other)
    for tags in (wrong_key, wrong_fragment):
        response = await put_tags(net, 0, 0, tags)
        assert 422 == response.status_code, response.text
    assert not net.store.has_tags(digest, SCHED0_KEY)


async def test_the_tagger_s_real_tags_are_checked_and_stored(net: Net) -> None:
    async with following(net):
        await succeed(net)
        await caught_up(net)
    digest = net.plan.segments[2].fragment_hashes[0]  # the short last segment
    tags = tag_key("sched0").tag_fragment(net.fragments[2][0], digest)
    response = await put_tags(net, 2, 0, tags)
    assert 200 == response.status_code, response.text
    assert len(tags) // TAG_BYTES == response.json()["blocks"]
    assert tags == net.store.read_tags(digest, SCHED0_KEY)


# (0, 2) is on the curve y² = x³ + 4 and 3·(0, 2) = O: a point of order 3, outside G1
ORDER_3 = G1Point.from_compressed_bytes_unchecked(b"\x80" + bytes(47))


def with_order_3_part(tags: bytes, index: int) -> bytes:
    """The tags with the point of order 3 added to the tag of block ``index``."""
    start = index * TAG_BYTES
    tag = G1Point.from_compressed_bytes_unchecked(tags[start : start + TAG_BYTES]) + ORDER_3
    return tags[:start] + tag.to_compressed_bytes() + tags[start + TAG_BYTES :]


def test_a_tag_with_a_part_of_small_order_is_refused_whatever_the_coefficients() -> None:
    """A tagger adding a point of order 3 to one tag: the batch check alone passes whenever
    that block's coefficient is a multiple of 3 (one try in three; the tagger may PUT again
    until it passes), and the miner's later proofs fail on chain whenever it is not. Every tag
    is checked to be in G1 first, so no choice of coefficients lets it through."""
    data = bytes(range(256)) * 4
    digest = hashlib.sha256(data).digest()
    tagger = tag_key("sched0")
    spoiled = with_order_3_part(tagger.tag_fragment(data, digest), 0)
    blind = next(  # coefficients under which the batch cannot see the order-3 part
        seed
        for seed in (hashlib.sha256(b"%d" % i).digest() for i in itertools.count())
        if int.from_bytes(_coefficient(seed, digest, 0), "big") % 3 == 0
    )
    with pytest.raises(BadProof, match="not a point of the group"):
        check_tags(tagger.public, digest, data, spoiled, blind)


async def test_tags_with_a_part_of_small_order_are_refused_by_the_miner(net: Net) -> None:
    async with following(net):
        await succeed(net)
        await caught_up(net)
    digest = net.plan.segments[0].fragment_hashes[0]
    tags = tag_key("sched0").tag_fragment(net.fragments[0][0], digest)
    response = await put_tags(net, 0, 0, with_order_3_part(tags, 2))
    assert 422 == response.status_code, response.text
    assert not net.store.has_tags(digest, SCHED0_KEY)


# --- a bad tag at proving time -------------------------------------------------------------


def spoil_challenged_tags(net: Net) -> set[bytes]:
    """Overwrite, on disk, the stored tags of every challenged fragment with bytes of the same
    length that are not curve points (what a store written before tags were checked, or a
    damaged disk, may hold). Returns the challenged fragment hashes."""
    challenged = {i.fragment_hash for k in challenge_of(net).keys for i in k.items}
    for digest in challenged:
        path = tag_file(net, digest)
        path.write_bytes(bytes(path.stat().st_size))
    return challenged


async def test_a_garbage_stored_tag_is_replaced_from_the_tagger_and_the_proof_passes(
    net: Net,
) -> None:
    await stored_and_tagged(net)
    open_round(net)
    challenged = spoil_challenged_tags(net)
    prover = Prover(net.service, Peers(net.chain, MINER, transport=peers_for(net)))
    await with_blocks(net, prover.answer_current_round())
    assert Result.PASSED == challenge_of(net).result
    for digest in challenged:  # the fetched tags replaced the garbage, and they verify
        data = net.store.read_range(digest, 0, net.store.places_of(digest)[0].size)
        tags = net.store.read_tags(digest, SCHED0_KEY)
        check_tags(tag_key("sched0").public, digest, data, tags, os.urandom(32))


async def test_garbage_tags_and_a_tagger_that_answers_garbage_never_stop_the_prover(
    net: Net,
) -> None:
    """The stored tags are garbage and the tagger answers garbage too: the miner cannot prove
    this round (MISSED at the deadline); its prover keeps running and retrying (before, the
    first challenge of such a tag stopped the miner), and the tagger's bad tags are not kept."""
    await stored_and_tagged(net)
    open_round(net)
    challenged = spoil_challenged_tags(net)
    asked = asyncio.Event()
    requests: list[str] = []
    wanted = 0  # requests after which the prover has retried twice

    def garbage(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        if wanted and len(requests) >= wanted:
            asked.set()
        body = request.read()
        count = block_count(len(body), SECTORS)
        return httpx.Response(200, content=b"\x01" * (count * TAG_BYTES))  # not points either

    peers = Peers(net.chain, MINER, transport=httpx.MockTransport(garbage))
    prover = Prover(net.service, peers, poll_s=0.01)
    with pytest.raises(PeerError, match="do not verify"):
        await prover.answer_current_round()
    assert requests  # the garbage on disk was dropped and fresh tags asked for
    wanted = 3 * len(requests)  # each attempt asks as much again
    running = asyncio.create_task(prover.run())
    waiting = asyncio.create_task(asked.wait())
    try:
        async with asyncio.timeout(10):
            await asyncio.wait([running, waiting], return_when=asyncio.FIRST_COMPLETED)
        assert asked.is_set()
        assert not running.done()
    finally:
        for task in (running, waiting):
            task.cancel()
        await asyncio.gather(running, waiting, return_exceptions=True)
    assert Result.PENDING == challenge_of(net).result  # no proof sent: MISSED at the deadline
    # the first unusable set found was dropped; no tags from this tagger were kept
    assert any(not net.store.has_tags(digest, SCHED0_KEY) for digest in challenged)
    for digest in challenged:
        if net.store.has_tags(digest, SCHED0_KEY):
            assert b"\x01" not in net.store.read_tags(digest, SCHED0_KEY)
