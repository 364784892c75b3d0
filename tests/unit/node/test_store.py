"""The SQLite store: a block's writes, row and tx index land together or not at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deoss.chain.types import BlockHeader, Event, TxResult
from deoss.node.store import BlockRecord, Store, StoredHeader, StoreError, open_store, tx_hash


def make_block(height: int, txs: list[bytes] | None = None) -> BlockRecord:
    txs = txs if txs is not None else [b"tx-%d" % height]
    header = BlockHeader(
        chain_id="c", height=height, time_ns=height, hash=tx_hash(b"block %d" % height)
    )
    return BlockRecord(
        height=height,
        hash=header.hash,
        header=StoredHeader(header=header, last_block_hash=b"", last_app_hash=b"prev"),
        txs=txs,
        results=[TxResult(code=i, log=f"log {i}") for i in range(len(txs))],
        events=[Event(type="block", attributes=[("height", str(height))])],
        app_hash=b"app-%d" % height,
        time_ns=1000 + height,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "data" / "chain.sqlite")
    yield opened
    opened.close()


def test_empty_store_has_no_height_and_no_state(store: Store) -> None:
    """A fresh store is empty: no blocks, no state."""
    assert None is store.latest_height()
    assert [] == list(store.load_state().committed_items())


def test_commit_block_stores_writes_block_and_tx_index(store: Store) -> None:
    """Writes, the block row and the tx index read back exactly as committed."""
    block = make_block(1, [b"a", b"b"])
    store.commit_block([(b"k1", b"v1"), (b"k2", b"v2")], block)
    assert 1 == store.latest_height()
    assert block == store.get_block(1)
    assert (1, 1) == store.find_tx(tx_hash(b"b"))
    assert None is store.find_tx(tx_hash(b"nope"))
    assert [(b"k1", b"v1"), (b"k2", b"v2")] == list(store.load_state().committed_items())


def test_none_value_deletes_and_later_writes_overwrite(store: Store) -> None:
    """A None value deletes the key; a later value replaces the earlier one."""
    store.commit_block([(b"a", b"1"), (b"b", b"1")], make_block(1))
    store.commit_block([(b"a", None), (b"b", b"2")], make_block(2))
    assert [(b"b", b"2")] == list(store.load_state().committed_items())


def test_failure_inside_commit_leaves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after the kv writes and the block row rolls the whole block back."""
    store.commit_block([(b"a", b"1")], make_block(1))

    def broken_index(db: object, block: BlockRecord) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(Store, "_index_txs", staticmethod(broken_index))
    with pytest.raises(OSError, match="disk on fire"):
        store.commit_block([(b"a", b"2"), (b"new", b"x")], make_block(2))
    assert 1 == store.latest_height()
    assert None is store.get_block(2)
    assert [(b"a", b"1")] == list(store.load_state().committed_items())
    monkeypatch.undo()
    store.commit_block([(b"a", b"3")], make_block(2))  # the connection is usable again
    assert 2 == store.latest_height()


def test_database_error_mid_writes_rolls_back(store: Store) -> None:
    """A write that SQLite refuses (NULL key) undoes the writes before it."""
    with pytest.raises(Exception, match="NOT NULL"):
        store.commit_block([(b"a", b"1"), (None, b"x")], make_block(1))  # type: ignore[list-item]
    assert None is store.latest_height()
    assert [] == list(store.load_state().committed_items())


def test_duplicate_height_is_refused_and_rolled_back(store: Store) -> None:
    """Committing a height twice fails and keeps the first block's writes only."""
    store.commit_block([(b"a", b"1")], make_block(1))
    with pytest.raises(Exception, match="UNIQUE"):
        store.commit_block([(b"a", b"2")], make_block(1))
    assert [(b"a", b"1")] == list(store.load_state().committed_items())


def test_reopened_store_sees_committed_blocks(tmp_path: Path) -> None:
    """What one connection committed, a new one reads (the file is the truth)."""
    path = tmp_path / "chain.sqlite"
    first = open_store(path)
    first.commit_block([(b"a", b"1")], make_block(1))
    first.close()
    again = open_store(path)
    assert (1, make_block(1)) == (again.latest_height(), again.get_block(1))
    again.close()


def test_garbage_file_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not SQLite gives StoreError naming it."""
    path = tmp_path / "chain.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="chain.sqlite"):
        open_store(path)


WRITER = """
import sys
from deoss.node.store import open_store
from tests.unit.node.test_store import make_block
store = open_store(sys.argv[1])
height = (store.latest_height() or 0) + 1
print("ready", flush=True)
while True:
    writes = [(b"counter", str(height).encode())]
    writes += [(b"k%05d" % i, b"%d" % height) for i in range(200)]
    store.commit_block(writes, make_block(height, [b"%d" % height]))
    height += 1
"""


@pytest.mark.integration
def test_kill_9_during_commits_leaves_whole_blocks(tmp_path: Path) -> None:
    """kill -9 of a process committing blocks leaves the last whole block, never part of one."""
    path = tmp_path / "chain.sqlite"
    root = Path(__file__).parents[3]
    for _ in range(3):
        open_store(path).close()
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            cwd=root,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        assert child.stdout is not None
        assert b"ready\n" == child.stdout.readline()
        time.sleep(0.3)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        store = open_store(path)
        height = store.latest_height()
        assert height is not None and height > 0
        state = dict(store.load_state().committed_items())
        assert str(height).encode() == state[b"counter"]
        assert {str(height).encode()} == {state[b"k%05d" % i] for i in range(200)}
        assert store.find_tx(tx_hash(b"%d" % height)) == (height, 0)
        store.close()
