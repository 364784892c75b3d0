"""Helpers shared by the node, client and CLI tests: keys, genesis, a DevNode on a temp store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deoss.chain.calls import sign_tx
from deoss.chain.genesis import ChainParams, Genesis, GenesisAccount
from deoss.chain.modules.accounts import Transfer
from deoss.core.keys import KeyPair
from deoss.node.devnode import DevNode
from deoss.node.serve import bind_socket, serve_node
from deoss.node.store import open_store

CHAIN_ID = "test-chain"
GENESIS_TIME_NS = 1_700_000_000_000_000_000
BALANCE = 10**12
KEYS = [KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(4)]
RECIPIENT = KeyPair.from_seed(b"\x99" * 32).address


def make_genesis(keys: list[KeyPair] = KEYS, chain_id: str = CHAIN_ID) -> Genesis:
    return Genesis(
        chain_id=chain_id,
        genesis_time_ns=GENESIS_TIME_NS,
        params=ChainParams(),
        accounts=[GenesisAccount(address=key.address, balance=BALANCE) for key in keys],
    )


def transfer(key: KeyPair, nonce: int, amount: int = 1, to: str = RECIPIENT) -> bytes:
    return sign_tx(key, CHAIN_ID, nonce, Transfer(to=to, amount=amount))


class StepClock:
    """A wall clock that advances 1 ms per reading, from the genesis time."""

    def __init__(self, start_ns: int = GENESIS_TIME_NS) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        self.now_ns += 1_000_000
        return self.now_ns


def open_node(path: Path, **options: object) -> DevNode:
    return DevNode(open_store(path), genesis=make_genesis(), clock=StepClock(), **options)  # type: ignore[arg-type]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[DevNode]:
    dev_node = open_node(tmp_path / "chain.sqlite")
    yield dev_node
    dev_node.store.close()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio only."""
    return "asyncio"


class ServedNode:
    """A DevNode serving its RPC on 127.0.0.1 from a background thread (for CLI tests)."""

    def __init__(self, node: DevNode) -> None:
        self.node = node
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def listening(host: str, port: int) -> None:
            self.url = f"http://{host}:{port}"
            self._ready.set()

        with bind_socket("127.0.0.1", 0) as sock:
            await serve_node(self.node, sock, self._stop, on_listening=listening)

    def start(self) -> ServedNode:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test node did not start listening")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def served_node(tmp_path: Path) -> Iterator[ServedNode]:
    served = ServedNode(open_node(tmp_path / "served.sqlite", block_ms=20)).start()
    yield served
    served.stop()
    served.node.store.close()
