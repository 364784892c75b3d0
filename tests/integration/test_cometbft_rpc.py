"""ChainClient against a real CometBFT v0.38.26 node (its built-in kvstore app), dead URL
first: reads, both broadcasts, tx lookup by hash, a lost answer re-sent, and following blocks
over the websocket feed. The app differs from DeOSS's; the RPC is the one the services use.

Needs the cometbft binary: $COMETBFT_BIN, .tools/bin/cometbft or `cometbft` on the PATH;
skipped without one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from deoss.client.chain import ChainClient
from deoss.client.chain_types import TxOutcome
from deoss.client.errors import RpcError, TxRefused

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def cometbft_binary() -> str:
    for candidate in (
        os.environ.get("COMETBFT_BIN"),
        str(ROOT / ".tools" / "bin" / "cometbft"),
        shutil.which("cometbft"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no cometbft binary ($COMETBFT_BIN, .tools/bin/cometbft or the PATH)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def kvstore_url(tmp_path: Path) -> Iterator[str]:
    """A single kvstore validator; its RPC URL once it has committed a block."""
    binary, home = cometbft_binary(), tmp_path / "cmt"
    subprocess.run([binary, "init", "--home", str(home)], check=True, capture_output=True)
    config = home / "config" / "config.toml"
    text = config.read_text().replace('timeout_commit = "1s"', 'timeout_commit = "200ms"')
    config.write_text(text)
    rpc, p2p = free_port(), free_port()
    log = open(tmp_path / "cometbft.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [binary, "node", "--home", str(home), "--proxy_app=kvstore"]
        + [f"--rpc.laddr=tcp://127.0.0.1:{rpc}", f"--p2p.laddr=tcp://127.0.0.1:{p2p}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{rpc}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status = httpx.get(f"{url}/status").json()["result"]
                if int(status["sync_info"]["latest_block_height"]) >= 1:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp_path / "cometbft.log").read_text()[-3000:])
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def indexed(client: ChainClient, hash_: bytes) -> TxOutcome:
    """The tx with this hash, once CometBFT's indexer has it (at most 10 s)."""
    for _ in range(200):
        try:
            return await client.tx(hash_)
        except RpcError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"tx {hash_.hex()} was never found")


class LoseFirstBroadcast(httpx.AsyncBaseTransport):
    """Real HTTP; the first broadcast_tx_sync reaches the node but its answer is lost."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost = False
        self.sent_to: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if msgspec.json.decode(request.content)["method"] == "broadcast_tx_sync":
            self.sent_to.append(request.url.host)
            if not self.lost:
                self.lost = True
                await response.aread()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_chain_client_against_cometbft(kvstore_url: str) -> None:
    async def use() -> None:
        async with ChainClient([dead_url(), kvstore_url], poll_interval_s=0.02) as client:
            status = await client.status()
            assert kvstore_url == client.url
            info = await client.app_info()
            assert info.height >= status.height >= 1
            block = await client.block(status.height)
            results = await client.block_results(status.height)
            assert (block.height, results.height) == (status.height, status.height)
            checked = await client.broadcast(b"deoss-sync=%d" % time.time_ns(), wait=False)
            committed = await client.broadcast(b"deoss-commit=%d" % time.time_ns(), wait=True)
            assert committed.height is not None and 0 == committed.result.code
            assert committed.result.events  # kvstore's "app" events, read as Events
            with pytest.raises(TxRefused) as refused:
                await client.broadcast(b"no equals sign", wait=False)
            assert "check" == refused.value.stage
            found = await indexed(client, checked.hash)
            assert found.hash == checked.hash and found.height
            assert committed.height == (await client.tx(committed.hash)).height
            heights = []
            async for followed in client.follow(committed.height):
                heights.append(followed.height)
                if len(heights) == 3:
                    break
            assert list(range(committed.height, committed.height + 3)) == heights
            assert client.feed is not None and client.feed.live

    asyncio.run(use())


def test_a_lost_broadcast_answer_is_resent_to_cometbft(kvstore_url: str) -> None:
    """The same bytes go to the next URL (the same node under another name); CometBFT answers
    "tx already exists in cache", which the client takes as accepted, and the tx lands once."""
    other_name = kvstore_url.replace("127.0.0.1", "localhost")
    transport = LoseFirstBroadcast()

    async def use() -> None:
        async with ChainClient([kvstore_url, other_name], transport=transport) as client:
            tx = b"deoss-resent=%d" % time.time_ns()
            outcome = await client.broadcast(tx, wait=False)
            found = await indexed(client, outcome.hash)
            assert found.height and 0 == found.result.code
        assert ["127.0.0.1", "localhost"] == transport.sent_to

    asyncio.run(use())
