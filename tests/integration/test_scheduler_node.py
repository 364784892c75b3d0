"""A real ``deoss node scheduler`` process against a real ``deoss node chain`` process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
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
from tests.integration.conftest import Launcher

pytestmark = pytest.mark.integration

BLOCK_MS = 50


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


def registered_health(url: str) -> dict[str, object]:
    """/healthz once the scheduler has seen its own registration land (the chain may show it
    a moment before the scheduler's submit returns)."""
    deadline = time.monotonic() + 15
    while True:
        health: dict[str, object] = httpx.get(f"{url}/healthz", timeout=10).json()
        if health["registered"] or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


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
        health = registered_health(f"http://{listen}")
        assert ("ok", "scheduler", address) == (health["status"], health["role"], health["address"])
        assert health["registered"], launcher.logs()
        assert record.tag_key.key_id.hex() == health["tag_key_id"]
        assert ChainParams().scheduler_min_stake == record.stake
        key_ids.append(health["tag_key_id"])
        stop(scheduler, launcher)
        assert not addr_file.exists()
    assert key_ids[0] == key_ids[1]
    assert 0o600 == (tmp_path / "scheduler-data" / "tag.key").stat().st_mode & 0o777
