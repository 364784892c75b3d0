"""Signed requests at the HTTP edge, against real miner apps in-process: a request names its
recipient and its Range, and a flood of signed requests from any keys cannot make an honest
signer's request fail.

Two miners (miner0 and miner1, at their registered endpoints http://127.0.0.1:9100 and :9101)
follow one DevNode holding a deal assigned to sched0 (the chain of test_miner_app).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deoss.chain.modules import deals
from deoss.client.chain import ChainClient
from deoss.client.signing import HEADER_BODY, HEADER_SIGNATURE, SigningAuth, now_ms
from deoss.core.keys import KeyPair
from deoss.core.layout import ObjectPlan, plan_object
from deoss.node.devnode import DevNode
from deoss.node.rpc import create_app as create_rpc_app
from deoss.node.store import open_store
from deoss.services.common import auth
from deoss.services.miner.app import create_app
from deoss.services.miner.service import MinerService
from deoss.services.miner.settings import MinerSettings
from deoss.services.miner.store import FragmentStore
from tests.chain_fixtures import StepClock, anyio_backend
from tests.unit.chain.harness import CHAIN_ID, key
from tests.unit.services.miner.test_miner_app import (
    DATA,
    PARAMS,
    SCHEDULER,
    Ledger,
    declare,
    encode,
    genesis,
    register_network,
)

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio

GATEWAY = key("gw")
OWNER = key("alice")  # owns the test file once it is stored: reads for her download


@dataclass
class Miner:
    url: str
    http: httpx.AsyncClient
    store: FragmentStore


@dataclass
class Net:
    miners: list[Miner]
    plan: ObjectPlan
    fragments: list[list[bytes]]
    deal_id: int
    ledger: Ledger

    def put_target(self, segment: int = 0, fragment: int = 0) -> str:
        digest = self.plan.segments[segment].fragment_hashes[fragment].hex()
        return (
            f"/fragments/{digest}?deal={self.deal_id}&attempt=1"
            f"&segment={segment}&fragment={fragment}"
        )

    def get_target(self, segment: int = 0, fragment: int = 0) -> str:
        """A read for alice's download of the file (allowed once it is stored: ``store``)."""
        digest = self.plan.segments[segment].fragment_hashes[fragment].hex()
        return f"/fragments/{digest}?reason=download&fid={self.plan.fid}"

    async def store(self) -> None:
        """miner0 takes fragment 0 of every segment, the others are signed for directly; the
        scheduler reports: the deal is SUCCESS and alice owns the file."""
        rows = []
        for segment in self.plan.segments:
            put = await self.put(0, segment.index, 0)
            assert 200 == put.status_code, put.text
            row = [
                deals.Receipt(
                    miner=key("miner0").public_key, signature=bytes.fromhex(put.json()["signature"])
                )
            ]
            for j, digest in enumerate(segment.fragment_hashes[1:], start=1):
                miner = key(f"miner{j}")
                message = deals.receipt_message(
                    CHAIN_ID,
                    self.deal_id,
                    1,
                    self.plan.fid,
                    segment.index,
                    j,
                    digest,
                    miner.public_key,
                )
                row.append(deals.Receipt(miner=miner.public_key, signature=miner.sign(message)))
            rows.append(row)
        report = deals.ReportDeal(deal_id=self.deal_id, placements=rows)
        await asyncio.to_thread(self.ledger.block, (SCHEDULER, report))

    async def put(self, miner: int, segment: int = 0, fragment: int = 0) -> httpx.Response:
        return await self.miners[miner].http.put(
            self.put_target(segment, fragment),
            content=self.fragments[segment][fragment],
            auth=SigningAuth(SCHEDULER),
        )


@asynccontextmanager
async def two_miners(tmp: Path) -> AsyncIterator[Net]:
    """miner0 and miner1 served at their registered endpoints (built when called, so a test
    can change the verifier's limits first)."""
    node = DevNode(open_store(tmp / "chain.sqlite"), genesis=genesis(), clock=StepClock())
    ledger = Ledger(node)
    register_network(ledger)
    plan = plan_object(io.BytesIO(DATA), PARAMS.layout)
    deal_id = declare(ledger, plan)
    rpc = httpx.ASGITransport(app=create_rpc_app(node))
    async with AsyncExitStack() as stack:
        chain = await stack.enter_async_context(
            ChainClient("http://node", transport=rpc, poll_interval_s=0.01)
        )
        miners = []
        for i in range(2):
            data_dir = tmp / f"miner{i}"
            store = FragmentStore(data_dir / "fragments")
            stack.callback(store.close)
            settings = MinerSettings(
                chain_url="http://node",
                key_path=data_dir / "key.toml",
                listen="127.0.0.1:0",
                data_dir=data_dir,
            )
            app = create_app(
                MinerService.from_settings(settings, chain=chain, store=store, key=key(f"miner{i}"))
            )
            url = f"http://127.0.0.1:{9100 + i}"
            transport = httpx.ASGITransport(app=app)
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url=url)
            )
            miners.append(Miner(url, http, store))
        yield Net(miners, plan, encode(DATA), deal_id, ledger)
    node.store.close()


async def test_a_put_signed_for_one_miner_is_refused_by_another(tmp_path: Path) -> None:
    """The scheduler's fragment PUT to miner0, replayed to miner1 within the window as sent
    or with its Host rewritten, is refused with 401 and miner1 stores nothing."""
    async with two_miners(tmp_path) as net:
        sent = await net.put(0)
        assert 200 == sent.status_code, sent.text
        as_sent = dict(sent.request.headers)
        other = net.miners[1]
        replayed = await other.http.put(
            net.put_target(), content=net.fragments[0][0], headers=as_sent
        )
        rehosted = await other.http.put(
            net.put_target(),
            content=net.fragments[0][0],
            headers={**as_sent, "host": "127.0.0.1:9101"},
        )
        assert [401, 401] == [replayed.status_code, rehosted.status_code]
        assert "not to this server" in replayed.json()["error"]["message"]
        assert "does not verify" in rehosted.json()["error"]["message"]
        assert [] == list(other.store.all_places())
        assert 1 == len(list(net.miners[0].store.all_places()))


async def test_a_range_changed_after_signing_is_refused(tmp_path: Path) -> None:
    """The gateway's ranged read with its Range changed, removed, or doubled is refused; the
    request as signed is then served."""
    async with two_miners(tmp_path) as net:
        assert 200 == (await net.put(0, 0, 2)).status_code
        await net.store()
        miner = net.miners[0]
        request = miner.http.build_request(
            "GET", net.get_target(0, 2), headers={"range": "bytes=0-9"}
        )
        signed = next(SigningAuth(OWNER).auth_flow(request))
        headers = dict(signed.headers)
        changed = await miner.http.get(
            net.get_target(0, 2), headers={**headers, "range": "bytes=0-99"}
        )
        removed = await miner.http.get(
            net.get_target(0, 2), headers={k: v for k, v in headers.items() if k != "range"}
        )
        doubled = await miner.http.get(
            net.get_target(0, 2), headers=[*headers.items(), ("range", "bytes=0-99")]
        )
        assert [401, 401, 401] == [r.status_code for r in (changed, removed, doubled)]
        assert "more than one range header" in doubled.json()["error"]["message"]
        served = await miner.http.get(net.get_target(0, 2), headers=headers)
        assert (206, net.fragments[0][2][:10]) == (served.status_code, served.content)


async def test_a_flood_of_signed_requests_cannot_make_an_honest_one_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unregistered keys (fresh ones, one over its own budget) and forged signatures flood
    miner0 past its replay memory; the scheduler's PUT and the gateway's GET still succeed."""
    monkeypatch.setattr(auth, "MAX_REMEMBERED", 200)
    monkeypatch.setattr(auth, "MAX_PER_SIGNER", 50)
    async with two_miners(tmp_path) as net:
        miner = net.miners[0]
        statuses: list[int] = []
        for i in range(250):
            fresh = SigningAuth(KeyPair.from_seed(i.to_bytes(32, "big")))
            response = await miner.http.get(net.get_target(), auth=fresh)
            statuses.append(response.status_code)
        greedy = SigningAuth(KeyPair.from_seed(b"g" * 32))
        for _ in range(60):
            statuses.append((await miner.http.get(net.get_target(), auth=greedy)).status_code)
        for i in range(20):
            forged = {
                "x-deoss-address": KeyPair.from_seed(b"f" * 32).address,
                "x-deoss-time": str(now_ms()),
                HEADER_BODY: hashlib.sha256(b"").hexdigest(),
                HEADER_SIGNATURE: f"{i:02x}" * 64,
            }
            statuses.append((await miner.http.get(net.get_target(), headers=forged)).status_code)
        assert {403, 401} == set(statuses)
        assert 250 + 50 == statuses.count(403)  # signed by an unregistered key: verified
        await net.store()  # the scheduler's PUTs succeed
        got = await miner.http.get(net.get_target(), auth=SigningAuth(OWNER))
        assert (200, net.fragments[0][0]) == (got.status_code, got.content)
