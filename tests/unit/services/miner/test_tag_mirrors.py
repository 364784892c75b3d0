"""Mirror copies of tags (docs/podr2.md, "Tag mirrors"): a miner keeps, from the file's tagger,
the tags of other fragments of the segments it holds, and serves them only to a party with a
reason; a restorer and a holder missing its tags take a verified mirror before asking the
tagger, so a tagger gone for good no longer stops repair.

Same in-process network as test_miner_app (a DevNode behind its RPC app, miner0 under test,
holding fragment 0 of every segment; miner j holds fragment j).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deoss.chain.modules.audit import Result
from deoss.chain.modules.files import FileRecord
from deoss.chain.modules.restoral import ClaimOrder, Order, ReportLoss
from deoss.client.signing import HEADER_BODY, SigningAuth
from deoss.core.keys import KeyPair
from deoss.core.podr2 import TAG_BYTES
from deoss.services.miner.app import create_app
from deoss.services.miner.mirrors import mirror_order
from deoss.services.miner.peers import Peers
from deoss.services.miner.prover import Prover
from deoss.services.miner.repair import Repairer
from deoss.services.miner.service import MinerService
from deoss.services.miner.settings import MinerSettings
from deoss.services.miner.store import Area, FragmentPlace, FragmentStore, MirrorPlace, StoreError
from tests.unit.chain.harness import key, tag_key
from tests.unit.services.miner.test_miner_app import (
    MINER,
    SCHEDULER,
    Net,
    anyio_backend,
    caught_up,
    following,
    net,
    succeed,
)
from tests.unit.services.miner.test_miner_audit import (
    RESTORER,
    SCHED0_KEY,
    challenge_of,
    lose_fragment_0_of_segment_1,
    open_round,
    restorer_registration,
    stored_and_tagged,
    with_blocks,
)

__all__ = ["anyio_backend", "net"]

pytestmark = pytest.mark.anyio

TAGGER = tag_key("sched0")


def real_tags(net: Net, segment: int, fragment: int) -> bytes:
    digest = net.plan.segments[segment].fragment_hashes[fragment]
    return TAGGER.tag_fragment(net.fragments[segment][fragment], digest)


def mirror_url(net: Net, segment: int, fragment: int, digest: bytes | None = None) -> str:
    digest = digest or net.plan.segments[segment].fragment_hashes[fragment]
    return f"/mirror-tags/{digest.hex()}?fid={net.plan.fid}&segment={segment}&fragment={fragment}"


async def put_mirror(
    net: Net,
    segment: int,
    fragment: int,
    body: bytes | None = None,
    signer: KeyPair = SCHEDULER,
    http: httpx.AsyncClient | None = None,
    **options: Any,
) -> httpx.Response:
    content = real_tags(net, segment, fragment) if body is None else body
    return await (http or net.http).put(
        mirror_url(net, segment, fragment), content=content, auth=SigningAuth(signer), **options
    )


async def get_mirror(
    net: Net, segment: int, fragment: int, asker: KeyPair, order: int | None = None
) -> httpx.Response:
    digest = net.plan.segments[segment].fragment_hashes[fragment]
    query = f"?key={SCHED0_KEY.hex()}" + ("" if order is None else f"&order={order}")
    return await net.http.get(f"/mirror-tags/{digest.hex()}{query}", auth=SigningAuth(asker))


def nothing_mirrored(net: Net) -> bool:
    directory = net.tmp / "fragments" / "mirrors"
    return 0 == net.store.mirror_bytes() and [] == list(directory.glob("*/*"))


async def placed(net: Net) -> None:
    async with following(net):
        await succeed(net)
        await caught_up(net)


# --- PUT /mirror-tags ------------------------------------------------------------------------


async def test_the_tagger_s_mirror_of_another_fragment_is_kept(net: Net) -> None:
    await placed(net)
    response = await put_mirror(net, 2, 1)  # the short last segment
    assert 200 == response.status_code, response.text
    tags = real_tags(net, 2, 1)
    assert len(tags) // TAG_BYTES == response.json()["blocks"]
    digest = net.plan.segments[2].fragment_hashes[1]
    (kept,) = net.store.mirrors_of(digest, SCHED0_KEY)
    assert (net.plan.fid, 2, 1) == (kept.fid, kept.segment, kept.fragment)
    assert tags == net.store.read_mirror(kept)
    assert len(tags) == net.store.mirror_bytes()


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("another scheduler", 403, "is to be tagged by"),
        ("own fragment", 400, "this miner's own fragment"),
        ("wrong hash", 422, "not "),
        ("fragment index", 422, "has 12 fragments"),
        ("declared length", 422, "bytes, not"),
        ("short body", 422, "bytes of tags for"),
        ("oversize stream", 413, "larger than"),
        ("not points", 422, "not a point of the group G1"),
    ],
)
async def test_bad_mirrors_are_refused_and_leave_nothing(
    net: Net, case: str, status: int, message: str
) -> None:
    await placed(net)
    tags = real_tags(net, 0, 1)
    digest = net.plan.segments[0].fragment_hashes[1]
    if case == "another scheduler":
        response = await put_mirror(net, 0, 1, signer=key("sched1"))
    elif case == "own fragment":
        response = await put_mirror(net, 0, 0)
    elif case == "wrong hash":
        other = net.plan.segments[0].fragment_hashes[2].hex()
        response = await net.http.put(
            mirror_url(net, 0, 1).replace(digest.hex(), other),
            content=tags,
            auth=SigningAuth(SCHEDULER),
        )
    elif case == "fragment index":
        response = await net.http.put(
            mirror_url(net, 0, 1).replace("fragment=1", "fragment=12"),
            content=tags,
            auth=SigningAuth(SCHEDULER),
        )
    elif case == "declared length":
        response = await put_mirror(net, 0, 1, body=tags + bytes(TAG_BYTES))
    elif case in ("short body", "oversize stream"):  # streamed: no Content-Length
        body = tags[:-1] if case == "short body" else tags * 64

        async def stream() -> AsyncIterator[bytes]:
            yield body

        response = await net.http.put(
            mirror_url(net, 0, 1),
            content=stream(),
            auth=SigningAuth(SCHEDULER),
            headers={HEADER_BODY: hashlib.sha256(body).hexdigest()},
        )
    else:
        response = await put_mirror(net, 0, 1, body=bytes(len(tags)))
    assert status == response.status_code, response.text
    assert message in response.json()["error"]["message"]
    assert nothing_mirrored(net)


async def test_a_miner_holding_nothing_of_the_segment_keeps_no_mirror(
    net: Net, tmp_path: Path
) -> None:
    """The chain names the miners of a segment; any other miner refuses its mirrors, so a
    tagger cannot fill a miner with tag copies of files it holds nothing of."""
    await placed(net)
    store = FragmentStore(tmp_path / "outsider")
    settings = MinerSettings(
        chain_url="http://node",
        key_path=tmp_path / "k.toml",
        listen="127.0.0.1:0",
        data_dir=tmp_path,
    )
    app = create_app(
        MinerService.from_settings(settings, chain=net.chain, store=store, key=RESTORER)
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://miner") as http:
            response = await put_mirror(net, 0, 1, http=http)
        assert 403 == response.status_code, response.text
        assert "holds no fragment of segment 0" in response.json()["error"]["message"]
        assert 0 == store.mirror_bytes()
    finally:
        store.close()


# --- GET /mirror-tags --------------------------------------------------------------------------


async def test_mirrors_are_served_only_to_the_fragment_s_holder_or_its_claimer(net: Net) -> None:
    await stored_and_tagged(net)
    assert 200 == (await put_mirror(net, 1, 1)).status_code
    tags = real_tags(net, 1, 1)
    # a registered party without a reason: refused
    for asker in (key("gw"), key("miner2"), SCHEDULER):
        response = await get_mirror(net, 1, 1, asker)
        assert 403 == response.status_code, response.text
        assert "nor holds it" in response.json()["error"]["message"]
    # the fragment's holder (its own tags missing): served
    response = await get_mirror(net, 1, 1, key("miner1"))
    assert (200, tags) == (response.status_code, response.content)
    # a restoral order for fragment 1 of segment 1: only its claimer, only once claimed
    net.ledger.block(
        restorer_registration(),
        (key("miner1"), ReportLoss(fid=net.plan.fid, segment=1, fragment=1)),
    )
    (order,) = net.ledger.query("/restoral/orders", list[Order])
    assert 403 == (await get_mirror(net, 1, 1, RESTORER, order=order.id)).status_code  # OPEN
    net.ledger.block((RESTORER, ClaimOrder(order_id=order.id)))
    response = await get_mirror(net, 1, 1, RESTORER, order=order.id)
    assert (200, tags) == (response.status_code, response.content)
    assert 403 == (await get_mirror(net, 1, 1, key("miner3"), order=order.id)).status_code
    # no such mirror here
    response = await get_mirror(net, 1, 2, key("miner2"))
    assert 404 == response.status_code


# --- the store: mirrors go with the holding ---------------------------------------------------


def test_mirrors_are_dropped_with_the_segment_s_last_place(tmp_path: Path) -> None:
    store = FragmentStore(tmp_path / "store")
    data = os.urandom(2000)
    digest = hashlib.sha256(data).digest()
    fid = "ab" * 32
    mirror = MirrorPlace(fid, 3, 5, b"\x01" * 32, SCHED0_KEY)
    with pytest.raises(StoreError, match="no fragment of segment 3"):
        store.put_mirror(mirror, b"t" * TAG_BYTES)  # nothing of segment 3 held
    first = FragmentPlace(digest, fid, 3, 0, Area.PERM, len(data))
    second = FragmentPlace(digest, fid, 3, 7, Area.PERM, len(data))
    store.put_fragment(first, [data])
    store.put_fragment(second, [data])
    store.put_mirror(mirror, b"t" * TAG_BYTES)
    store.remove_place(first)
    assert [mirror] == store.mirrors_of(mirror.fragment_hash, SCHED0_KEY)  # 7 still held
    store.remove_place(second)
    assert [] == store.mirrors_of(mirror.fragment_hash, SCHED0_KEY)
    assert [] == list((tmp_path / "store" / "mirrors").glob("*/*"))
    # a crash between the index and the file: the sweep at the next start removes the stray
    store.put_fragment(first, [data])
    store.put_mirror(mirror, b"t" * TAG_BYTES)
    with store._lock:
        store._db.execute("DELETE FROM places")
    store.close()
    reopened = FragmentStore(tmp_path / "store")
    try:
        assert [] == reopened.mirrors_of(mirror.fragment_hash, SCHED0_KEY)
        assert [] == list((tmp_path / "store" / "mirrors").glob("*/*"))
    finally:
        reopened.close()


# --- takers: the restorer and a holder missing its tags ---------------------------------------


def test_mirrors_are_asked_of_the_ring_predecessors_first() -> None:
    holders = [bytes([i]) * 32 for i in range(12)]
    order = mirror_order(holders, 1, skip={holders[1]})
    assert [holders[0], holders[11], holders[10]] == order[:3]
    assert 11 == len(order) and holders[1] not in order


def mirror_peers(net: Net, asked: list[str], *, bad_first: bool = False) -> httpx.MockTransport:
    """Other miners: fragments served; mirrors by the ring predecessors (miner j holds
    fragment j; the one just before answers tags of another key when ``bad_first``). The
    tagger is gone: its requests fail."""
    by_hash = {
        digest: (segment.index, j)
        for segment in net.plan.segments
        for j, digest in enumerate(segment.fragment_hashes)
    }

    def answer(request: httpx.Request) -> httpx.Response:
        digest = bytes.fromhex(request.url.path.rsplit("/", 1)[1])
        holder = (request.url.port or 0) - 9100  # miner j at port 9100 + j
        kind = request.url.path.split("/")[1]
        asked.append(f"{request.method} {kind} {holder}")
        segment, fragment = by_hash[digest]
        if request.method == "GET" and kind == "fragments":
            return httpx.Response(200, content=net.fragments[segment][fragment])
        if request.method == "GET" and kind == "mirror-tags":
            assert SCHED0_KEY.hex() == request.url.params["key"]
            if holder not in ((fragment - 1) % 12, (fragment - 2) % 12):
                return httpx.Response(404)
            if bad_first and holder == (fragment - 1) % 12:
                data = net.fragments[segment][fragment]
                return httpx.Response(200, content=tag_key("sched1").tag_fragment(data, digest))
            return httpx.Response(200, content=real_tags(net, segment, fragment))
        raise httpx.ConnectError("the tagger is gone")

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("bad_first", [False, True])
async def test_a_restorer_takes_verified_mirrored_tags_when_the_tagger_is_gone(
    net: Net, tmp_path: Path, bad_first: bool
) -> None:
    """Fragment 0 of segment 1 is lost; its tags are mirrored by the holders of fragments 11
    and 10. The tagger does not answer. The restorer rebuilds the fragment, takes the first
    mirror that verifies (the one of another key is skipped) and completes the order."""
    record = await stored_and_tagged(net)
    lose_fragment_0_of_segment_1(net)
    asked: list[str] = []
    store = FragmentStore(tmp_path / "restorer")
    restorer = MinerService(chain=net.chain, store=store, key=RESTORER)
    peers = Peers(net.chain, RESTORER, transport=mirror_peers(net, asked, bad_first=bad_first))
    repairer = Repairer(restorer, peers, retry_s=0)
    try:
        await with_blocks(net, repairer.scan())
        await with_blocks(net, asyncio.gather(*repairer._active.values()))
        after: FileRecord = net.ledger.query("/files/file", FileRecord, fid=net.plan.fid)
        digest = record.segments[1].fragment_hashes[0]
        assert RESTORER.public_key == after.holders[1][0]
        assert real_tags(net, 1, 0) == store.read_tags(digest, SCHED0_KEY)
        assert (1, 1) == (repairer.stats.repaired, repairer.stats.tags_mirrored)
        mirrors = [a for a in asked if "mirror-tags" in a]
        expected = ["GET mirror-tags 11", "GET mirror-tags 10"] if bad_first else mirrors[:1]
        assert expected == mirrors and ["GET mirror-tags 11"] == mirrors[:1]
        assert not [a for a in asked if a.startswith("PUT")]  # the tagger was not asked
    finally:
        store.close()


async def test_a_holder_missing_its_tags_takes_a_mirror_and_passes(net: Net) -> None:
    """miner0's tags are gone and the tagger does not answer: the prover takes them from the
    holders that mirror them (fragment 0's: those of fragments 11 and 10) and passes."""
    await stored_and_tagged(net)
    open_round(net)
    challenged = {i.fragment_hash for k in challenge_of(net).keys for i in k.items}
    for digest in challenged:
        net.store.remove_tags(digest, SCHED0_KEY)
    asked: list[str] = []
    prover = Prover(net.service, Peers(net.chain, MINER, transport=mirror_peers(net, asked)))
    await with_blocks(net, prover.answer_current_round())
    assert Result.PASSED == challenge_of(net).result
    assert {"GET mirror-tags 11"} == set(asked)
    for digest in challenged:
        assert net.store.has_tags(digest, SCHED0_KEY)
