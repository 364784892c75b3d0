"""An in-process network for the gateway's tests: a DevNode producing blocks every 20 ms behind
its RPC (ASGITransport), fake schedulers and miners that behave as docs/services.md says, and
the gateway app under test.

The fake scheduler checks the deal on chain, the declarer's signature and every hash,
erasure-codes the segment, "stores" fragment j on miner j (a dict keyed by hash), signs real
receipts with the registered miners' keys and submits the real ``deals.report``, so deals
reach SUCCESS on the chain. Fake miners serve ``GET /fragments/{hash}``; each can be made
unreachable, failing, corrupt or slow. ``Network`` routes the gateway's requests by host.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deoss.chain.calls import sign_tx
from deoss.chain.genesis import ChainParams, Genesis, GenesisAccount
from deoss.chain.modules.buckets import CreateBucket
from deoss.chain.modules.deals import Deal, DealState, Receipt, ReportDeal, receipt_message
from deoss.chain.modules.gateways import AuthorizeGateway, RegisterGateway
from deoss.chain.modules.miners import RegisterMiner
from deoss.chain.modules.schedulers import RegisterScheduler
from deoss.chain.modules.space import BuySpace
from deoss.chain.query import QueryArgs
from deoss.chain.types import Call
from deoss.client.chain import ChainClient
from deoss.client.errors import QueryFailed
from deoss.client.gateway import GatewayClient
from deoss.client.retry import NO_RETRY
from deoss.client.signing import now_ms
from deoss.core.keys import KeyPair
from deoss.core.layout import LayoutParams, encode_segment
from deoss.core.podr2 import PodrParams
from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app as create_rpc_app
from deoss.node.store import open_store
from deoss.services.common.auth import AuthError, RequestVerifier, host_names
from deoss.services.gateway.app import create_app
from deoss.services.gateway.service import Gateway
from deoss.services.gateway.settings import GatewaySettings
from tests.unit.chain.harness import SECTORS, key, tag_key

CHAIN_ID = "test-chain"
LAYOUT = LayoutParams(segment_size=4096, data_shards=4, parity_shards=8)
MINERS = [f"miner{i}" for i in range(12)]
USERS = ["alice", "bob", "carol", "dave"]
GATEWAY = "gw"
GATEWAY_URL = "http://gateway.test"
MAX_OBJECT_BYTES = 64 * 1024
GiB = 1024**3

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def chain_params(**overrides: int) -> ChainParams:
    """Test parameters: 4 KiB segments, long deal deadlines, no tagging or audit pressure."""
    values: dict[str, int] = {
        "block_interval_ms": 20,
        "deal_timeout_blocks": 500,
        "max_deal_attempts": 3,
        "tag_timeout_blocks": 1_000_000,
        "challenge_interval_blocks": 1_000_000,
        "proof_deadline_blocks": 1000,
    }
    values.update(overrides)
    return ChainParams(
        layout=LAYOUT,
        podr2=PodrParams(
            sectors_per_block=SECTORS, blocks_per_fragment=2, fragments_per_challenge=4
        ),
        **values,
    )


def setup_calls(params: ChainParams) -> list[tuple[str, Call]]:
    """Who does what before the first test block: schedulers, miners, the gateway, users.

    alice: space, bucket "photos", authorized the gateway. bob: space, bucket "bobs",
    authorized. carol: space and a bucket, did not authorize. dave: authorized, a bucket, no
    space.
    """
    calls: list[tuple[str, Call]] = [
        (
            f"sched{i}",
            RegisterScheduler(
                endpoint=f"http://sched{i}.test",
                stake=params.scheduler_min_stake,
                tag_key=tag_key(f"sched{i}").public,
            ),
        )
        for i in range(2)
    ]
    calls += [
        (
            m,
            RegisterMiner(
                endpoint=f"http://{m}.test", capacity_bytes=GiB, stake=params.stake_per_tib
            ),
        )
        for m in MINERS
    ]
    calls.append((GATEWAY, RegisterGateway(endpoint=GATEWAY_URL, stake=params.gateway_stake)))
    buckets = {"alice": "photos", "bob": "bobs", "carol": "carols", "dave": "daves"}
    for user in USERS:
        if user != "dave":
            calls.append((user, BuySpace(gib=1, days=10)))
        calls.append((user, CreateBucket(name=buckets[user])))
        if user != "carol":
            calls.append((user, AuthorizeGateway(gateway=key(GATEWAY).address)))
    return calls


def start_node(path: Path, params: ChainParams) -> DevNode:
    names = [*USERS, GATEWAY, "sched0", "sched1", *MINERS]
    genesis = Genesis(
        chain_id=CHAIN_ID,
        genesis_time_ns=1_700_000_000_000_000_000,
        params=params,
        accounts=[GenesisAccount(address=key(n).address, balance=10**15) for n in names],
    )
    node = DevNode(open_store(path), genesis=genesis, block_ms=params.block_interval_ms)
    nonces: dict[str, int] = {}
    for who, call in setup_calls(params):
        nonce = nonces.get(who, 0)
        nonces[who] = nonce + 1
        result = node.check_tx(sign_tx(key(who), CHAIN_ID, nonce, call))
        assert 0 == result.code, result.log
    block = node.produce_block()
    assert all(0 == r.code for r in block.block.results), [r.log for r in block.block.results]
    return node


def _response(status: int, **body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def _error(status: int, message: str) -> httpx.Response:
    return _response(status, error={"code": "fake", "message": message})


@dataclass
class FakeMiner:
    """Serves GET /fragments/{hash} from ``store``; ``mode`` ok | error | corrupt | slow."""

    name: str
    store: dict[bytes, bytes] = field(default_factory=dict)
    mode: str = "ok"
    delay_s: float = 5.0
    served: int = 0
    verifier: RequestVerifier = field(default_factory=RequestVerifier)

    @property
    def key(self) -> KeyPair:
        return key(self.name)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        try:
            signer, _ = self.verifier.verify(
                request.method,
                request.url.raw_path.decode(),
                request.headers,
                now_ms(),
                hosts=host_names(request.url.host, request.url.port),
            )
        except AuthError as exc:
            return _error(401, str(exc))
        if signer != key(GATEWAY).public_key:
            return _error(403, "only the gateway reads fragments here")
        match = re.fullmatch(r"/fragments/([0-9a-f]{64})", request.url.path)
        if request.method != "GET" or match is None:
            return _error(404, "no such route")
        if self.mode == "error":
            return _error(500, "disk on fire")
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        data = self.store.get(bytes.fromhex(match.group(1)))
        if data is None:
            return _error(404, "unknown fragment")
        self.served += 1
        if self.mode == "corrupt":
            data = bytes([data[0] ^ 1]) + data[1:]
        return httpx.Response(200, content=data)


@dataclass
class FakeScheduler:
    """PUT /deals/{id}/segments/{i}: checks, codes, places on miner j, reports when complete."""

    name: str
    chain: ChainClient
    miners: list[FakeMiner]
    received: list[tuple[int, int]] = field(default_factory=list)
    placed: dict[tuple[int, int], dict[int, list[Receipt]]] = field(default_factory=dict)
    verifier: RequestVerifier = field(default_factory=RequestVerifier)

    @property
    def key(self) -> KeyPair:
        return key(self.name)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        match = re.fullmatch(r"/deals/(\d+)/segments/(\d+)", request.url.path)
        if request.method != "PUT" or match is None:
            return _error(404, "no such route")
        try:
            signer, body_sha = self.verifier.verify(
                request.method,
                request.url.raw_path.decode(),
                request.headers,
                now_ms(),
                hosts=host_names(request.url.host, request.url.port),
            )
        except AuthError as exc:
            return _error(401, str(exc))
        body = await request.aread()
        if hashlib.sha256(body).hexdigest() != body_sha:
            return _error(401, "body does not match the signed hash")
        deal_id, index = int(match.group(1)), int(match.group(2))
        try:
            deal = await self.chain.query("/deals/deal", QueryArgs(id=deal_id), Deal)
        except QueryFailed:
            return _error(404, f"no deal {deal_id}")
        if signer != deal.declarer:
            return _error(403, "not the declarer")
        if deal.state != DealState.ASSIGNED or deal.scheduler != self.key.public_key:
            return _error(409, "deal not assigned to me")
        return await self._place(deal, index, body)

    async def _place(self, deal: Deal, index: int, body: bytes) -> httpx.Response:
        segment = deal.segments[index]
        if hashlib.sha256(body).digest() != segment.hash or len(body) != segment.padded_size:
            return _error(422, "segment hash or size mismatch")
        receipts = []
        for j, fragment in enumerate(encode_segment(body, LAYOUT)):
            digest = hashlib.sha256(fragment).digest()
            if digest != segment.fragment_hashes[j]:
                return _error(422, f"fragment {j} hash mismatch")
            miner = self.miners[j]
            miner.store[digest] = bytes(fragment)
            message = receipt_message(
                CHAIN_ID, deal.id, deal.attempts, deal.fid, index, j, digest, miner.key.public_key
            )
            receipts.append(Receipt(miner=miner.key.public_key, signature=miner.key.sign(message)))
        self.received.append((deal.id, index))
        placed = self.placed.setdefault((deal.id, deal.attempts), {})  # receipts name both
        placed[index] = receipts
        if len(placed) == len(deal.segments):
            placements = [placed[i] for i in range(len(deal.segments))]
            await self.chain.submit(
                self.key, ReportDeal(deal_id=deal.id, placements=placements), wait=False
            )
        return _response(200, segment=index, miners=[m.key.address for m in self.miners])


class Switch(httpx.AsyncBaseTransport):
    """A transport that refuses connections while ``down`` is set (the chain node gone)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


class Network(httpx.AsyncBaseTransport):
    """Routes requests to the fake services by host; hosts in ``down`` refuse connections.

    ``fail_first_scheduler`` ("refuse", "timeout" or "503") makes the first scheduler
    contacted fail that way, for good."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.down: set[str] = set()
        self.fail_first_scheduler = ""
        self.failing: dict[str, str] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if self.fail_first_scheduler and host.startswith("sched"):
            self.failing[host] = self.fail_first_scheduler
            self.fail_first_scheduler = ""
        if host in self.down or host not in self.handlers or self.failing.get(host) == "refuse":
            raise httpx.ConnectError(f"connection to {host} refused", request=request)
        if self.failing.get(host) == "timeout":
            raise httpx.ReadTimeout(f"{host} did not answer in time", request=request)
        if self.failing.get(host) == "503":
            return _error(503, "not enough miners")
        return await self.handlers[host](request)


@dataclass
class Net:
    node: DevNode
    chain: ChainClient
    rpc: Switch
    network: Network
    schedulers: list[FakeScheduler]
    miners: list[FakeMiner]
    settings: GatewaySettings
    app_transport: httpx.ASGITransport

    def client(self, user: str = "alice") -> GatewayClient:
        # no retries: these tests look at the gateway's own answers (deals are still followed)
        return GatewayClient(GATEWAY_URL, key(user), transport=self.app_transport, retry=NO_RETRY)

    def raw(self) -> httpx.AsyncClient:
        """An unsigned HTTP client of the gateway app, for hand-made requests."""
        return httpx.AsyncClient(base_url=GATEWAY_URL, transport=self.app_transport)

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app_transport.app.state.gateway  # type: ignore[attr-defined]
        return gateway

    def metric(self, name: str) -> float:
        assert self.gateway.registry is not None
        return self.gateway.registry.get_sample_value(name) or 0.0

    @property
    def spool_files(self) -> list[Path]:
        return sorted(self.settings.spool_path.iterdir())


def gateway_settings(tmp_path: Path, **overrides: object) -> GatewaySettings:
    values: dict[str, object] = {
        "chain_url": "http://node",
        "key_path": tmp_path / "unused-key.toml",
        "data_dir": tmp_path / "gateway",
        "max_object_bytes": MAX_OBJECT_BYTES,
        "hedge_after_ms": 50,
        "poll_interval_ms": 10,
        "deal_wait_s": 20,
        "scheduler_timeout_s": 2,
        "miner_timeout_s": 2,
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def running_network(tmp_path: Path, **settings: object) -> AsyncIterator[Net]:
    """Everything started, in one event loop; stopped and closed at the end."""
    node = start_node(tmp_path / "chain.sqlite", chain_params())
    stop = asyncio.Event()
    producer = asyncio.create_task(node.run(stop))
    rpc = Switch(httpx.ASGITransport(app=create_rpc_app(node)))
    chain = ChainClient("http://node", transport=rpc, poll_interval_s=0.01)
    network = Network()
    miners = [FakeMiner(name) for name in MINERS]
    schedulers = [FakeScheduler(f"sched{i}", chain, miners) for i in range(2)]
    services: list[FakeMiner | FakeScheduler] = [*miners, *schedulers]
    for service in services:
        network.handlers[f"{service.name}.test"] = service.handle
    config = gateway_settings(tmp_path, **settings)
    app = create_app(Gateway(config, chain=chain, key=key(GATEWAY), transport=network))
    try:
        yield Net(
            node, chain, rpc, network, schedulers, miners, config, httpx.ASGITransport(app=app)
        )
    finally:
        await app.state.gateway.aclose()
        await chain.aclose()
        stop.set()
        await producer
        node.store.close()
