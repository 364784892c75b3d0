"""A real ``deoss node chain`` process: transfers over the RPC, SIGTERM, and kill -9 mid-traffic."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deoss.chain.calls import sign_tx
from deoss.chain.modules.accounts import Account, Transfer
from deoss.client.chain import ChainClient
from deoss.client.errors import ClientError, NodeUnavailable
from deoss.core.keys import KeyPair
from deoss.keyfile import read_key_file
from deoss.node.home import init_home, rpc_addr_path

pytestmark = pytest.mark.integration

BLOCK_MS = 100
WORKERS = 4


@dataclass
class NodeProcess:
    home: Path
    process: subprocess.Popen[bytes]
    url: str


class NodeLauncher:
    """Starts ``deoss node chain`` processes; the fixture kills whatever is left running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, home: Path) -> NodeProcess:
        address = rpc_addr_path(home)
        address.unlink(missing_ok=True)  # a node killed with -9 leaves its address behind
        log = open(self.tmp_path / f"node-{len(self.processes)}.log", "wb")  # noqa: SIM115
        command = [sys.executable, "-m", "deoss", "node", "chain", "--home", str(home)]
        process = subprocess.Popen(
            [*command, "--rpc", "127.0.0.1:0", "--block-ms", str(BLOCK_MS)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes.append(process)
        deadline = time.monotonic() + 30
        while not address.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                output = (self.tmp_path / f"node-{len(self.processes) - 1}.log").read_text()
                raise RuntimeError(f"the node did not start (exit {process.poll()}):\n{output}")
            time.sleep(0.05)
        url = "http://" + address.read_text().strip()
        asyncio.run(wait_ready(url))
        return NodeProcess(home, process, url)

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)


async def wait_ready(url: str) -> None:
    """Readiness probe: status answers."""
    async with ChainClient(url) as client:
        for _ in range(200):
            try:
                await client.status()
                return
            except NodeUnavailable:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"node at {url} never answered status")


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[NodeLauncher]:
    nodes = NodeLauncher(tmp_path)
    try:
        yield nodes
    finally:
        nodes.kill_all()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    init_home(path, chain_id="itest", dev_accounts=WORKERS, block_ms=BLOCK_MS)
    return path


def dev_keys(home: Path) -> list[KeyPair]:
    return [read_key_file(home / "keys" / f"dev-{i}.toml") for i in range(WORKERS)]


def recipient(worker: int, index: int) -> str:
    return KeyPair.from_seed(hashlib.sha256(f"{worker}/{index}".encode()).digest()).address


def test_transfers_over_rpc_and_clean_shutdown(home: Path, launcher: NodeLauncher) -> None:
    """Concurrent transfers land; SIGTERM stops the node with exit 0 and removes rpc.addr."""
    node = launcher.start(home)
    keys = dev_keys(home)

    async def send() -> list[Account]:
        async with ChainClient(node.url) as client:
            calls = [
                client.submit(keys[0], Transfer(to=recipient(0, i), amount=i + 1))
                for i in range(20)
            ]
            outcomes = await asyncio.gather(*calls)
            assert all(o.height for o in outcomes)
            return [await client.account(recipient(0, i)) for i in range(20)]

    accounts = asyncio.run(send())
    assert [i + 1 for i in range(20)] == [a.balance for a in accounts]
    node.process.send_signal(signal.SIGTERM)
    assert 0 == node.process.wait(15)
    assert not rpc_addr_path(home).exists()


@dataclass(frozen=True)
class Acked:
    hash: bytes
    height: int
    to: str
    amount: int


async def traffic(url: str, chain_id: str, keys: list[KeyPair], acked: list[Acked]) -> None:
    """Each worker sends broadcast_tx_commit transfers in a row until the node dies."""

    async def worker(number: int, client: ChainClient) -> None:
        key = keys[number]
        for index in range(10_000):
            to, amount = recipient(number, index), 1000 + index
            tx = sign_tx(key, chain_id, index, Transfer(to=to, amount=amount))
            try:
                outcome = await client.broadcast(tx, wait=True)
            except ClientError:
                return  # the node is gone: whatever was not acknowledged may or may not land
            assert outcome.height is not None
            acked.append(Acked(outcome.hash, outcome.height, to, amount))

    async with ChainClient(url, timeout_s=5) as client:
        await asyncio.gather(*(worker(n, client) for n in range(WORKERS)))


def test_kill_9_mid_traffic_loses_no_acknowledged_transfer(
    home: Path, launcher: NodeLauncher
) -> None:
    """After kill -9 and a restart, height and app hash continue and every acked tx is there."""
    node = launcher.start(home)
    keys = dev_keys(home)
    acked: list[Acked] = []

    async def run_and_kill() -> None:
        sending = asyncio.create_task(traffic(node.url, "itest", keys, acked))
        while len(acked) < 40:
            await asyncio.sleep(0.02)
        node.process.kill()  # SIGKILL while the workers are mid-request
        await sending

    asyncio.run(run_and_kill())
    node.process.wait(10)
    last_acked = max(a.height for a in acked)
    restarted = launcher.start(home)

    async def check() -> None:
        async with ChainClient(restarted.url) as client:
            info = await client.app_info()
            assert info.height >= last_acked
            stored = await client.block_results(info.height)
            assert info.app_hash == stored.app_hash  # memory and disk agree after the restart
            for tx in acked:
                found = await client.tx(tx.hash)
                assert (tx.height, 0) == (found.height, found.result.code)
                assert tx.amount == (await client.account(tx.to)).balance
            # the chain goes on from there: the next block builds on the restored app hash
            outcome = await client.submit(keys[0], Transfer(to=recipient(9, 9), amount=5))
            assert outcome.height is not None and outcome.height > info.height
            first_new = await client.block(info.height + 1)
            assert info.app_hash == first_new.last_app_hash
            assert stored.height == info.height

    asyncio.run(check())
    restarted.process.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly too
    assert 0 == restarted.process.wait(15)


def closed_port_url() -> str:
    """An http URL where nothing listens: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("dead_first", [True, False])
def test_a_dead_endpoint_beside_the_live_node(
    home: Path, launcher: NodeLauncher, dead_first: bool
) -> None:
    """Given a dead URL before or after the node's, transfers, reads and the websocket feed
    all work on the live node; once that node is gone too, requests fail as unreachable."""
    node = launcher.start(home)
    keys = dev_keys(home)
    dead = closed_port_url()
    urls = [dead, node.url] if dead_first else [node.url, dead]

    async def use() -> None:
        async with ChainClient(urls, poll_interval_s=0.02) as client:
            start = (await client.status()).height
            outcomes = await asyncio.gather(
                *(client.submit(keys[1], Transfer(to=recipient(1, i), amount=7)) for i in range(5))
            )
            assert all(o.height for o in outcomes)
            heights = []
            async for block in client.follow(start + 1):
                heights.append(block.height)
                if len(heights) == 5:
                    break
            assert list(range(start + 1, start + 6)) == heights
            assert node.url == client.url
            assert client.feed is not None and client.feed.live
            assert client.feed.url.startswith(node.url.replace("http", "ws", 1))
            assert 5 == (await client.account(keys[1].address)).nonce
            node.process.kill()
            node.process.wait(10)
            with pytest.raises(NodeUnavailable):
                await client.status()

    asyncio.run(use())
