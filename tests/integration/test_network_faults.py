"""The network under failures, as real processes: a miner or the assigned scheduler killed
during an upload, the chain node killed and restarted during uploads, and bad requests sent
straight to schedulers and miners. 14 miners and 2 schedulers, so that a segment still finds
12 distinct miners while one is down."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from deoss.chain.modules.deals import Deal, DealCounts, DealState
from deoss.chain.modules.declare import DeclareDeal
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.signing import SigningAuth
from deoss.core.keys import KeyPair
from deoss.core.layout import LayoutParams, iter_encoded_segments, plan_object
from deoss.devnet import DEV_BUCKET, Devnet, DevnetSpec, up
from deoss.keyfile import read_key_file

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
R = TypeVar("R")

SEGMENT = MiB
LAYOUT = LayoutParams(segment_size=SEGMENT)


@dataclass
class Network:
    spec: DevnetSpec
    net: Devnet

    def key(self, index: int) -> KeyPair:
        return read_key_file(self.spec.key_path(index))

    @property
    def user(self) -> KeyPair:
        return self.key(0)

    def client(self, key: KeyPair | None = None, base: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=base or self.net.gateway_url, timeout=180, auth=SigningAuth(key or self.user)
        )

    def put(self, name: str, data: bytes) -> httpx.Response:
        with self.client() as client:
            return client.put(f"/objects/{DEV_BUCKET}/{name}", content=data)

    def get(self, name: str) -> httpx.Response:
        with self.client() as client:
            return client.get(f"/objects/{DEV_BUCKET}/{name}")

    def query(self, path: str, type_: type[R], **args: Any) -> R:
        async def ask() -> R:
            async with ChainClient(self.net.chain_url) as chain:
                return await chain.query(path, QueryArgs(**args), type_)

        return asyncio.run(ask())

    def next_deal_id(self) -> int:
        counts = self.query("/deals/counts", DealCounts)
        assert isinstance(counts, DealCounts)
        return counts.open + counts.assigned + counts.success + counts.failed

    def wait_assigned(self, deal_id: int, timeout_s: float = 60) -> Deal:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                deal = self.query("/deals/deal", Deal, id=deal_id)
            except Exception:  # not declared yet
                time.sleep(0.02)
                continue
            assert isinstance(deal, Deal)
            if deal.state == DealState.ASSIGNED:
                return deal
            time.sleep(0.02)
        raise AssertionError(f"deal {deal_id} was not assigned in time")

    def name_of(self, public_key: bytes) -> str:
        for name, _, index in self.spec.services():
            if self.key(index).public_key == public_key:
                return name
        raise KeyError(public_key.hex())

    def kill(self, name: str) -> None:
        popen = self.net.process(name).popen
        assert popen is not None
        os.kill(popen.pid, signal.SIGKILL)
        popen.wait()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    home = Path(tmp_path_factory.mktemp("faults"))
    spec = DevnetSpec(
        home=home, chain_port=0, gateway_port=0, block_ms=200, miners=14, segment_size=SEGMENT
    )
    net = up(spec, detach=False)
    try:
        yield Network(spec, net)
    finally:
        net.stop()


def content(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 4096
    return (block * (size // len(block) + 1))[:size]


def upload_in_background(
    network: Network, name: str, data: bytes
) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(network.put(name, data)))
    thread.start()
    return thread, answers


def test_upload_succeeds_when_a_miner_dies_during_it(network: Network) -> None:
    data = content(30 * SEGMENT, "miner-dies")
    deal_id = network.next_deal_id()
    thread, answers = upload_in_background(network, "miner-dies", data)
    deal = network.wait_assigned(deal_id)
    victim = "miner-3"
    network.kill(victim)
    thread.join()
    assert 201 == answers[0].status_code, answers[0].text
    got = network.get("miner-dies")
    assert (200, data) == (got.status_code, got.content)
    assert DealState.SUCCESS == network.query("/deals/deal", Deal, id=deal.id).state
    network.net.restart(victim)


def test_upload_succeeds_when_the_assigned_scheduler_dies(network: Network) -> None:
    data = content(30 * SEGMENT, "scheduler-dies")
    deal_id = network.next_deal_id()
    thread, answers = upload_in_background(network, "scheduler-dies", data)
    deal = network.wait_assigned(deal_id)
    victim = network.name_of(deal.scheduler)
    network.kill(victim)
    thread.join()
    assert 201 == answers[0].status_code, answers[0].text
    final = network.query("/deals/deal", Deal, id=deal_id)
    assert isinstance(final, Deal)
    assert (DealState.SUCCESS, True) == (final.state, final.attempts >= 2)
    assert final.scheduler != deal.scheduler
    got = network.get("scheduler-dies")
    assert (200, data) == (got.status_code, got.content)
    network.net.restart(victim)


def test_chain_killed_and_restarted_during_uploads_loses_nothing_acknowledged(
    network: Network,
) -> None:
    """Uploads run while the chain node is SIGKILLed and restarted: every acknowledged (201)
    object downloads byte-identical afterwards, and uploads are acknowledged again after the
    restart (uploads caught by the outage may fail, which is allowed)."""
    acknowledged: dict[str, bytes] = {}
    acknowledged_at: list[float] = []
    stop = threading.Event()

    def uploader() -> None:
        number = 0
        while not stop.is_set():
            name, data = f"steady-{number}", content(20_000 + number, f"steady-{number}")
            try:
                if network.put(name, data).status_code == 201:
                    acknowledged[name] = data
                    acknowledged_at.append(time.monotonic())
            except httpx.HTTPError:
                pass
            number += 1

    thread = threading.Thread(target=uploader)
    thread.start()
    time.sleep(2)
    network.kill("chain")
    time.sleep(1)
    network.net.restart("chain")
    restarted = time.monotonic()
    deadline = restarted + 90
    while time.monotonic() < deadline and not any(t > restarted for t in acknowledged_at):
        time.sleep(0.2)
    stop.set()
    thread.join()
    assert any(t > restarted for t in acknowledged_at), "no upload succeeded after the restart"
    for name, data in acknowledged.items():
        got = network.get(name)
        assert (200, data) == (got.status_code, got.content), name


def test_bad_requests_to_schedulers_and_miners_are_refused(network: Network) -> None:
    gateway, user = network.key(1), network.user
    data = content(3000, "bad-requests")
    plan = plan_object(io.BytesIO(data), LAYOUT)
    deal_id = network.next_deal_id()

    async def declare() -> None:
        async with ChainClient(network.net.chain_url) as chain:
            await chain.submit(
                gateway,
                DeclareDeal(
                    bucket=DEV_BUCKET,
                    name="bad-requests",
                    size=plan.size,
                    fid=plan.fid,
                    segments=plan.segments,
                    owner=user.address,
                ),
            )

    asyncio.run(declare())
    deal = network.wait_assigned(deal_id)
    assigned = network.name_of(deal.scheduler)
    other = next(
        n for n, role, _ in network.spec.services() if role == "scheduler" and n != assigned
    )
    encoded = next(iter_encoded_segments(io.BytesIO(data), LAYOUT))
    target = f"/deals/{deal_id}/segments/0"
    with network.client(gateway, network.net.process(other).url) as client:
        assert 409 == client.put(target, content=encoded.data).status_code
    with network.client(gateway, network.net.process(assigned).url) as client:
        wrong = bytes([encoded.data[0] ^ 1]) + encoded.data[1:]
        assert 422 == client.put(target, content=wrong).status_code
    fragment = bytes(encoded.fragments[0])
    fragment_hash = encoded.plan.fragment_hashes[0].hex()
    miner_url = network.net.process("miner-0").url
    path = f"/fragments/{fragment_hash}?deal={deal_id}&attempt={deal.attempts}&segment=0&fragment=0"
    other_index = next(i for n, _, i in network.spec.services() if n == other)
    with network.client(network.key(other_index), miner_url) as client:
        assert 403 == client.put(path, content=fragment).status_code
    assigned_index = next(i for n, _, i in network.spec.services() if n == assigned)
    with network.client(network.key(assigned_index), miner_url) as client:
        assert client.put(path, content=fragment + b"x").status_code in (413, 422)
        flipped = bytes([fragment[0] ^ 1]) + fragment[1:]  # right size, wrong bytes
        assert 422 == client.put(path, content=flipped).status_code
    with network.client(gateway, miner_url) as client:  # a read must name its reason
        assert 403 == client.get(f"/fragments/{fragment_hash}").status_code
    download = f"/fragments/{fragment_hash}?reason=download&fid={plan.fid}&owner={user.address}"
    with network.client(gateway, miner_url) as client:  # nothing was stored by the refusals
        refused = client.get(download)
        assert 403 == refused.status_code
        assert "not held here" in refused.text
