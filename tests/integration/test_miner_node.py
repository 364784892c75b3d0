"""A real ``deoss node miner`` process against a real ``deoss node chain`` process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deoss.chain.modules.miners import Miner
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.errors import ClientError
from deoss.keyfile import read_key_file
from deoss.node.home import dev_key_path, init_home, rpc_addr_path

pytestmark = pytest.mark.integration

BLOCK_MS = 50
GiB = 1024**3


class Processes:
    """Starts processes; the fixture kills whatever is still running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "deoss", *args], stdout=log, stderr=subprocess.STDOUT
            )
        self.started.append((process, log_path))
        return process

    def wait_for_file(self, path: Path, process: subprocess.Popen[bytes]) -> str:
        deadline = time.monotonic() + 30
        while not path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{path} never appeared (exit {process.poll()}):\n{self.logs()}")
            time.sleep(0.05)
        return path.read_text().strip()

    def logs(self) -> str:
        return "\n".join(f"--- {log}\n{log.read_text()}" for _, log in self.started)

    def kill_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


async def registered_miner(chain_url: str, address: str) -> Miner:
    async with ChainClient(chain_url) as chain:
        for _ in range(200):
            try:
                return await chain.query("/miners/miner", QueryArgs(address=address), Miner)
            except ClientError:
                await asyncio.sleep(0.05)
    raise AssertionError(f"{address} never registered as a miner")


def test_miner_process_registers_itself_and_answers_healthz(
    tmp_path: Path, processes: Processes
) -> None:
    """The miner binds port 0, registers that endpoint on chain, serves /healthz, stops on
    SIGTERM with exit 0 and removes its addr file."""
    home = tmp_path / "home"
    init_home(home, chain_id="itest", dev_accounts=2, block_ms=BLOCK_MS)
    chain = processes.start("chain", "node", "chain", "--home", str(home), "--rpc", "127.0.0.1:0")
    chain_url = "http://" + processes.wait_for_file(rpc_addr_path(home), chain)
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
    miner = processes.start("miner", "node", "miner", "--config", str(config))
    address = processes.wait_for_file(tmp_path / "miner-data" / "addr", miner)
    record = asyncio.run(registered_miner(chain_url, read_key_file(dev_key_path(home, 1)).address))
    health = httpx.get(f"http://{address}/healthz", timeout=10).json()
    assert (f"http://{address}", GiB) == (record.endpoint, record.capacity_bytes)
    assert ("ok", "miner") == (health["status"], health["role"]), processes.logs()
    miner.send_signal(signal.SIGTERM)
    assert 0 == miner.wait(15), processes.logs()
    assert not (tmp_path / "miner-data" / "addr").exists()
