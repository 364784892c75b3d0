"""A real ``deoss node miner`` process against a real ``deoss node chain`` process."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from deoss.chain.modules.miners import Miner
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.errors import ClientError
from deoss.keyfile import read_key_file
from deoss.node.home import dev_key_path, init_home, rpc_addr_path
from tests.integration.conftest import Launcher

pytestmark = pytest.mark.integration

BLOCK_MS = 50
GiB = 1024**3


async def registered_miner(chain_url: str, address: str) -> Miner:
    async with ChainClient(chain_url) as chain:
        for _ in range(200):
            try:
                return await chain.query("/miners/miner", QueryArgs(address=address), Miner)
            except ClientError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"{address} never registered as a miner")


def test_miner_process_registers_itself_and_answers_healthz(
    tmp_path: Path, launcher: Launcher
) -> None:
    """The miner binds port 0, registers that endpoint on chain, serves /healthz, stops on
    SIGTERM with exit 0 and removes its addr file."""
    home = tmp_path / "home"
    init_home(home, chain_id="itest", dev_accounts=2, block_ms=BLOCK_MS)
    chain = launcher.start("chain", "node", "chain", "--home", str(home), "--rpc", "127.0.0.1:0")
    chain_url = "http://" + launcher.wait_for_file(rpc_addr_path(home), chain)
    config = tmp_path / "miner.toml"
    config.write_text(
        "[service]\n"
        f'chain = "{chain_url}"\n'
        f'key = "{dev_key_path(home, 1)}"\n'
        'listen = "127.0.0.1:0"\n'
        'data_dir = "miner-data"\n'
        "\n[miner]\n"
        f"capacity_bytes = {GiB}\n"
    )
    miner = launcher.start("miner", "node", "miner", "--config", str(config))
    address = launcher.wait_for_file(tmp_path / "miner-data" / "addr", miner)
    record = asyncio.run(registered_miner(chain_url, read_key_file(dev_key_path(home, 1)).address))
    health = httpx.get(f"http://{address}/healthz", timeout=10).json()
    assert (f"http://{address}", GiB) == (record.endpoint, record.capacity_bytes)
    assert ("ok", "miner") == (health["status"], health["role"]), launcher.logs()
    miner.send_signal(signal.SIGTERM)
    assert 0 == miner.wait(15), launcher.logs()
    assert not (tmp_path / "miner-data" / "addr").exists()
