"""The chain node's SQLite store: the committed key-value state, the blocks and the tx index.

Tables::

    kv(key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID     the machine's committed state
    blocks(height INTEGER PRIMARY KEY, hash, header, txs, results, events, app_hash, time_ns)
    txs(hash BLOB PRIMARY KEY, height INTEGER, idx INTEGER)  where each transaction landed

Invariants:

* ``commit_block`` writes a block's state writes, its ``blocks`` row and its ``txs`` rows in
  ONE SQLite transaction (WAL, ``synchronous=FULL``): after a crash at any point, kill -9
  included, the database holds either the previous block or the new one, never part of one.
* Row 0 of ``blocks`` records the genesis commit (no transactions, the genesis app hash and
  time); rows 1.. are real blocks. The kv table always matches the state after the highest row.
* Blobs are canonical records of ``deoss.core.codec`` (never pickle), so a stored block reads
  back as exactly the values that were committed.

The store is shared between the block producer and the RPC readers: writes go through one
connection, reads through another (WAL lets them proceed side by side), each behind a lock.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deoss.chain.state import State
from deoss.chain.types import BlockHeader, Event, TxResult
from deoss.core import codec
from deoss.core.codec import Record
from deoss.core.errors import DataPathError

__all__ = ["BlockRecord", "Store", "StoreError", "StoredHeader", "open_store", "tx_hash"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    header BLOB NOT NULL,
    txs BLOB NOT NULL,
    results BLOB NOT NULL,
    events BLOB NOT NULL,
    app_hash BLOB NOT NULL,
    time_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS txs (
    hash BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL
);
"""

_BLOCK_COLUMNS = "height, hash, header, txs, results, events, app_hash, time_ns"


class StoreError(Exception):
    """The database cannot be opened or holds data this node cannot read."""


class StoredHeader(Record):
    """A block header as stored: what the machine saw plus the links to the previous block."""

    header: BlockHeader
    last_block_hash: bytes  # b"" for block 1
    last_app_hash: bytes  # the state this block was executed on


@dataclass(frozen=True)
class BlockRecord:
    """One committed block with its results (height 0: the genesis commit)."""

    height: int
    hash: bytes
    header: StoredHeader
    txs: list[bytes]
    results: list[TxResult]
    events: list[Event]
    app_hash: bytes
    time_ns: int


def open_store(path: Path | str) -> Store:
    """Open (creating if needed) the store at ``path``.

    Raises:
        StoreError: the file cannot be opened or is not a store of this format.
    """
    return Store(Path(path))


class Store:
    """SQLite persistence for one chain node. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = _connect(path)
            self._writer.executescript(SCHEMA)
            self._reader = _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open chain store {path}: {exc}") from exc
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._reader.close()
            self._writer.close()

    # --- writing ---------------------------------------------------------------------------

    def commit_block(
        self, writes: Iterable[tuple[bytes, bytes | None]], block: BlockRecord
    ) -> None:
        """Persist a block's state writes (value None = delete), its row and its tx index.

        All or nothing: on any error the transaction is rolled back and the error re-raised.
        """
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                self._write_kv(db, writes)
                db.execute(
                    f"INSERT INTO blocks ({_BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    _block_row(block),
                )
                self._index_txs(db, block)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @staticmethod
    def _write_kv(db: sqlite3.Connection, writes: Iterable[tuple[bytes, bytes | None]]) -> None:
        puts: list[tuple[bytes, bytes]] = []
        deletes: list[tuple[bytes]] = []
        for key, value in writes:
            if value is None:
                deletes.append((key,))
            else:
                puts.append((key, value))
        db.executemany("DELETE FROM kv WHERE key = ?", deletes)
        db.executemany(
            "INSERT INTO kv (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            puts,
        )

    @staticmethod
    def _index_txs(db: sqlite3.Connection, block: BlockRecord) -> None:
        # The same bytes can only land twice if the second copy failed (its nonce is spent);
        # the index keeps the first inclusion, the one that counted.
        db.executemany(
            "INSERT OR IGNORE INTO txs (hash, height, idx) VALUES (?, ?, ?)",
            [(tx_hash(tx), block.height, idx) for idx, tx in enumerate(block.txs)],
        )

    # --- reading ---------------------------------------------------------------------------

    def load_state(self) -> State:
        """The committed state: every kv row."""
        with self._read_lock:
            rows = self._reader.execute("SELECT key, value FROM kv").fetchall()
        return State({bytes(key): bytes(value) for key, value in rows})

    def latest_height(self) -> int | None:
        """Height of the last committed block (0 = genesis only); None for an empty store."""
        with self._read_lock:
            (height,) = self._reader.execute("SELECT MAX(height) FROM blocks").fetchone()
        return None if height is None else int(height)

    def get_block(self, height: int) -> BlockRecord | None:
        with self._read_lock:
            row = self._reader.execute(
                f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE height = ?", (height,)
            ).fetchone()
        return None if row is None else _decode_block_row(row)

    def find_tx(self, hash_: bytes) -> tuple[int, int] | None:
        """(height, index) of the transaction with this SHA-256, if it is in a block."""
        with self._read_lock:
            row = self._reader.execute(
                "SELECT height, idx FROM txs WHERE hash = ?", (hash_,)
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))


def tx_hash(tx: bytes) -> bytes:
    """SHA-256 of a transaction's bytes: its id in the index and on the RPC."""
    return hashlib.sha256(tx).digest()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=10000")
    return db


def _block_row(block: BlockRecord) -> tuple[object, ...]:
    return (
        block.height,
        block.hash,
        codec.encode(block.header),
        codec.encode(block.txs),
        codec.encode(block.results),
        codec.encode(block.events),
        block.app_hash,
        block.time_ns,
    )


def _decode_block_row(row: tuple[Any, ...]) -> BlockRecord:
    height, hash_, header, txs, results, events, app_hash, time_ns = row
    try:
        return BlockRecord(
            height=int(height),
            hash=bytes(hash_),
            header=codec.decode(header, StoredHeader),
            txs=codec.decode(txs, list[bytes]),
            results=codec.decode(results, list[TxResult]),
            events=codec.decode(events, list[Event]),
            app_hash=bytes(app_hash),
            time_ns=int(time_ns),
        )
    except DataPathError as exc:  # a corrupt row is an operator problem, not a crash
        raise StoreError(f"block {height} in the store cannot be decoded: {exc}") from exc
