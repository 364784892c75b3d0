"""The miner app in-process: a DevNode behind its RPC app, the miner app over ASGITransport.

The chain holds one scheduler (sched0, so every deal is assigned to it), twelve miners (miner0
is the miner under test), a gateway, and alice with space, a bucket and one declared deal.
Blocks are produced on demand.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from deoss.chain.calls import sign_tx
from deoss.chain.genesis import Genesis, GenesisAccount
from deoss.chain.modules import deals, gateways, miners, schedulers, space
from deoss.chain.modules.accounts import Account
from deoss.chain.modules.buckets import CreateBucket
from deoss.chain.modules.declare import DeclareDeal
from deoss.chain.modules.restoral import ClaimOrder, ReportLoss
from deoss.chain.modules.tagging import ReportTagged
from deoss.chain.modules.tags import TagConfirmation, tags_message
from deoss.chain.query import QueryArgs
from deoss.chain.types import Call
from deoss.client.chain import ChainClient
from deoss.client.signing import HEADER_BODY, SigningAuth, now_ms, sign_request
from deoss.core import codec
from deoss.core.keys import KeyPair, verify
from deoss.core.layout import ObjectPlan, iter_encoded_segments, plan_object
from deoss.core.podr2 import TAG_BYTES, block_count
from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app as create_rpc_app
from deoss.node.store import open_store
from deoss.services.miner.app import create_app
from deoss.services.miner.follower import ChainFollower
from deoss.services.miner.read_limits import ReadBudget, ReadLimiter
from deoss.services.miner.register import STAKE_HEADROOM, ensure_registered
from deoss.services.miner.service import MinerService
from deoss.services.miner.settings import MinerSettings
from deoss.services.miner.store import Area, FragmentStore
from tests.chain_fixtures import GENESIS_TIME_NS, StepClock, anyio_backend
from tests.unit.chain.harness import CHAIN_ID, NAMES, GiB, chain_params, key, tag_key

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

PARAMS = chain_params(deal_timeout_blocks=20, max_deal_attempts=1)
SECTORS = PARAMS.podr2.sectors_per_block
DATA = os.urandom(10_000)  # three segments of 4096, 4096 and 1808 bytes
MINER = key("miner0")
SCHEDULER = key("sched0")


class Ledger:
    """Sends transactions straight to the DevNode and produces their block."""

    def __init__(self, node: DevNode) -> None:
        self.node = node

    def nonce(self, who: KeyPair) -> int:
        args = codec.encode(QueryArgs(address=who.address))
        return codec.decode(self.node.query("/accounts/account", args).value, Account).nonce

    def block(self, *items: tuple[KeyPair, Call]) -> list[dict[str, str]]:
        """Include the calls in one block; returns the attributes of every event."""
        sent: dict[bytes, int] = {}
        for who, call in items:
            nonce = sent.get(who.public_key, self.nonce(who))
            sent[who.public_key] = nonce + 1
            checked = self.node.check_tx(sign_tx(who, CHAIN_ID, nonce, call))
            assert 0 == checked.code, checked.log
        results = self.node.produce_block().block.results
        assert all(0 == r.code for r in results), [r.log for r in results]
        return [{"type": e.type, **dict(e.attributes)} for r in results for e in r.events]

    def advance(self, blocks: int) -> None:
        for _ in range(blocks):
            self.node.produce_block()

    def query(self, path: str, type_: type[Any], **args: Any) -> Any:
        result = self.node.query(path, codec.encode(QueryArgs(**args)))
        assert 0 == result.code, result.log
        return codec.decode(result.value, type_)

    def query_code(self, path: str, **args: Any) -> int:
        return self.node.query(path, codec.encode(QueryArgs(**args))).code


@dataclass
class Net:
    node: DevNode
    ledger: Ledger
    chain: ChainClient
    store: FragmentStore
    app: FastAPI
    http: httpx.AsyncClient
    tmp: Path
    plan: ObjectPlan
    fragments: list[list[bytes]]  # [segment][fragment]
    deal_id: int

    @property
    def service(self) -> MinerService:
        service: MinerService = self.app.state.miner
        return service

    def target(
        self, segment: int = 0, fragment: int = 0, deal_id: int | None = None, attempt: int = 1
    ) -> str:
        digest = self.plan.segments[segment].fragment_hashes[fragment].hex()
        deal = self.deal_id if deal_id is None else deal_id
        return (
            f"/fragments/{digest}?deal={deal}&attempt={attempt}"
            f"&segment={segment}&fragment={fragment}"
        )

    async def put(
        self,
        segment: int = 0,
        fragment: int = 0,
        *,
        signer: KeyPair = SCHEDULER,
        body: bytes | None = None,
        attempt: int = 1,
        **options: Any,
    ) -> httpx.Response:
        content = self.fragments[segment][fragment] if body is None else body
        return await self.http.put(
            self.target(segment, fragment, attempt=attempt),
            content=content,
            auth=SigningAuth(signer),
            **options,
        )

    def places(self) -> list[tuple[int, int, str]]:
        return [(p.segment, p.fragment, p.area) for p in self.store.all_places()]


def genesis() -> Genesis:
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time_ns=GENESIS_TIME_NS,
        params=PARAMS,
        accounts=[GenesisAccount(address=key(n).address, balance=10**15) for n in NAMES],
    )


def register_network(ledger: Ledger) -> None:
    calls: list[tuple[KeyPair, Call]] = [
        (
            SCHEDULER,
            schedulers.RegisterScheduler(
                endpoint="http://127.0.0.1:9000",
                stake=PARAMS.scheduler_min_stake,
                tag_key=tag_key("sched0").public,
            ),
        ),
        (
            key("gw"),
            gateways.RegisterGateway(endpoint="http://127.0.0.1:8000", stake=PARAMS.gateway_stake),
        ),
        (key("alice"), space.BuySpace(gib=1, days=10)),
        (key("alice"), CreateBucket(name="photos")),
    ]
    for i in range(12):
        calls.append(
            (
                key(f"miner{i}"),
                miners.RegisterMiner(
                    endpoint=f"http://127.0.0.1:{9100 + i}",
                    capacity_bytes=GiB,
                    stake=PARAMS.stake_per_tib,
                ),
            )
        )
    ledger.block(*calls)


def declare(ledger: Ledger, plan: ObjectPlan, name: str = "cat.jpg") -> int:
    call = DeclareDeal(
        bucket="photos", name=name, size=plan.size, fid=plan.fid, segments=plan.segments
    )
    events = ledger.block((key("alice"), call))
    return int(next(e["id"] for e in events if e["type"] == "deal.declared"))


def encode(data: bytes) -> list[list[bytes]]:
    return [
        [bytes(f) for f in segment.fragments]
        for segment in iter_encoded_segments(io.BytesIO(data), PARAMS.layout)
    ]


@asynccontextmanager
async def miner_app(
    chain: ChainClient, store: FragmentStore, tmp: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = MinerSettings(
        chain_url="http://node", key_path=tmp / "key.toml", listen="127.0.0.1:0", data_dir=tmp
    )
    app = create_app(MinerService.from_settings(settings, chain=chain, store=store, key=MINER))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://miner") as http:
        yield app, http


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    node = DevNode(open_store(tmp_path / "chain.sqlite"), genesis=genesis(), clock=StepClock())
    ledger = Ledger(node)
    register_network(ledger)
    plan = plan_object(io.BytesIO(DATA), PARAMS.layout)
    deal_id = declare(ledger, plan)
    store = FragmentStore(tmp_path / "fragments")
    rpc = httpx.ASGITransport(app=create_rpc_app(node))
    async with ChainClient("http://node", transport=rpc, poll_interval_s=0.01) as chain:
        async with miner_app(chain, store, tmp_path) as (app, http):
            yield Net(node, ledger, chain, store, app, http, tmp_path, plan, encode(DATA), deal_id)
    store.close()
    node.store.close()


# --- accepting fragments -----------------------------------------------------------------


async def test_accepts_a_fragment_and_signs_a_receipt_that_verifies(net: Net) -> None:
    """The assigned scheduler's fragment is stored (temporary) and the receipt verifies."""
    response = await net.put(1, 3)
    assert 200 == response.status_code, response.text
    body = response.json()
    digest = net.plan.segments[1].fragment_hashes[3]
    message = deals.receipt_message(
        CHAIN_ID, net.deal_id, 1, net.plan.fid, 1, 3, digest, MINER.public_key
    )
    verify(MINER.public_key, message, bytes.fromhex(body["signature"]))
    assert MINER.address == body["miner"]
    assert [(1, 3, Area.TEMP)] == net.places()
    assert net.fragments[1][3] == net.store.read_range(digest, 0, len(net.fragments[1][3]))


async def test_a_fragment_already_held_gets_the_same_answer_without_a_new_copy(net: Net) -> None:
    first = await net.put(0, 0)
    again = await net.put(0, 0)
    assert (200, first.json()) == (again.status_code, again.json())
    assert [(0, 0, Area.TEMP)] == net.places()
    assert 1 == len(list((net.tmp / "fragments" / Area.TEMP).glob("*/*")))


async def test_unsigned_expired_and_replayed_requests_are_refused(net: Net) -> None:
    """401 for a request without signature, signed too long ago, or sent twice."""
    fragment = net.fragments[0][0]
    digest = hashlib.sha256(fragment).hexdigest()
    unsigned = await net.http.put(net.target(), content=fragment)
    stale = sign_request(SCHEDULER, "PUT", net.target(), now_ms() - 120_000, digest, host="miner")
    expired = await net.http.put(net.target(), content=fragment, headers=stale)
    fresh = sign_request(SCHEDULER, "PUT", net.target(), now_ms(), digest, host="miner")
    accepted = await net.http.put(net.target(), content=fragment, headers=fresh)
    replayed = await net.http.put(net.target(), content=fragment, headers=fresh)
    assert [401, 401, 200, 401] == [r.status_code for r in (unsigned, expired, accepted, replayed)]
    assert "missing header" in unsigned.json()["error"]["message"]
    assert "ms from" in expired.json()["error"]["message"]
    assert "replayed" in replayed.json()["error"]["message"]


async def test_a_scheduler_not_assigned_to_the_deal_is_refused(net: Net) -> None:
    response = await net.put(signer=key("sched1"))
    assert 403 == response.status_code
    assert "is assigned to scheduler" in response.json()["error"]["message"]
    assert [] == net.places()


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"body": b"x" * 1024}, 422, "signed body SHA-256"),
        ({"lie": b"x" * 1024}, 401, "does not match the signed SHA-256"),
        ({"lie": b"x" * 1025}, 422, "is 1024 bytes, the body is 1025"),
        ({"stream": b"x" * 2048}, 413, "larger than 1024 bytes"),
        ({"stream": b"x" * 1000}, 401, "does not match the signed SHA-256"),
        ({"fragment": 12}, 422, "has 12 fragments"),
        ({"segment": 3}, 422, "has 3 segment(s)"),
    ],
)
async def test_bytes_not_matching_the_declaration_are_refused_and_leave_nothing(
    net: Net, change: dict[str, Any], status: int, message: str
) -> None:
    """Wrong bytes, sizes or indices: refused with the reason; nothing indexed or on disk."""
    digest = net.plan.segments[0].fragment_hashes[0].hex()
    if "lie" in change:  # signs the declared hash but sends other bytes
        response = await net.put(body=change["lie"], headers={HEADER_BODY: digest})
    elif "stream" in change:  # no Content-Length: the size is found while streaming

        async def chunks() -> AsyncIterator[bytes]:
            yield change["stream"][:500]
            yield change["stream"][500:]

        response = await net.http.put(
            net.target(),
            content=chunks(),
            auth=SigningAuth(SCHEDULER),
            headers={HEADER_BODY: digest},
        )
    elif "body" in change:
        response = await net.put(body=change["body"])
    else:
        segment, fragment = change.get("segment", 0), change.get("fragment", 0)
        response = await net.http.put(
            f"/fragments/{digest}?deal={net.deal_id}&attempt=1&segment={segment}"
            f"&fragment={fragment}",
            content=net.fragments[0][0],
            auth=SigningAuth(SCHEDULER),
        )
    assert status == response.status_code, response.text
    assert message in response.json()["error"]["message"]
    assert [] == net.places()
    assert [] == list((net.tmp / "fragments" / "incoming").iterdir())
    assert [] == list((net.tmp / "fragments" / Area.TEMP).glob("*/*"))


async def test_another_fragments_hash_is_refused(net: Net) -> None:
    """The path's hash must be the one declared for (segment, fragment)."""
    other = net.plan.segments[0].fragment_hashes[1].hex()
    response = await net.http.put(
        f"/fragments/{other}?deal={net.deal_id}&attempt=1&segment=0&fragment=0",
        content=net.fragments[0][1],
        auth=SigningAuth(SCHEDULER),
    )
    assert 422 == response.status_code
    assert "is declared as" in response.json()["error"]["message"]


async def test_unknown_deal_is_404_and_a_deal_not_assigned_is_409(net: Net) -> None:
    digest = net.plan.segments[0].fragment_hashes[0].hex()
    unknown = await net.http.put(
        f"/fragments/{digest}?deal=99&attempt=1&segment=0&fragment=0",
        content=net.fragments[0][0],
        auth=SigningAuth(SCHEDULER),
    )
    net.ledger.advance(PARAMS.deal_timeout_blocks + 1)  # one attempt only: FAILED
    failed = await net.put()
    assert (404, 409) == (unknown.status_code, failed.status_code)
    assert "no deal 99" in unknown.json()["error"]["message"]
    assert "is FAILED, not ASSIGNED" in failed.json()["error"]["message"]
    assert [] == net.places()


async def test_query_integers_that_are_not_a_few_ascii_digits_are_400(net: Net) -> None:
    """deal, attempt, segment and fragment are ASCII digits in range: a sign or a Latin-1
    digit is a 400 naming the parameter, and nothing is stored."""
    digest = net.plan.segments[0].fragment_hashes[0].hex()
    for query, name in [
        (f"deal=+{net.deal_id}&attempt=1&segment=0&fragment=0", "deal"),
        (f"deal={net.deal_id}&attempt=%C2%B9&segment=0&fragment=0", "attempt"),
        (f"deal={net.deal_id}&attempt=1&segment=0_0&fragment=0", "segment"),
        (f"deal={net.deal_id}&attempt=1&segment=0&fragment=" + "9" * 5000, "fragment"),
    ]:
        refused = await net.http.put(
            f"/fragments/{digest}?{query}", content=net.fragments[0][0], auth=SigningAuth(SCHEDULER)
        )
        assert 400 == refused.status_code, query[:40]
        assert name in refused.json()["error"]["message"]
    assert [] == net.places()


async def test_a_request_for_another_assignment_is_refused(net: Net) -> None:
    """The scheduler names the deal and the assignment it places for, and the miner signs only
    for the deal's current assignment: its receipt cannot pass for any other."""
    digest = net.plan.segments[0].fragment_hashes[0].hex()
    stale = await net.put(0, 0, attempt=2)
    unnamed = await net.http.put(
        f"/fragments/{digest}?deal={net.deal_id}&segment=0&fragment=0",
        content=net.fragments[0][0],
        auth=SigningAuth(SCHEDULER),
    )
    assert (409, 400) == (stale.status_code, unnamed.status_code)
    assert "is at assignment 1, not 2" in stale.json()["error"]["message"]
    assert "attempt" in unnamed.json()["error"]["message"]
    assert [] == net.places()


# --- serving fragments -------------------------------------------------------------------


def as_download(net: Net, segment: int, fragment: int, owner: str = "") -> str:
    """The path of a fragment read for a download of the test file (by ``owner``)."""
    digest = net.plan.segments[segment].fragment_hashes[fragment].hex()
    for_owner = f"&owner={owner}" if owner else ""
    return f"/fragments/{digest}?reason=download&fid={net.plan.fid}{for_owner}"


async def test_get_serves_whole_fragments_and_single_ranges(net: Net) -> None:
    """200 whole, 206 with Content-Range for a range (suffix and open ones too), 416 outside."""
    assert 200 == (await net.put(0, 2)).status_code
    await succeed(net)  # alice owns the file now: she may read its fragments
    fragment = net.fragments[0][2]
    path = as_download(net, 0, 2)
    owner = SigningAuth(key("alice"))

    async def get(range_: str | None) -> httpx.Response:
        headers = {"range": range_} if range_ else {}
        return await net.http.get(path, headers=headers, auth=owner)

    whole = await get(None)
    assert (200, fragment) == (whole.status_code, whole.content)
    for header, first, last in [
        ("bytes=10-19", 10, 19),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-5", 1019, 1023),
        ("bytes=1020-5000", 1020, 1023),
    ]:
        part = await get(header)
        assert (206, fragment[first : last + 1]) == (part.status_code, part.content)
        assert f"bytes {first}-{last}/1024" == part.headers["content-range"]
    for bad in ["bytes=1024-", "bytes=5-3", "bytes=0-1,4-5", "items=0-1", "bytes=-0"]:
        refused = await get(bad)
        assert 416 == refused.status_code, bad
        assert "bytes */1024" == refused.headers["content-range"]


async def test_ranges_with_odd_numbers_are_416_with_a_message(net: Net) -> None:
    """A Latin-1 digit, a sign or thousands of digits in a Range: 416 saying what is wrong,
    never a 500 from int()."""
    assert 200 == (await net.put(0, 2)).status_code
    await succeed(net)
    path = as_download(net, 0, 2)
    for header, why in [
        ("bytes=\u00b2-5".encode("latin-1"), "ASCII digits"),
        (b"bytes=+1-5", "ASCII digits"),
        (("bytes=" + "9" * 5000 + "-").encode(), "at most 19 digits"),
        (("bytes=-" + "9" * 5000).encode(), "at most 19 digits"),
    ]:
        refused = await net.http.get(
            path, headers={b"range": header}, auth=SigningAuth(key("alice"))
        )
        assert 416 == refused.status_code, header[:20]
        assert "bytes */1024" == refused.headers["content-range"]
        assert why in refused.json()["error"]["message"]


async def test_a_download_read_needs_an_owner_of_the_file_or_its_authorized_gateway(
    net: Net,
) -> None:
    """reason=download: the owner itself, or a registered gateway the owner authorized, for a
    file the owner has an object of and this fragment belongs to. Being a registered party is
    not enough (a miner keeping only its tags would prove from the other holders' copies)."""
    await net.put(0, 2)
    await succeed(net)
    gw = SigningAuth(key("gw"))
    # carol owns nothing; she authorized gw. alice owns the file and authorized gw.
    await asyncio.to_thread(
        net.ledger.block,
        (key("alice"), gateways.AuthorizeGateway(gateway=key("gw").address)),
        (key("carol"), gateways.AuthorizeGateway(gateway=key("gw").address)),
    )
    bare = "/fragments/" + net.plan.segments[0].fragment_hashes[2].hex()
    other_fid = "ab" * 32

    async def get(path: str, who: SigningAuth | None) -> tuple[int, str]:
        answer = await net.http.get(path, auth=who)
        return answer.status_code, answer.text

    cases = {
        "owner itself": (as_download(net, 0, 2), SigningAuth(key("alice")), 200, ""),
        "gateway for owner": (as_download(net, 0, 2, key("alice").address), gw, 200, ""),
        "gateway without reason": (bare, gw, 403, "must name its reason"),
        "miner without reason": (bare, SigningAuth(key("miner5")), 403, "must name its reason"),
        "unknown reason": (bare + "?reason=audit", gw, 403, "got 'audit'"),
        "gateway for non-authorizer": (
            as_download(net, 0, 2, key("bob").address),
            gw,
            403,
            "not a gateway authorized by",
        ),
        "gateway for non-owner": (
            as_download(net, 0, 2, key("carol").address),
            gw,
            403,
            "owns no object stored as file",
        ),
        "non-owner itself": (as_download(net, 0, 2), SigningAuth(key("bob")), 403, "owns no"),
        "miner naming no owner": (as_download(net, 0, 2), SigningAuth(key("miner5")), 403, ""),
        "another file": (
            bare + f"?reason=download&fid={other_fid}",
            SigningAuth(key("alice")),
            403,
            "not held here for file",
        ),
        "no fid": (bare + "?reason=download", SigningAuth(key("alice")), 403, "&fid="),
        "unsigned": (as_download(net, 0, 2), None, 401, ""),
    }
    for what, (path, who, status, message) in cases.items():
        got_status, text = await get(path, who)
        assert status == got_status, (what, text)
        assert message in text, (what, text)
        if status == 200:
            assert net.fragments[0][2] == (await net.http.get(path, auth=who)).content
    unknown = await net.http.get(
        f"/fragments/{'ab' * 32}?reason=download&fid={net.plan.fid}", auth=SigningAuth(key("alice"))
    )
    assert 403 == unknown.status_code  # nothing held for the fid: refused before any read


async def test_a_restoral_read_needs_the_claimer_of_an_order_of_that_segment(net: Net) -> None:
    """reason=restoral&order=: the order exists, is CLAIMED by the signer, and is for the
    segment (of the file) this fragment belongs to."""
    async with following(net):
        await succeed(net)
        await caught_up(net)
    newcomers = [
        (
            key(name),
            miners.RegisterMiner(
                endpoint="http://127.0.0.1:9200", capacity_bytes=GiB, stake=PARAMS.stake_per_tib
            ),
        )
        for name in ("miner12", "miner13")
    ]
    fid = net.plan.fid
    await asyncio.to_thread(net.ledger.block, *newcomers)
    # order 0: segment 0 (claimed by miner12); order 1: segment 1 (left open)
    await asyncio.to_thread(
        net.ledger.block,
        (key("miner1"), ReportLoss(fid=fid, segment=0, fragment=1)),
        (key("miner2"), ReportLoss(fid=fid, segment=1, fragment=2)),
    )
    await asyncio.to_thread(net.ledger.block, (key("miner12"), ClaimOrder(order_id=0)))

    def path(segment: int, order: int | str) -> str:
        digest = net.plan.segments[segment].fragment_hashes[0].hex()
        return f"/fragments/{digest}?reason=restoral&order={order}"

    claimer, other = SigningAuth(key("miner12")), SigningAuth(key("miner13"))
    cases = {
        "claimer, its segment": (path(0, 0), claimer, 200, ""),
        "claimer, another segment": (path(1, 0), claimer, 403, "the segment of restoral order 0"),
        "not the claimer": (path(0, 0), other, 403, "is not claimed by"),
        "unclaimed order": (path(1, 1), claimer, 403, "is not claimed by"),
        "no such order": (path(0, 99), claimer, 403, "no restoral order 99"),
        "no order named": (path(0, "")[: -len("&order=")], claimer, 403, "&order="),
    }
    for what, (target, who, status, message) in cases.items():
        answer = await net.http.get(target, auth=who)
        assert status == answer.status_code, (what, answer.text)
        assert message in answer.text, (what, answer.text)
    copied = await net.http.get(path(0, 0), auth=claimer)
    assert net.fragments[0][0] == copied.content


async def test_a_tagging_read_needs_the_files_tagger(net: Net) -> None:
    await net.put(0, 2)
    await succeed(net)  # sched0 reported the deal: it tags the file
    target = as_download(net, 0, 2).replace("reason=download", "reason=tagging")
    by_tagger = await net.http.get(target, auth=SigningAuth(SCHEDULER))
    by_other = await net.http.get(target, auth=SigningAuth(key("sched1")))
    by_miner = await net.http.get(target, auth=SigningAuth(key("miner5")))
    assert (200, net.fragments[0][2]) == (by_tagger.status_code, by_tagger.content)
    assert [403, 403] == [by_other.status_code, by_miner.status_code]
    assert "is not the tagger of file" in by_miner.json()["error"]["message"]
    await asyncio.to_thread(
        net.ledger.block,
        (SCHEDULER, ReportTagged(fid=net.plan.fid, confirmations=tag_confirmations_for(net))),
    )
    after = await net.http.get(target, auth=SigningAuth(SCHEDULER))
    assert 403 == after.status_code
    assert "is tagged already" in after.json()["error"]["message"]


async def test_reads_past_the_readers_byte_budget_are_429_then_recover(net: Net) -> None:
    """The app charges each read's bytes before sending any: a reader over its budget gets 429
    with Retry-After, another reader is unaffected, and time refills the bucket."""
    await net.put(0, 2)
    await succeed(net)
    now = [0.0]
    net.service.read_limiter = ReadLimiter(
        ReadBudget(requests_per_s=0, bytes_per_s=1024),  # a 2048-byte burst: two fragments
        ReadBudget(requests_per_s=0, bytes_per_s=0),
        clock=lambda: now[0],
    )
    owner = SigningAuth(key("alice"))
    served = [(await net.http.get(as_download(net, 0, 2), auth=owner)).status_code for _ in "ab"]
    refused = await net.http.get(as_download(net, 0, 2), auth=owner)
    tagger = await net.http.get(
        as_download(net, 0, 2).replace("download", "tagging"), auth=SigningAuth(SCHEDULER)
    )
    assert [200, 200] == served
    assert (429, "1") == (refused.status_code, refused.headers["retry-after"])
    assert "budget" in refused.json()["error"]["message"]
    assert 200 == tagger.status_code  # the bulk budget (unlimited here) is its own
    now[0] += 1.0
    assert 200 == (await net.http.get(as_download(net, 0, 2), auth=owner)).status_code


# --- the follower, tags, restart ---------------------------------------------------------


def receipts_for(net: Net, ours: dict[tuple[int, int], str]) -> list[list[deals.Receipt]]:
    """Fragment j of every segment on miner j; miner0's receipts are the app's answers."""
    rows = []
    for segment in net.plan.segments:
        row = []
        for j, digest in enumerate(segment.fragment_hashes):
            if j == 0:
                signature = bytes.fromhex(ours[(segment.index, 0)])
                row.append(deals.Receipt(miner=MINER.public_key, signature=signature))
                continue
            miner = key(f"miner{j}")
            message = deals.receipt_message(
                CHAIN_ID, net.deal_id, 1, net.plan.fid, segment.index, j, digest, miner.public_key
            )
            row.append(deals.Receipt(miner=miner.public_key, signature=miner.sign(message)))
        rows.append(row)
    return rows


def tag_confirmations_for(net: Net) -> list[TagConfirmation]:
    """Each holder's (miner j: fragment j of every segment) confirmation of sched0's tags."""
    key_id = tag_key("sched0").public.key_id
    out = []
    for segment in net.plan.segments:
        for j, digest in enumerate(segment.fragment_hashes):
            miner = key(f"miner{j}")
            message = tags_message(
                CHAIN_ID, net.plan.fid, segment.index, j, digest, key_id, miner.public_key
            )
            out.append(
                TagConfirmation(
                    segment=segment.index,
                    fragment=j,
                    miner=miner.public_key,
                    signature=miner.sign(message),
                )
            )
    return out


@asynccontextmanager
async def following(net: Net) -> AsyncIterator[ChainFollower]:
    follower = ChainFollower(net.service, net.tmp / "cursor", retry_first_s=0.01)
    await follower.ensure_cursor()
    task = asyncio.create_task(follower.run())
    try:
        yield follower
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def caught_up(net: Net) -> None:
    """Wait until the follower has handled the chain's latest block."""
    for _ in range(500):
        if net.service.followed_height >= net.node.height:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"follower at {net.service.followed_height}, chain at {net.node.height}")


async def succeed(net: Net) -> None:
    """miner0 receives fragment 0 of every segment (and 1 of segment 0, placed elsewhere);
    the scheduler reports; the deal is SUCCESS."""
    ours = {}
    for segment in range(len(net.plan.segments)):
        response = await net.put(segment, 0)
        assert 200 == response.status_code, response.text
        ours[(segment, 0)] = response.json()["signature"]
    assert 200 == (await net.put(0, 1)).status_code
    report = deals.ReportDeal(deal_id=net.deal_id, placements=receipts_for(net, ours))
    await asyncio.to_thread(net.ledger.block, (SCHEDULER, report))


async def test_follower_keeps_its_fragments_on_success_and_drops_the_others(net: Net) -> None:
    """deal.success: fragments the file places here go permanent; one placed elsewhere goes."""
    async with following(net):
        await succeed(net)
        await caught_up(net)
    assert [(0, 0, Area.PERM), (1, 0, Area.PERM), (2, 0, Area.PERM)] == sorted(net.places())
    assert str(net.node.height) == (net.tmp / "cursor").read_text().strip()
    again = await net.put(0, 0)
    assert 409 == again.status_code  # the deal is SUCCESS now


async def test_follower_deletes_temporary_fragments_when_the_deal_fails(net: Net) -> None:
    assert 200 == (await net.put(0, 0)).status_code
    assert 200 == (await net.put(2, 5)).status_code
    async with following(net):
        await asyncio.to_thread(net.ledger.advance, PARAMS.deal_timeout_blocks + 1)
        await caught_up(net)
    assert [] == net.places()
    assert [] == list((net.tmp / "fragments" / Area.TEMP).glob("*/*"))


async def test_sweep_settles_fragments_of_a_deal_that_ended_unseen(net: Net) -> None:
    """A deal that failed before the follower's cursor: the startup sweep deletes its bytes."""
    assert 200 == (await net.put(0, 0)).status_code
    net.ledger.advance(PARAMS.deal_timeout_blocks + 1)
    (net.tmp / "cursor").write_text(f"{net.node.height}\n")  # the failure is behind the cursor
    async with following(net):
        await caught_up(net)
    assert [] == net.places()


async def test_tags_only_from_the_tagger_and_with_the_right_length(net: Net) -> None:
    async with following(net):
        await succeed(net)
        await caught_up(net)
    digest = net.plan.segments[0].fragment_hashes[0]
    expected = block_count(len(net.fragments[0][0]), SECTORS) * TAG_BYTES
    path = f"/tags/{digest.hex()}?fid={net.plan.fid}"
    tags = tag_key("sched0").tag_fragment(net.fragments[0][0], digest)
    assert expected == len(tags)
    outsider = await net.http.put(path, content=tags, auth=SigningAuth(key("sched1")))
    short = await net.http.put(path, content=tags[:-1], auth=SigningAuth(SCHEDULER))
    long = await net.http.put(path, content=tags + b"x", auth=SigningAuth(SCHEDULER))
    absent = await net.http.put(
        f"/tags/{net.plan.segments[0].fragment_hashes[5].hex()}?fid={net.plan.fid}",
        content=tags,
        auth=SigningAuth(SCHEDULER),
    )
    assert [403, 422, 422, 404] == [r.status_code for r in (outsider, short, long, absent)]
    assert not net.store.has_tags(digest, tag_key("sched0").public.key_id)
    accepted = await net.http.put(path, content=tags, auth=SigningAuth(SCHEDULER))
    assert 200 == accepted.status_code, accepted.text
    answer = accepted.json()
    assert expected // TAG_BYTES == answer["blocks"]
    assert tags == net.store.read_tags(digest, tag_key("sched0").public.key_id)
    # the answer is the miner's tag confirmation, as files.tagged checks it
    key_id = tag_key("sched0").public.key_id
    assert (0, 0, key_id.hex(), MINER.address) == (
        answer["segment"],
        answer["fragment"],
        answer["key_id"],
        answer["miner"],
    )
    message = tags_message(CHAIN_ID, net.plan.fid, 0, 0, digest, key_id, MINER.public_key)
    verify(MINER.public_key, message, bytes.fromhex(answer["signature"]))
    elsewhere = await net.http.put(
        f"{path}&segment=1&fragment=0", content=tags, auth=SigningAuth(SCHEDULER)
    )
    assert 404 == elsewhere.status_code  # not the fragment held at that place


async def test_stored_tags_are_served_for_a_confirmed_reason_only(net: Net) -> None:
    async with following(net):
        await succeed(net)
        await caught_up(net)
    digest = net.plan.segments[0].fragment_hashes[0]
    tags = tag_key("sched0").tag_fragment(net.fragments[0][0], digest)
    stored = await net.http.put(
        f"/tags/{digest.hex()}?fid={net.plan.fid}", content=tags, auth=SigningAuth(SCHEDULER)
    )
    assert 200 == stored.status_code
    key_id = tag_key("sched0").public.key_id.hex()
    why = f"reason=download&fid={net.plan.fid}"
    path = f"/tags/{digest.hex()}?key={key_id}&{why}"
    owner = SigningAuth(key("alice"))
    as_owner = await net.http.get(path, auth=owner)
    stranger = await net.http.get(path, auth=SigningAuth(key("bob")))
    no_reason = await net.http.get(f"/tags/{digest.hex()}?key={key_id}", auth=SigningAuth(MINER))
    untagged = await net.http.get(
        f"/tags/{net.plan.segments[1].fragment_hashes[0].hex()}?key={key_id}&{why}", auth=owner
    )
    other_key = await net.http.get(f"/tags/{digest.hex()}?key={'cd' * 32}&{why}", auth=owner)
    malformed = await net.http.get(f"/tags/xyz?key={key_id}&{why}", auth=owner)
    no_key = await net.http.get(f"/tags/{digest.hex()}?{why}", auth=owner)
    unsigned = await net.http.get(path)
    assert [200, 403, 403, 404, 404, 400, 400, 401] == [
        r.status_code
        for r in (as_owner, stranger, no_reason, untagged, other_key, malformed, no_key, unsigned)
    ]
    assert tags == as_owner.content


async def test_restart_keeps_permanent_fragments_and_the_owner_may_read_them(net: Net) -> None:
    async with following(net):
        await succeed(net)
        await caught_up(net)
    net.store.close()
    store = FragmentStore(net.tmp / "fragments")
    digest = net.plan.segments[1].fragment_hashes[0].hex()
    try:
        async with miner_app(net.chain, store, net.tmp) as (_, http):
            no_reason = await http.get(f"/fragments/{digest}", auth=SigningAuth(key("gw")))
            owner = SigningAuth(key("alice"))
            by_owner = await http.get(as_download(net, 1, 0), auth=owner)
            not_owner = await http.get(as_download(net, 1, 0), auth=SigningAuth(key("bob")))
    finally:
        store.close()
        net.store = FragmentStore(net.tmp / "fragments")  # the fixture closes it
    assert (200, net.fragments[1][0]) == (by_owner.status_code, by_owner.content)
    assert [403, 403] == [no_reason.status_code, not_owner.status_code]


# --- registration ------------------------------------------------------------------------


@asynccontextmanager
async def producing(node: DevNode) -> AsyncIterator[None]:
    node.block_ms = 10
    stop = asyncio.Event()
    task = asyncio.create_task(node.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def test_registers_with_stake_headroom_then_updates_its_endpoint(net: Net) -> None:
    newcomer = key("miner12")
    settings = MinerSettings(
        chain_url="http://node",
        key_path=net.tmp / "k.toml",
        listen="127.0.0.1:0",
        data_dir=net.tmp,
        capacity_bytes=3 * GiB,
    )
    async with producing(net.node):
        await ensure_registered(net.chain, newcomer, settings, "http://127.0.0.1:7001")
        first = net.ledger.query("/miners/miner", miners.Miner, address=newcomer.address)
        await ensure_registered(net.chain, newcomer, settings, "http://127.0.0.1:7002")
        second = net.ledger.query("/miners/miner", miners.Miner, address=newcomer.address)
    assert ("http://127.0.0.1:7001", 3 * GiB) == (first.endpoint, first.capacity_bytes)
    assert STAKE_HEADROOM * miners.required_stake(PARAMS, 3 * GiB) == first.stake
    assert "http://127.0.0.1:7002" == second.endpoint


async def test_healthz_reports_the_miner(net: Net) -> None:
    assert 200 == (await net.put(0, 0)).status_code
    health = (await net.http.get("/healthz")).json()
    assert ("ok", "miner", MINER.address) == (health["status"], health["role"], health["address"])
    assert (1, 1024) == (health["temp_places"], health["temp_bytes"])
