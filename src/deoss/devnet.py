"""The local network: a chain node, schedulers, miners and a gateway as real processes.

    deoss up [--home .deoss]     create the network on first use, start every process, register
                                 them, give the dev user space and a bucket, authorize the
                                 gateway; print the endpoints; stop everything on Ctrl-C
    deoss up --detach            the same, returning once the network is ready
    deoss down                   stop a detached network

Layout of the home (kept across restarts)::

    chain/                  the chain node's home (genesis, keys/dev-<i>.toml, data)
    scheduler-<i>/, miner-<i>/, gateway/   config.toml and data/ of each service
    logs/<name>.log         each process's output
    devnet.json             the running processes (pid, url) while the network is up

Dev accounts (chain/keys/dev-<i>.toml): 0 is the user, 1 the gateway, then the schedulers,
then the miners. Services register themselves on chain at start (docs/services.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deoss.chain.genesis import ChainParams
from deoss.chain.modules.buckets import CreateBucket
from deoss.chain.modules.gateways import AuthorizeGateway
from deoss.chain.modules.space import BuySpace
from deoss.client.chain import ChainClient
from deoss.client.errors import QueryFailed
from deoss.core.layout import LayoutParams
from deoss.keyfile import read_key_file
from deoss.node.home import init_home

__all__ = ["Devnet", "DevnetError", "DevnetSpec", "down", "up"]

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
DEV_BUCKET = "default"
GiB = 1024**3


class DevnetError(Exception):
    """The network could not be created, started or stopped; the message says why."""


@dataclass(frozen=True)
class DevnetSpec:
    home: Path
    schedulers: int = 2
    miners: int = 16  # 12 fragments per segment, and room to rebuild them elsewhere
    block_ms: int = 500
    chain_port: int = 26657
    gateway_port: int = 8080
    miner_capacity_bytes: int = 64 * GiB
    segment_size: int = 32 * 1024 * 1024
    # audit: a round every 20 s at 500 ms blocks, answered within 10 s
    challenge_interval_blocks: int = 40
    proof_deadline_blocks: int = 20
    max_consecutive_faults: int = 3
    restoral_deadline_blocks: int = 120
    miner_options: dict[str, int | float] = field(default_factory=dict)  # more [miner] keys

    @property
    def chain_home(self) -> Path:
        return self.home / "chain"

    def key_path(self, index: int) -> Path:
        return self.chain_home / "keys" / f"dev-{index}.toml"

    def services(self) -> list[tuple[str, str, int]]:
        """(name, role, dev key index) of every service, in start order."""
        out = [(f"scheduler-{i}", "scheduler", 2 + i) for i in range(self.schedulers)]
        out += [(f"miner-{i}", "miner", 2 + self.schedulers + i) for i in range(self.miners)]
        out.append(("gateway", "gateway", 1))
        return out


def devnet_params(spec: DevnetSpec) -> ChainParams:
    """Chain parameters for a local network: short deadlines so that repair is watchable."""
    return ChainParams(
        layout=LayoutParams(segment_size=spec.segment_size),
        block_interval_ms=spec.block_ms,
        deal_timeout_blocks=40,
        deal_blocks_per_segment=10,
        challenge_interval_blocks=spec.challenge_interval_blocks,
        proof_deadline_blocks=spec.proof_deadline_blocks,
        max_consecutive_faults=spec.max_consecutive_faults,
        tag_timeout_blocks=1200,
        restoral_deadline_blocks=spec.restoral_deadline_blocks,
        blocks_per_day=86_400_000 // spec.block_ms,
    )


def _service_config(spec: DevnetSpec, name: str, role: str, key_index: int) -> str:
    listen_port = spec.gateway_port if role == "gateway" else 0
    lines = [
        f"# {name}: written by deoss up; edit freely, deoss up keeps it.",
        "[service]",
        f'chain = "http://127.0.0.1:{spec.chain_port}"',
        f'key = "{spec.key_path(key_index).resolve()}"',
        f'listen = "127.0.0.1:{listen_port}"',
        'data_dir = "data"',
    ]
    if role == "miner":
        lines += ["", "[miner]", f"capacity_bytes = {spec.miner_capacity_bytes}"]
        lines += [f"{key} = {value!r}" for key, value in sorted(spec.miner_options.items())]
    return "\n".join(lines) + "\n"


def create(spec: DevnetSpec) -> bool:
    """Create the home on first use; returns False when it already existed (kept as is)."""
    if (spec.chain_home / "genesis.json").exists():
        return False
    accounts = 2 + spec.schedulers + spec.miners
    init_home(
        spec.chain_home,
        chain_id="deoss-devnet",
        dev_accounts=accounts,
        block_ms=spec.block_ms,
        params=devnet_params(spec),
    )
    for name, role, key_index in spec.services():
        directory = spec.home / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.toml").write_text(_service_config(spec, name, role, key_index))
    (spec.home / "logs").mkdir(exist_ok=True)
    return True


@dataclass
class Process:
    name: str
    argv: list[str]
    addr_file: Path
    popen: subprocess.Popen[bytes] | None = None
    url: str = ""


@dataclass
class Devnet:
    """Starts and stops the processes of a network described by ``spec``."""

    spec: DevnetSpec
    detach: bool = False
    processes: list[Process] = field(default_factory=list)
    _env: dict[str, str] = field(default_factory=dict)

    def _spawn(self, process: Process, env: dict[str, str]) -> None:
        log = open(self.spec.home / "logs" / f"{process.name}.log", "ab")  # noqa: SIM115
        process.addr_file.unlink(missing_ok=True)
        process.popen = subprocess.Popen(
            process.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=self.detach,
            cwd=self.spec.home,
        )
        log.close()

    def _wait_for_addr(self, process: Process, deadline: float) -> str:
        while time.monotonic() < deadline:
            if process.popen is not None and process.popen.poll() is not None:
                raise DevnetError(
                    f"{process.name} exited with status {process.popen.returncode};"
                    f" see {self.spec.home / 'logs' / (process.name + '.log')}"
                )
            if process.addr_file.exists():
                text = process.addr_file.read_text().strip()
                if text:
                    process.url = f"http://{text}"
                    return process.url
            time.sleep(0.05)
        raise DevnetError(f"{process.name} did not start within {READY_TIMEOUT_S:.0f} s")

    def start(self) -> None:
        """Start every process and wait until each one listens."""
        python = [sys.executable, "-m", "deoss"]
        env = dict(os.environ)
        deadline = time.monotonic() + READY_TIMEOUT_S
        chain = Process(
            "chain",
            [
                *python,
                "node",
                "chain",
                "--home",
                str(self.spec.chain_home),
                "--rpc",
                f"127.0.0.1:{self.spec.chain_port}",
                "--block-ms",
                str(self.spec.block_ms),
            ],
            self.spec.chain_home / "rpc.addr",
        )
        self._spawn(chain, env)
        self.processes.append(chain)
        env["DEOSS_SERVICE_CHAIN"] = self._wait_for_addr(chain, deadline)
        self._env = env
        started = []
        for name, role, _ in self.spec.services():
            directory = self.spec.home / name
            process = Process(
                name,
                [*python, "node", role, "--config", str(directory / "config.toml")],
                directory / "data" / "addr",
            )
            self._spawn(process, env)
            self.processes.append(process)
            started.append(process)
        for process in started:
            self._wait_for_addr(process, deadline)
        self._write_state()

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def restart(self, name: str) -> str:
        """Start a stopped (or killed) process again on the port it had, so that its clients
        (the services for the chain, users for the gateway) find it where they left it.
        Returns its URL."""
        process = self.process(name)
        if process.popen is not None and process.popen.poll() is None:
            raise DevnetError(f"{name} is still running")
        env = dict(self._env)
        address = process.url.removeprefix("http://")
        if name == "chain":
            index = process.argv.index("--rpc") + 1
            process.argv[index] = address
        elif address:
            env["DEOSS_SERVICE_LISTEN"] = address  # over the config's listen (port 0: any)
        self._spawn(process, env)
        url = self._wait_for_addr(process, time.monotonic() + READY_TIMEOUT_S)
        self._write_state()
        return url

    def _write_state(self) -> None:
        state = {
            p.name: {"pid": p.popen.pid if p.popen else 0, "url": p.url} for p in self.processes
        }
        (self.spec.home / "devnet.json").write_text(json.dumps(state, indent=2) + "\n")

    def stop(self) -> None:
        """SIGTERM the services, then the chain; SIGKILL what is still running after a while."""
        _terminate([p.popen.pid for p in reversed(self.processes) if p.popen is not None])
        for process in self.processes:
            if process.popen is not None:
                process.popen.wait()
        (self.spec.home / "devnet.json").unlink(missing_ok=True)

    @property
    def chain_url(self) -> str:
        return self.processes[0].url

    @property
    def gateway_url(self) -> str:
        return next(p.url for p in self.processes if p.name == "gateway")


def _terminate(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + STOP_TIMEOUT_S
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _running(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (a detached network): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return finished == 0


async def wait_registered(spec: DevnetSpec, chain_url: str) -> None:
    """Wait until every service is registered on chain."""
    async with ChainClient(chain_url) as chain:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            miners = await chain.reads.miners()
            schedulers = await chain.reads.schedulers()
            gateways = await chain.reads.gateways()
            if (len(miners), len(schedulers), len(gateways)) >= (spec.miners, spec.schedulers, 1):
                return
            await asyncio.sleep(0.2)
    raise DevnetError("services did not all register on chain in time; see the logs")


async def bootstrap_user(spec: DevnetSpec, chain_url: str) -> None:
    """The dev user has space, a bucket and has authorized the gateway (idempotent)."""
    user = read_key_file(spec.key_path(0))
    gateway = read_key_file(spec.key_path(1))
    async with ChainClient(chain_url) as chain:
        try:
            await chain.reads.lease.required(user.address)
        except QueryFailed:
            await chain.submit(user, BuySpace(gib=256, days=365))
        authorized = await chain.reads.authorized_gateways(user.address)
        if gateway.address not in authorized:
            await chain.submit(user, AuthorizeGateway(gateway=gateway.address))
        try:
            await chain.reads.bucket.required(user.address, DEV_BUCKET)
        except QueryFailed:
            await chain.submit(user, CreateBucket(name=DEV_BUCKET))


def up(spec: DevnetSpec, *, detach: bool) -> Devnet:
    """Create (first time), start and prepare the network. On failure everything is stopped."""
    if (spec.home / "devnet.json").exists():
        state = json.loads((spec.home / "devnet.json").read_text())
        if any(_running(entry["pid"]) for entry in state.values()):
            raise DevnetError(f"a network is already running from {spec.home}; deoss down first")
    create(spec)
    net = Devnet(spec, detach=detach)
    try:
        net.start()
        asyncio.run(wait_registered(spec, net.chain_url))
        asyncio.run(bootstrap_user(spec, net.chain_url))
    except BaseException:
        net.stop()
        raise
    return net


def down(home: Path) -> int:
    """Stop a detached network; returns how many processes were signalled."""
    state_file = home / "devnet.json"
    if not state_file.exists():
        raise DevnetError(f"no network is running from {home}")
    state = json.loads(state_file.read_text())
    pids = [entry["pid"] for name, entry in state.items() if name != "chain"]
    pids.append(state.get("chain", {}).get("pid", 0))
    _terminate([pid for pid in pids if pid])
    state_file.unlink(missing_ok=True)
    return len(pids)
