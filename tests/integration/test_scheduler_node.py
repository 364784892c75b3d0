"""A real ``deoss node scheduler`` process against a real ``deoss node chain`` process."""

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

from deoss.chain.genesis import ChainParams
from deoss.chain.modules.schedulers import Scheduler
from deoss.chain.query import QueryArgs
from deoss.client.chain import ChainClient
from deoss.client.errors import ClientError
from deoss.keyfile import read_key_file
from deoss.node.home import dev_key_path, init_home, rpc_addr_path

pytestmark = pytest.mark.integration

BLOCK_MS = 50


class Launcher:
    """Starts ``deoss`` processes with their output in log files; kills what is left."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp_path / f"{name}-{len(self.started)}.log"
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
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    started = Launcher(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


async def scheduler_record(chain_url: str, address: str, endpoint: str) -> Scheduler:
    """The chain's record of ``address`` once it shows ``endpoint``."""
    async with ChainClient(chain_url) as chain:
        for _ in range(200):
            try:
                record = await chain.query(
                    "/schedulers/scheduler", QueryArgs(address=address), Scheduler
                )
                if record.endpoint == endpoint:
                    return record
            except ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{address} never registered {endpoint}")


def stop(process: subprocess.Popen[bytes], launcher: Launcher) -> None:
    process.send_signal(signal.SIGTERM)
    assert 0 == process.wait(15), launcher.logs()


def test_scheduler_process_registers_itself_and_answers_healthz(
    tmp_path: Path, launcher: Launcher
) -> None:
    """The scheduler registers its endpoint and tag key with the minimum stake, serves
    /healthz, stops on SIGTERM; restarted on another port it keeps its tag key and updates
    the endpoint."""
    home = tmp_path / "home"
    init_home(home, chain_id="itest", dev_accounts=2, block_ms=BLOCK_MS)
    chain = launcher.start("chain", "node", "chain", "--home", str(home), "--rpc", "127.0.0.1:0")
    chain_url = "http://" + launcher.wait_for_file(rpc_addr_path(home), chain)
    address = read_key_file(dev_key_path(home, 1)).address
    config = tmp_path / "scheduler.toml"
    config.write_text(
        f'[service]\nchain = "{chain_url}"\nkey = "{dev_key_path(home, 1)}"\n'
        'listen = "127.0.0.1:0"\ndata_dir = "scheduler-data"\n'
    )
    addr_file = tmp_path / "scheduler-data" / "addr"
    key_ids = []
    for _ in range(2):
        scheduler = launcher.start("scheduler", "node", "scheduler", "--config", str(config))
        listen = launcher.wait_for_file(addr_file, scheduler)
        record = asyncio.run(scheduler_record(chain_url, address, f"http://{listen}"))
        health = httpx.get(f"http://{listen}/healthz", timeout=10).json()
        assert ("ok", "scheduler", address) == (health["status"], health["role"], health["address"])
        assert health["registered"], launcher.logs()
        assert record.tag_key.key_id.hex() == health["tag_key_id"]
        assert ChainParams().scheduler_min_stake == record.stake
        key_ids.append(health["tag_key_id"])
        stop(scheduler, launcher)
        assert not addr_file.exists()
    assert key_ids[0] == key_ids[1]
    assert 0o600 == (tmp_path / "scheduler-data" / "tag.key").stat().st_mode & 0o777
