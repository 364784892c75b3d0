"""Real ``deoss node chain`` and ``deoss node miner`` processes take their slow-client bounds
from their config files (node.toml ``[rpc]``, the miner's ``[service]``) and raise their
soft open-file limit at start (deoss.http_server)."""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

import pytest

from deoss.node.home import dev_key_path, init_home, rpc_addr_path
from tests.integration.conftest import Launcher

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 1
SLACK_S = 3.0
LOW_SOFT_LIMIT = 256


def cut_after_partial_head(address: str) -> tuple[bytes, float]:
    """Send half a request head; return what the server answers before closing, and when."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=HEADER_TIMEOUT_S + SLACK_S) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):  # raises TimeoutError if the server never closes
            received += chunk
        return received, time.monotonic() - started


def soft_open_file_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-file limit for process {pid}")


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/<pid>/limits")
def test_processes_bound_slow_clients_from_their_config(tmp_path: Path, launcher: Launcher) -> None:
    """Started with a low soft file limit and a 1 s header timeout in their config files,
    both processes run with the hard limit and cut a half-sent request at about 1 s."""
    home = tmp_path / "home"
    init_home(home, chain_id="itest", dev_accounts=2, block_ms=50)
    node_toml = home / "node.toml"
    node_toml.write_text(
        node_toml.read_text().replace("[rpc]\n", f"[rpc]\nheader_timeout_s = {HEADER_TIMEOUT_S}\n")
    )
    config = tmp_path / "miner.toml"
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_SOFT_LIMIT, hard))  # inherited by children
    try:
        chain = launcher.start(
            "chain", "node", "chain", "--home", str(home), "--rpc", "127.0.0.1:0"
        )
        chain_address = launcher.wait_for_file(rpc_addr_path(home), chain)
        config.write_text(
            "[service]\n"
            f'chain = "http://{chain_address}"\n'
            f'key = "{dev_key_path(home, 1)}"\n'
            'listen = "127.0.0.1:0"\n'
            'data_dir = "miner-data"\n'
            f"header_timeout_s = {HEADER_TIMEOUT_S}\n"
            "\n[miner]\n"
            f"capacity_bytes = {1024**3}\n"
        )
        miner = launcher.start("miner", "node", "miner", "--config", str(config))
        miner_address = launcher.wait_for_file(tmp_path / "miner-data" / "addr", miner)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (before, hard))
    for process, address in [(chain, chain_address), (miner, miner_address)]:
        soft, process_hard = soft_open_file_limit(process.pid)
        assert soft == process_hard > LOW_SOFT_LIMIT, launcher.logs()
        response, elapsed = cut_after_partial_head(address)
        assert response.startswith(b"HTTP/1.1 408"), launcher.logs()
        assert HEADER_TIMEOUT_S * 0.9 <= elapsed < HEADER_TIMEOUT_S + SLACK_S
