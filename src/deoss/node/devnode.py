"""DevNode: the embedded block producer that drives the state machine on one machine.

    check_tx -> mempool (arrival order) -> every block_ms, or produce_block():
        header -> machine.finalize_block -> machine.commit -> store.commit_block -> listeners

Invariants:

* One lock serialises every call into the machine (it is not thread-safe): check_tx, query and
  block production. Listeners (RPC subscriptions, broadcast_tx_commit waiters) hear about a
  block only after it is durably in the store, and in height order.
* The mempool holds only transactions that passed check_tx against the committed state plus
  the transactions before them; after each block the included ones are dropped and the rest
  are checked again (the machine restarts its check state at commit), dropping any that fail.
* A transaction that fails in finalize_block still goes in the block with its code, as in
  CometBFT. Block time is the wall clock but never earlier than the previous block's time + 1.
* Anything unexpected while producing a block (a machine bug, a disk error) halts the node:
  memory may be ahead of the disk, so it refuses all further work. A restart resumes from the
  last block in the store with the same height and app hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from deoss.chain.genesis import Genesis
from deoss.chain.machine import StateMachine
from deoss.chain.types import BlockHeader, QueryResult, TxResult
from deoss.core import codec
from deoss.core.codec import Record
from deoss.node.store import BlockRecord, Store, StoredHeader, tx_hash

__all__ = [
    "CommittedBlock",
    "DevNode",
    "MempoolFull",
    "NodeError",
    "NodeHalted",
    "TxAlreadyKnown",
    "block_hash",
]

log = logging.getLogger(__name__)

DEFAULT_MEMPOOL_MAX_TXS = 20_000
DEFAULT_MEMPOOL_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_BLOCK_TXS = 20_000


class NodeError(Exception):
    """The node refused a request; the message says why."""


class MempoolFull(NodeError):
    """The mempool has no room for another transaction."""


class TxAlreadyKnown(NodeError):
    """The same transaction bytes are already waiting in the mempool."""


class NodeHalted(NodeError):
    """Block production failed; the node stopped to avoid diverging from its store."""


class HeaderPreimage(Record):
    """What a block hash commits to. Fields are appended, never reordered."""

    chain_id: str
    height: int
    time_ns: int
    last_block_hash: bytes
    last_app_hash: bytes
    tx_hashes: list[bytes]


def block_hash(preimage: HeaderPreimage) -> bytes:
    return hashlib.sha256(codec.encode(preimage)).digest()


@dataclass(frozen=True)
class CommittedBlock:
    """A block that is in the store, as told to listeners."""

    block: BlockRecord
    tx_hashes: list[bytes]


BlockListener = Callable[[CommittedBlock], None]


class Mempool:
    """Checked transactions by hash, in arrival order."""

    def __init__(self, max_txs: int, max_bytes: int) -> None:
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._txs: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, hash_: bytes) -> bool:
        return hash_ in self._txs

    def check_room(self, raw: bytes) -> None:
        if len(self._txs) >= self.max_txs or self.size_bytes + len(raw) > self.max_bytes:
            raise MempoolFull(
                f"mempool is full: number of txs {len(self._txs)} (max: {self.max_txs}),"
                f" total txs bytes {self.size_bytes} (max: {self.max_bytes})"
            )

    def add(self, hash_: bytes, raw: bytes) -> None:
        self._txs[hash_] = raw
        self.size_bytes += len(raw)

    def reap(self, max_txs: int) -> list[bytes]:
        return [raw for _, raw in zip(range(max_txs), self._txs.values(), strict=False)]

    def take_all(self) -> list[tuple[bytes, bytes]]:
        items = list(self._txs.items())
        self._txs.clear()
        self.size_bytes = 0
        return items


class DevNode:
    """The embedded block producer over one store. Thread-safe."""

    def __init__(
        self,
        store: Store,
        *,
        genesis: Genesis | None = None,
        block_ms: int = 1000,
        mempool_max_txs: int = DEFAULT_MEMPOOL_MAX_TXS,
        mempool_max_bytes: int = DEFAULT_MEMPOOL_MAX_BYTES,
        max_block_txs: int = DEFAULT_MAX_BLOCK_TXS,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if block_ms <= 0 or mempool_max_txs <= 0 or max_block_txs <= 0:
            raise ValueError("block_ms, mempool_max_txs and max_block_txs must be positive")
        self.store = store
        self.block_ms = block_ms
        self.max_block_txs = max_block_txs
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[BlockListener] = []
        self._halted: BaseException | None = None
        self.mempool = Mempool(mempool_max_txs, mempool_max_bytes)
        self.machine, self.last_block = self._open(genesis)

    def _open(self, genesis: Genesis | None) -> tuple[StateMachine, BlockRecord]:
        height = self.store.latest_height()
        if height is None:
            if genesis is None:
                raise NodeError(f"the store {self.store.path} is empty and no genesis was given")
            return self._init_chain(genesis)
        machine = StateMachine(self.store.load_state())
        last = self.store.get_block(height)
        if last is None or (machine.height, machine.app_hash) != (height, last.app_hash):
            raise NodeError(
                f"the store {self.store.path} is inconsistent: state at height {machine.height},"
                f" last block {height}"
            )
        if genesis is not None and genesis.chain_id != machine.chain_id:
            raise NodeError(
                f"the store {self.store.path} holds chain {machine.chain_id!r},"
                f" the genesis is for {genesis.chain_id!r}"
            )
        return machine, last

    def _init_chain(self, genesis: Genesis) -> tuple[StateMachine, BlockRecord]:
        machine = StateMachine()
        app_hash = machine.init_chain(genesis)
        header = BlockHeader(
            chain_id=genesis.chain_id, height=0, time_ns=genesis.genesis_time_ns, hash=bytes(32)
        )
        record = BlockRecord(
            height=0,
            hash=b"",
            header=StoredHeader(header=header, last_block_hash=b"", last_app_hash=b""),
            txs=[],
            results=[],
            events=[],
            app_hash=app_hash,
            time_ns=genesis.genesis_time_ns,
        )
        self.store.commit_block(list(machine.state.committed_items()), record)
        return machine, record

    # --- what the RPC reads ----------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        return self.machine.chain_id

    @property
    def height(self) -> int:
        return self.last_block.height

    @property
    def app_hash(self) -> bytes:
        return self.last_block.app_hash

    def add_listener(self, listener: BlockListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: BlockListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def query(self, path: str, data: bytes) -> QueryResult:
        """Answer a query against the last committed block."""
        with self._lock:
            self._check_running()
            return self.machine.query(path, data)

    # --- transactions and blocks -----------------------------------------------------------

    def check_tx(self, raw: bytes) -> TxResult:
        """Check a transaction and, if it passes, queue it for the next block.

        Raises:
            TxAlreadyKnown: the same bytes are already in the mempool.
            MempoolFull: no room. NodeHalted: block production failed earlier.
        """
        with self._lock:
            return self._check_tx_locked(raw)

    def check_tx_if_idle(self, raw: bytes) -> TxResult | None:
        """check_tx if no other call holds the node (no block in the making), else None.

        Lets the RPC check on its event loop when that cannot block, and hand the check to a
        thread only while a block is being produced.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._check_tx_locked(raw)
        finally:
            self._lock.release()

    def _check_tx_locked(self, raw: bytes) -> TxResult:
        hash_ = tx_hash(raw)
        self._check_running()
        if hash_ in self.mempool:
            raise TxAlreadyKnown("tx already exists in cache")
        self.mempool.check_room(raw)
        result = self.machine.check_tx(raw)
        if result.code == 0:
            self.mempool.add(hash_, raw)
        return result

    def produce_block(self) -> CommittedBlock:
        """Execute, commit and store one block of the mempool's transactions; tell listeners.

        Raises:
            NodeHalted: this or an earlier block failed; the node does no further work.
        """
        with self._lock:
            self._check_running()
            try:
                committed = self._produce_locked()
            except BaseException as exc:
                self._halted = exc
                log.critical("block production failed; node halted", exc_info=exc)
                raise NodeHalted(f"block {self.height + 1} failed: {exc!r}") from exc
            self._notify(committed)
            return committed

    def _produce_locked(self) -> CommittedBlock:
        previous = self.last_block
        txs = self.mempool.reap(self.max_block_txs)
        hashes = [tx_hash(tx) for tx in txs]
        preimage = HeaderPreimage(
            chain_id=self.chain_id,
            height=previous.height + 1,
            time_ns=max(self._clock(), previous.time_ns + 1),
            last_block_hash=previous.hash,
            last_app_hash=previous.app_hash,
            tx_hashes=hashes,
        )
        header = BlockHeader(
            chain_id=preimage.chain_id,
            height=preimage.height,
            time_ns=preimage.time_ns,
            hash=block_hash(preimage),
        )
        outcome = self.machine.finalize_block(header, txs)
        writes = self.machine.commit()
        record = BlockRecord(
            height=header.height,
            hash=header.hash,
            header=StoredHeader(
                header=header, last_block_hash=previous.hash, last_app_hash=previous.app_hash
            ),
            txs=txs,
            results=outcome.tx_results,
            events=outcome.events,
            app_hash=outcome.app_hash,
            time_ns=header.time_ns,
        )
        self.store.commit_block(writes, record)
        self.last_block = record
        self._recheck_mempool(set(hashes))
        return CommittedBlock(block=record, tx_hashes=hashes)

    def _recheck_mempool(self, included: set[bytes]) -> None:
        """Drop the included transactions; check the rest again against the new state."""
        for hash_, raw in self.mempool.take_all():
            if hash_ in included:
                continue
            if self.machine.check_tx(raw).code == 0:
                self.mempool.add(hash_, raw)

    def _notify(self, committed: CommittedBlock) -> None:
        for listener in list(self._listeners):
            try:
                listener(committed)
            except Exception:  # a broken subscriber must not stop the chain
                log.exception("block listener %r failed", listener)

    def _check_running(self) -> None:
        if self._halted is not None:
            raise NodeHalted(f"the node halted after a failed block: {self._halted!r}")

    # --- the block loop --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Produce a block every ``block_ms`` (empty ones too) until ``stop`` is set."""
        interval_s = self.block_ms / 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + interval_s
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                pass
            if stop.is_set():
                return
            await asyncio.to_thread(self.produce_block)
            # never try to catch up on missed slots: one block per interval, from now on
            deadline = max(deadline + interval_s, loop.time())
