"""Clients ride out a gateway restart (real processes): the gateway is SIGKILLed and started
again in the middle of 10 uploads through GatewayClient; every upload succeeds and reads back
byte-identical. 12 miners, 200 ms blocks, 1 MiB segments: a deal the dead gateway was
delivering fails within three 10 s deadlines, and is then uploaded again."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deoss.client.gateway import GatewayClient, UploadResult
from deoss.client.retry import RetryPolicy
from deoss.devnet import DEV_BUCKET, Devnet, DevnetSpec, up
from deoss.keyfile import read_key_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    home = Path(tmp_path_factory.mktemp("restart"))
    spec = DevnetSpec(
        home=home, chain_port=0, gateway_port=0, block_ms=200, miners=12, segment_size=1 << 20
    )
    net = up(spec, detach=False)
    try:
        yield net
    finally:
        net.stop()


def content(size: int, seed: int) -> bytes:
    block = hashlib.sha256(f"restart-{seed}".encode()).digest() * 1024
    return (block * (size // len(block) + 1))[:size]


def test_ten_puts_ride_out_a_gateway_restart(network: Devnet) -> None:
    """Once 3 of the 10 puts are done the gateway is killed and restarted: all 10 succeed,
    the client said what it waited for, and every object reads back identical."""
    user = read_key_file(network.spec.key_path(0))
    objects = {f"restart-{i}": content(40_000 + 997 * i, i) for i in range(10)}
    stored: dict[str, UploadResult] = {}
    waits: list[str] = []
    failures: list[BaseException] = []
    progressed = threading.Condition()

    async def upload_all() -> None:
        policy = RetryPolicy(deadline_s=150)
        async with GatewayClient(
            network.gateway_url, user, retry=policy, on_wait=waits.append
        ) as client:
            for name, data in objects.items():
                result = await client.put_bytes(DEV_BUCKET, name, data)
                with progressed:
                    stored[name] = result
                    progressed.notify_all()

    def uploader() -> None:
        try:
            asyncio.run(upload_all())
        except BaseException as exc:  # reported by the test below
            failures.append(exc)
        with progressed:
            progressed.notify_all()

    thread = threading.Thread(target=uploader)
    thread.start()
    with progressed:
        assert progressed.wait_for(lambda: len(stored) >= 3 or failures, timeout=120)
    popen = network.process("gateway").popen
    assert popen is not None
    os.kill(popen.pid, signal.SIGKILL)
    popen.wait()
    network.restart("gateway")
    thread.join(timeout=400)
    assert (False, []) == (thread.is_alive(), failures)
    assert list(objects) == list(stored)
    assert all(r.state == "SUCCESS" for r in stored.values())
    assert waits, "the restart went unnoticed: the test did not test it"

    async def read_all() -> dict[str, bytes]:
        async with GatewayClient(network.gateway_url, user) as client:
            return {name: await client.read_object(DEV_BUCKET, name) for name in objects}

    assert objects == asyncio.run(read_all())
