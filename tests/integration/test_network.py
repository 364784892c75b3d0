"""The whole network as real processes (deoss up): uploads and downloads through the gateway.

One network for the module (chain, 2 schedulers, 12 miners, gateway on 127.0.0.1, free ports,
1 MiB segments so that segment boundaries are cheap); every process is stopped at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deoss.chain.modules.buckets import CreateBucket
from deoss.client.chain import ChainClient
from deoss.client.signing import SigningAuth, now_ms, sign_request
from deoss.core.keys import KeyPair
from deoss.devnet import DEV_BUCKET, Devnet, DevnetSpec, up
from deoss.keyfile import read_key_file

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SEGMENT = MiB


@dataclass
class Network:
    spec: DevnetSpec
    net: Devnet
    user: KeyPair

    def client(self, key: KeyPair | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.net.gateway_url, timeout=120, auth=SigningAuth(key or self.user)
        )

    def put(self, name: str, data: bytes) -> httpx.Response:
        with self.client() as client:
            return client.put(f"/objects/{DEV_BUCKET}/{name}", content=data)

    def get(self, name: str, headers: dict[str, str] | None = None) -> httpx.Response:
        with self.client() as client:
            return client.get(f"/objects/{DEV_BUCKET}/{name}", headers=headers or {})


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    home = tmp_path_factory.mktemp("devnet")
    spec = DevnetSpec(
        home=Path(home),
        chain_port=0,
        gateway_port=0,
        block_ms=200,
        segment_size=SEGMENT,
        miners=12,  # "8 of 12 miners down"
    )
    network = Network(spec, up(spec, detach=False), read_key_file(spec.key_path(0)))
    try:
        yield network
    finally:
        network.net.stop()  # the last test restarts it: stop whichever net is current


def content(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(f"{seed}".encode()).digest() * (MiB // 32 + 1)
    return (block * (size // len(block) + 1))[:size]


@pytest.mark.parametrize("size", [0, 1, 1024, SEGMENT + 1])
def test_round_trip_is_byte_identical(network: Network, size: int) -> None:
    data = content(size, seed=size)
    response = network.put(f"rt-{size}", data)
    assert 201 == response.status_code, response.text
    assert size == response.json()["size"]
    got = network.get(f"rt-{size}")
    assert (200, data) == (got.status_code, got.content)


def test_range_reads(network: Network) -> None:
    data = content(3 * SEGMENT + 100, seed=7)
    assert 201 == network.put("ranged", data).status_code
    for first, last in (
        (0, 0),
        (10, 20),
        (SEGMENT - 5, SEGMENT + 5),
        (len(data) - 1, len(data) - 1),
    ):
        response = network.get("ranged", {"Range": f"bytes={first}-{last}"})
        assert 206 == response.status_code
        assert data[first : last + 1] == response.content
        assert f"bytes {first}-{last}/{len(data)}" == response.headers["content-range"]
    assert 416 == network.get("ranged", {"Range": f"bytes={len(data)}-{len(data) + 5}"}).status_code


def test_same_object_twice_is_stored_once(network: Network) -> None:
    data = content(5000, seed=42)
    first = network.put("twice-a", data).json()
    second = network.put("twice-b", data).json()
    assert first["fid"] == second["fid"]
    with network.client() as client:
        status = client.get(f"/files/{first['fid']}/status").json()
    assert 2 == status["owners"]


def test_refusals_change_nothing(network: Network) -> None:
    with httpx.Client(base_url=network.net.gateway_url) as anonymous:
        assert 401 == anonymous.put(f"/objects/{DEV_BUCKET}/unsigned", content=b"x").status_code
    stranger = read_key_file(network.spec.key_path(2))  # a scheduler's key: no authorization
    with network.client(stranger) as client:
        response = client.put(f"/objects/{DEV_BUCKET}/nope", content=b"x")
    assert 403 == response.status_code
    assert 404 == network.get("unsigned").status_code
    assert 404 == network.get("nope").status_code


def test_another_users_bucket_is_refused(network: Network) -> None:
    other = read_key_file(network.spec.key_path(2))

    async def create() -> None:
        async with ChainClient(network.net.chain_url) as chain:
            await chain.submit(other, CreateBucket(name="not-yours"))

    asyncio.run(create())
    with network.client() as client:
        assert 404 == client.put("/objects/not-yours/x", content=b"data").status_code
        assert 404 == client.get("/objects/not-yours/x").status_code
        assert 404 == client.delete("/buckets/not-yours").status_code


def test_expired_and_replayed_requests_are_refused(network: Network) -> None:
    target = f"/objects/{DEV_BUCKET}/replayed"
    body = b"replayed body"
    digest = hashlib.sha256(body).hexdigest()
    host = httpx.URL(network.net.gateway_url).netloc.decode()
    stale = sign_request(network.user, "PUT", target, now_ms() - 5 * 60_000, digest, host=host)
    fresh = sign_request(network.user, "PUT", target, now_ms(), digest, host=host)
    with httpx.Client(base_url=network.net.gateway_url, timeout=60) as client:
        assert 401 == client.put(target, content=body, headers=stale).status_code
        assert 201 == client.put(target, content=body, headers=fresh).status_code
        assert 401 == client.put(target, content=body, headers=fresh).status_code


@pytest.mark.slow
def test_100_mib_round_trip(network: Network) -> None:
    data = content(100 * MiB, seed=100)
    response = network.put("big", data)
    assert 201 == response.status_code, response.text
    got = network.get("big")
    assert 200 == got.status_code
    assert hashlib.sha256(data).digest() == hashlib.sha256(got.content).digest()


def test_download_survives_8_of_12_miners_down(network: Network) -> None:
    """Run late in this module: it kills miners."""
    data = content(2 * SEGMENT + 3, seed=99)
    assert 201 == network.put("robust", data).status_code
    miners = [p for p in network.net.processes if p.name.startswith("miner-")]
    for process in miners[:8]:
        assert process.popen is not None
        os.kill(process.popen.pid, signal.SIGKILL)
        process.popen.wait()
    got = network.get("robust")
    assert (200, data) == (got.status_code, got.content)


def test_up_again_on_the_same_home_keeps_every_object(network: Network) -> None:
    """Run last: ``deoss up`` on the home of a stopped network (8 of its miners killed before)
    brings every process back with what it acknowledged."""
    network.net.stop()
    network.net = up(network.spec, detach=False)
    got = network.get("robust")
    assert (200, content(2 * SEGMENT + 3, seed=99)) == (got.status_code, got.content)
    assert 201 == network.put("after-restart", b"new").status_code
    assert b"new" == network.get("after-restart").content
