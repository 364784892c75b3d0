"""An in-process network for the scheduler tests.

A DevNode with small parameters (16 KiB segments, 16 sectors per block) producing a block every
20 ms, its RPC through ``httpx.ASGITransport``; fake miners behind one ``httpx.MockTransport``
that check the scheduler's signature and sign real receipts with keys registered on chain; the
scheduler service itself, its app reached through ``ASGITransport``. No ports, no processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from msgspec.structs import replace

from deoss.chain.genesis import ChainParams, Genesis, GenesisAccount
from deoss.chain.modules.buckets import CreateBucket
from deoss.chain.modules.deals import Deal, DealState, receipt_message
from deoss.chain.modules.declare import DeclareDeal
from deoss.chain.modules.miners import RegisterMiner
from deoss.chain.modules.schedulers import Scheduler
from deoss.chain.modules.space import BuySpace
from deoss.chain.modules.tags import tags_message
from deoss.chain.query import QueryArgs
from deoss.chain.types import Call
from deoss.client.chain import ChainClient
from deoss.client.signing import SigningAuth, now_ms
from deoss.core.keys import KeyPair, address_of
from deoss.core.layout import EncodedSegment, LayoutParams, iter_encoded_segments
from deoss.core.merkle import compute_fid
from deoss.core.podr2 import TAG_BYTES, PodrParams
from deoss.keyfile import write_key_file
from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app as create_rpc_app
from deoss.node.store import open_store
from deoss.services.common.auth import AuthError, RequestVerifier, host_names
from deoss.services.scheduler.app import create_app
from deoss.services.scheduler.follower import Follower
from deoss.services.scheduler.service import SchedulerService
from deoss.services.scheduler.settings import SchedulerSettings

T = TypeVar("T")
CHAIN_ID = "scheduler-test"
SECTORS = 16
GiB = 1024**3
PARAMS = ChainParams(
    layout=LayoutParams(segment_size=16 * 1024, data_shards=4, parity_shards=8),
    podr2=PodrParams(sectors_per_block=SECTORS, blocks_per_fragment=1, fragments_per_challenge=8),
    block_interval_ms=20,
    deal_timeout_blocks=10_000,
    tag_timeout_blocks=10_000,
)


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(name.encode()).digest())


SCHEDULER = key("scheduler")
OTHER_SCHEDULER = key("other-scheduler")
ALICE = key("alice")
BOB = key("bob")
MINERS = [key(f"miner{i}") for i in range(14)]


def miner_host(index: int) -> str:
    return f"miner{index}.test"


@dataclass
class FakeMiner:
    """A miner that checks the scheduler's signature and signs real receipts.

    ``mode``: "ok"; "error" (HTTP 500); "hang" (never answers); "bad_receipt" (signs another
    fragment index); "wrong_miner" (a receipt signed by another miner's key); "tags_down"
    (fragments accepted, tags refused with HTTP 503); "mirrors_down" (mirror copies of other
    fragments' tags refused with HTTP 503); "bad_confirmation" (tags taken, answered
    with a tag confirmation signed for another fragment index).
    """

    key: KeyPair
    chain: ChainClient
    mode: str = "ok"
    fragments: dict[bytes, bytes] = field(default_factory=dict)
    tags: dict[bytes, bytes] = field(default_factory=dict)
    mirrors: dict[tuple[str, int, int], bytes] = field(default_factory=dict)  # by place
    fragment_puts: int = 0
    receipt_bytes_sent: int = 0  # mode "endless_receipt": what its answer streamed
    fragment_gets: int = 0
    tag_puts: int = 0
    verifier: RequestVerifier = field(default_factory=RequestVerifier)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        try:
            signer, body_sha = self.verifier.verify(
                request.method,
                request.url.raw_path.decode(),
                dict(request.headers),
                now_ms(),
                hosts=host_names(request.url.host, request.url.port),
            )
        except AuthError as exc:
            return httpx.Response(
                401, json={"error": {"code": "unauthenticated", "message": str(exc)}}
            )
        body = request.content
        if hashlib.sha256(body).hexdigest() != body_sha or signer != SCHEDULER.public_key:
            return httpx.Response(403, json={"error": {"code": "forbidden", "message": "who?"}})
        kind, _, name = request.url.path.strip("/").partition("/")
        digest = bytes.fromhex(name)
        if (request.method, kind) == ("PUT", "fragments"):
            return await self._put_fragment(request, digest, body)
        if (request.method, kind) == ("PUT", "tags"):
            if self.mode == "tags_down":
                return httpx.Response(503, json={"error": {"code": "down", "message": "down"}})
            self.tag_puts += 1
            self.tags[digest] = body
            return await self._confirm_tags(request, signer, digest, len(body))
        if (request.method, kind) == ("PUT", "mirror-tags"):
            if self.mode == "mirrors_down":
                return httpx.Response(503, json={"error": {"code": "down", "message": "down"}})
            query = request.url.params
            self.mirrors[(query["fid"], int(query["segment"]), int(query["fragment"]))] = body
            return httpx.Response(200, json={"fragment_hash": name, "blocks": 1})
        if (request.method, kind) == ("GET", "fragments") and digest in self.fragments:
            self.fragment_gets += 1
            return httpx.Response(200, content=self.fragments[digest])
        return httpx.Response(404, json={"error": {"code": "not_found", "message": name}})

    async def _confirm_tags(
        self, request: httpx.Request, tagger: bytes, digest: bytes, size: int
    ) -> httpx.Response:
        """A real miner's answer: its confirmation of the tags under the tagger's key."""
        query = request.url.params
        scheduler = await self.chain.query(
            "/schedulers/scheduler", QueryArgs(address=address_of(tagger)), Scheduler
        )
        key_id = scheduler.tag_key.key_id
        segment, fragment = int(query["segment"]), int(query["fragment"])
        signed = fragment + 1 if self.mode == "bad_confirmation" else fragment
        message = tags_message(
            CHAIN_ID, query["fid"], segment, signed, digest, key_id, self.key.public_key
        )
        return httpx.Response(
            200,
            json={
                "fragment_hash": digest.hex(),
                "blocks": size // TAG_BYTES,
                "segment": segment,
                "fragment": fragment,
                "key_id": key_id.hex(),
                "miner": self.key.address,
                "signature": self.key.sign(message).hex(),
            },
        )

    async def _put_fragment(
        self, request: httpx.Request, digest: bytes, body: bytes
    ) -> httpx.Response:
        self.fragment_puts += 1
        if self.mode == "error":
            return httpx.Response(500, json={"error": {"code": "internal", "message": "disk"}})
        if self.mode == "hang":
            await asyncio.sleep(3600)
        query = request.url.params
        deal = await self.chain.query("/deals/deal", QueryArgs(id=int(query["deal"])), Deal)
        if deal.scheduler != SCHEDULER.public_key:  # as a real miner: only the assigned one
            message = f"deal {deal.id} is assigned to scheduler {address_of(deal.scheduler)}"
            return httpx.Response(403, json={"error": {"code": "forbidden", "message": message}})
        if int(query["attempt"]) != deal.attempts:  # and only for its current assignment
            message = f"deal {deal.id} is at assignment {deal.attempts}, not {query['attempt']}"
            return httpx.Response(409, json={"error": {"code": "conflict", "message": message}})
        segment, fragment = int(query["segment"]), int(query["fragment"])
        if hashlib.sha256(body).digest() != digest:
            return httpx.Response(422, json={"error": {"code": "hash_mismatch", "message": ""}})
        self.fragments[digest] = body
        signer = MINERS[0] if self.mode == "wrong_miner" and self.key != MINERS[0] else self.key
        if self.mode == "bad_receipt":
            fragment += 1
        if self.mode == "endless_receipt":  # 200, then 64 MiB of answer
            return httpx.Response(200, content=_endless(self))
        receipt = receipt_message(
            CHAIN_ID, deal.id, deal.attempts, deal.fid, segment, fragment, digest, signer.public_key
        )
        return httpx.Response(
            200, json={"miner": self.key.address, "signature": signer.sign(receipt).hex()}
        )


async def _endless(miner: FakeMiner) -> AsyncIterator[bytes]:
    chunk = b" " * 65536
    for _ in range(1024):
        miner.receipt_bytes_sent += len(chunk)
        yield chunk


def encode_object(data: bytes) -> list[EncodedSegment]:
    return list(iter_encoded_segments(io.BytesIO(data), PARAMS.layout))


@dataclass
class Uploader:
    """The user's side: declare on chain (as alice), send segments to the scheduler's app."""

    chain: ChainClient
    app_client: httpx.AsyncClient

    async def submit(self, who: KeyPair, call: Call) -> None:
        await self.chain.submit(who, call)

    async def declare(
        self, data: bytes, name: str = "cat.jpg", *, tamper: int | None = None
    ) -> tuple[int, list[EncodedSegment]]:
        """alice declares ``data``; ``tamper`` = a fragment index of segment 0 declared wrong."""
        segments = encode_object(data)
        plans = [s.plan for s in segments]
        if tamper is not None:
            hashes = list(plans[0].fragment_hashes)
            hashes[tamper] = hashlib.sha256(b"not the fragment").digest()
            plans[0] = replace(plans[0], fragment_hashes=hashes)
        call = DeclareDeal(
            bucket="photos",
            name=name,
            size=len(data),
            fid=compute_fid([p.hash for p in plans]),
            segments=plans,
        )
        outcome = await self.chain.submit(ALICE, call)
        events = [e for e in outcome.result.events if e.type == "deal.declared"]
        return int(events[0].get("id") or -1), segments

    async def deal(self, deal_id: int) -> Deal:
        return await self.chain.query("/deals/deal", QueryArgs(id=deal_id), Deal)

    async def put_segment(
        self,
        deal_id: int,
        segment: EncodedSegment,
        *,
        who: KeyPair = ALICE,
        body: bytes | None = None,
    ) -> httpx.Response:
        return await self.app_client.put(
            f"/deals/{deal_id}/segments/{segment.index}",
            content=segment.data if body is None else body,
            auth=SigningAuth(who),
        )

    async def wait_for_state(self, deal_id: int, state: DealState, timeout_s: float = 10) -> Deal:
        async def reached() -> Deal | None:
            deal = await self.deal(deal_id)
            return deal if deal.state == state else None

        return await wait_for(reached, timeout_s, f"deal {deal_id} to become {state.name}")


@dataclass
class Network(Uploader):
    """The in-process network with fake miners."""

    node: DevNode
    miners: dict[str, FakeMiner]
    service: SchedulerService

    def miner(self, address: str) -> FakeMiner:
        return next(m for m in self.miners.values() if m.key.address == address)

    def fragment_puts(self) -> int:
        return sum(m.fragment_puts for m in self.miners.values())


async def wait_for(probe: Callable[[], Awaitable[T | None]], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def scheduler_settings(tmp_path: Path, **overrides: Any) -> SchedulerSettings:
    key_file = tmp_path / "scheduler-key.toml"
    if not key_file.exists():
        write_key_file(key_file, SCHEDULER)
    options: dict[str, Any] = {
        "chain_url": "http://node",
        "key_file": key_file,
        "data_dir": tmp_path / "scheduler",
        # generous: a loaded 2-core machine can be slow; tests of timeouts set their own
        "miner_timeout_s": 10.0,
        "retry_delay_s": 0.05,
        **overrides,
    }
    return SchedulerSettings(**options)


async def _setup_chain(chain: ChainClient, miner_count: int) -> None:
    await asyncio.gather(
        *[
            chain.submit(
                MINERS[i],
                RegisterMiner(
                    endpoint=f"http://{miner_host(i)}",
                    capacity_bytes=GiB,
                    stake=PARAMS.stake_per_tib,
                ),
            )
            for i in range(miner_count)
        ],
        chain.submit(ALICE, BuySpace(gib=1, days=10)),
    )
    await chain.submit(ALICE, CreateBucket(name="photos"))


def genesis(params: ChainParams = PARAMS) -> Genesis:
    names = [SCHEDULER, OTHER_SCHEDULER, ALICE, BOB, *MINERS]
    return Genesis(
        chain_id=CHAIN_ID,
        genesis_time_ns=time.time_ns(),
        params=params,
        accounts=[GenesisAccount(address=k.address, balance=10**13) for k in names],
    )


def fake_miner_transport(miners: dict[str, FakeMiner]) -> httpx.AsyncBaseTransport:
    async def route(request: httpx.Request) -> httpx.Response:
        return await miners[request.url.host].handle(request)

    return httpx.MockTransport(route)


@asynccontextmanager
async def open_scheduler(
    chain: ChainClient, miner_transport: httpx.AsyncBaseTransport, settings: SchedulerSettings
) -> AsyncIterator[tuple[SchedulerService, httpx.AsyncClient]]:
    """A registered scheduler service and a client of its app."""
    service = await SchedulerService.open(settings, chain, miner_transport=miner_transport)
    await service.register("http://scheduler.test")
    app = create_app(service)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://scheduler.test"
        ) as client:
            yield service, client
    finally:
        await service.aclose()


@asynccontextmanager
async def running_chain(
    tmp_path: Path, *, miner_count: int = 14, params: ChainParams = PARAMS
) -> AsyncIterator[tuple[DevNode, ChainClient]]:
    """A DevNode producing blocks every 20 ms and a client of its RPC; miners 0..n-1 are
    registered at http://miner<i>.test, alice has space and the bucket "photos"."""
    node = DevNode(open_store(tmp_path / "chain.sqlite"), genesis=genesis(params), block_ms=20)
    stop = asyncio.Event()
    producer = asyncio.create_task(node.run(stop))
    rpc = httpx.ASGITransport(app=create_rpc_app(node))
    chain = ChainClient("http://node", transport=rpc, poll_interval_s=0.01)
    try:
        await _setup_chain(chain, miner_count)
        yield node, chain
    finally:
        await chain.aclose()
        stop.set()
        await producer
        node.store.close()


@asynccontextmanager
async def background(
    job: Callable[[], Coroutine[Any, Any, None]],
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``job`` as a task for the block; a failure of it fails the test at the end."""
    task = asyncio.create_task(job())
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def running_network(
    tmp_path: Path,
    *,
    miner_count: int = 14,
    follow: bool = False,
    params: ChainParams = PARAMS,
    **overrides: Any,
) -> AsyncIterator[Network]:
    """The whole in-process network with fake miners; the scheduler is registered and, with
    ``follow``, follows the chain (and so tags)."""
    async with running_chain(tmp_path, miner_count=miner_count, params=params) as (node, chain):
        miners = {miner_host(i): FakeMiner(MINERS[i], chain) for i in range(miner_count)}
        settings = scheduler_settings(tmp_path, **overrides)
        transport = fake_miner_transport(miners)
        async with open_scheduler(chain, transport, settings) as (service, client):
            network = Network(chain, client, node, miners, service)
            if not follow:
                yield network
                return
            async with background(Follower(service).run):
                yield network
