"""DevNode: blocks on demand, the mempool's nonce sequences, restart from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from deoss.chain.errors import BadNonce, InsufficientFunds
from deoss.chain.modules.accounts import Account
from deoss.chain.query import QueryArgs
from deoss.core import codec
from deoss.node.devnode import (
    CommittedBlock,
    DevNode,
    MempoolFull,
    NodeError,
    NodeHalted,
    TxAlreadyKnown,
)
from deoss.node.store import Store, open_store, tx_hash
from tests.chain_fixtures import KEYS, RECIPIENT, make_genesis, open_node, transfer


def balance_of(node: DevNode, address: str) -> Account:
    result = node.query("/accounts/account", codec.encode(QueryArgs(address=address)))
    assert 0 == result.code, result.log
    return codec.decode(result.value, Account)


def test_first_start_commits_genesis_as_height_zero(node: DevNode) -> None:
    """init_chain runs once; its state and app hash are stored as block 0."""
    assert 0 == node.height
    assert node.machine.app_hash == node.app_hash
    stored = node.store.get_block(0)
    assert stored is not None and node.app_hash == stored.app_hash


def test_empty_blocks_chain_hashes_and_times(node: DevNode) -> None:
    """Empty blocks are produced too; each links to the previous hash and app hash."""
    first = node.produce_block().block
    second = node.produce_block().block
    assert (1, 2) == (first.height, second.height)
    assert first.hash == second.header.last_block_hash
    assert first.app_hash == second.header.last_app_hash
    assert second.time_ns > first.time_ns
    assert ([], []) == (second.txs, second.results)


def test_block_time_never_goes_backwards(tmp_path: Path) -> None:
    """A clock stuck in the past still gives strictly increasing block times."""
    node = DevNode(open_store(tmp_path / "c.sqlite"), genesis=make_genesis(), clock=lambda: 5)
    times = [node.produce_block().block.time_ns for _ in range(3)]
    assert times == sorted(set(times)) and times[0] > make_genesis().genesis_time_ns
    node.store.close()


def test_nonce_sequence_from_one_key_lands_in_order(node: DevNode) -> None:
    """Ten transactions with nonces 0..9 pass check_tx in a row and land in one block."""
    txs = [transfer(KEYS[0], nonce, amount=nonce + 1) for nonce in range(10)]
    assert [0] * 10 == [node.check_tx(tx).code for tx in txs]
    block = node.produce_block().block
    assert txs == block.txs
    assert [0] * 10 == [r.code for r in block.results]
    assert 0 == len(node.mempool)
    assert Account(balance=55, nonce=0) == balance_of(node, RECIPIENT)
    assert 10 == balance_of(node, KEYS[0].address).nonce


def test_check_tx_refuses_bad_nonce_and_keeps_it_out(node: DevNode) -> None:
    """A skipped nonce fails check_tx with BadNonce and never reaches a block."""
    result = node.check_tx(transfer(KEYS[0], 5))
    assert BadNonce.code == result.code
    assert 0 == len(node.mempool)
    assert [] == node.produce_block().block.txs


def test_same_bytes_twice_are_refused(node: DevNode) -> None:
    """The mempool holds one copy of a transaction."""
    tx = transfer(KEYS[0], 0)
    node.check_tx(tx)
    with pytest.raises(TxAlreadyKnown, match="already exists"):
        node.check_tx(tx)


def test_full_mempool_refuses_more(tmp_path: Path) -> None:
    """Past mempool_max_txs, check_tx raises MempoolFull."""
    node = open_node(tmp_path / "c.sqlite", mempool_max_txs=2)
    node.check_tx(transfer(KEYS[0], 0))
    node.check_tx(transfer(KEYS[0], 1))
    with pytest.raises(MempoolFull, match="mempool is full"):
        node.check_tx(transfer(KEYS[0], 2))
    node.store.close()


def test_block_size_limit_leaves_the_rest_for_the_next_block(tmp_path: Path) -> None:
    """With max_block_txs=3, five pending transactions take two blocks, in order."""
    node = open_node(tmp_path / "c.sqlite", max_block_txs=3)
    txs = [transfer(KEYS[0], nonce) for nonce in range(5)]
    for tx in txs:
        node.check_tx(tx)
    assert txs[:3] == node.produce_block().block.txs
    assert 2 == len(node.mempool)
    assert txs[3:] == node.produce_block().block.txs
    node.store.close()


def test_failing_tx_goes_in_the_block_with_its_code_and_recheck_drops_stale(
    tmp_path: Path,
) -> None:
    """A tx failing in finalize_block is included with its code; stale leftovers are dropped."""
    node = open_node(tmp_path / "c.sqlite", max_block_txs=2)
    replay = transfer(KEYS[1], 7)  # wrong nonce, slipped past check_tx
    node.mempool.add(tx_hash(replay), replay)
    node.check_tx(transfer(KEYS[0], 0))
    stale = transfer(KEYS[2], 3)
    node.mempool.add(tx_hash(stale), stale)
    block = node.produce_block().block
    assert [BadNonce.code, 0] == [r.code for r in block.results]
    assert 0 == len(node.mempool)  # the stale one failed its recheck
    assert 1 == node.store.find_tx(tx_hash(replay))[0]  # type: ignore[index]


def test_restart_continues_at_the_same_height_and_app_hash(tmp_path: Path) -> None:
    """Reopening the store gives the same height, app hash and state; blocks continue."""
    path = tmp_path / "c.sqlite"
    node = open_node(path)
    node.check_tx(transfer(KEYS[0], 0, amount=7))
    node.produce_block()
    last = node.produce_block().block
    node.store.close()
    again = DevNode(open_store(path))
    assert (last.height, last.app_hash) == (again.height, again.app_hash)
    assert 7 == balance_of(again, RECIPIENT).balance
    assert 0 == again.check_tx(transfer(KEYS[0], 1)).code
    following = again.produce_block().block
    assert (last.height + 1, last.hash) == (following.height, following.header.last_block_hash)
    again.store.close()


def test_store_of_another_chain_or_without_genesis_is_refused(tmp_path: Path) -> None:
    """An empty store needs a genesis; a store of another chain id is refused."""
    with pytest.raises(NodeError, match="empty"):
        DevNode(open_store(tmp_path / "empty.sqlite"))
    open_node(tmp_path / "c.sqlite").store.close()
    with pytest.raises(NodeError, match="holds chain 'test-chain'"):
        DevNode(open_store(tmp_path / "c.sqlite"), genesis=make_genesis(chain_id="other"))


def test_listeners_hear_blocks_only_once_stored(node: DevNode) -> None:
    """A listener runs after the store commit; a failing listener does not stop the chain."""
    heard: list[tuple[int, int | None]] = []

    def listener(committed: CommittedBlock) -> None:
        heard.append((committed.block.height, node.store.latest_height()))

    def broken(committed: CommittedBlock) -> None:
        raise RuntimeError("subscriber bug")

    node.add_listener(broken)
    node.add_listener(listener)
    node.produce_block()
    node.remove_listener(listener)
    node.produce_block()
    assert [(1, 1)] == heard
    assert 2 == node.height


def test_store_failure_halts_the_node_and_disk_keeps_the_old_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the block cannot be stored the node halts; a restart resumes from the disk."""
    path = tmp_path / "c.sqlite"
    node = open_node(path)
    before = node.produce_block().block
    node.check_tx(transfer(KEYS[0], 0))

    def full_disk(self: Store, writes: object, block: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(Store, "commit_block", full_disk)
    with pytest.raises(NodeHalted, match="no space left"):
        node.produce_block()
    with pytest.raises(NodeHalted):
        node.check_tx(transfer(KEYS[1], 0))
    monkeypatch.undo()
    node.store.close()
    again = DevNode(open_store(path))
    assert (before.height, before.app_hash) == (again.height, again.app_hash)
    again.store.close()


def test_run_produces_blocks_every_interval(tmp_path: Path) -> None:
    """The block loop makes (empty) blocks every block_ms until stopped."""
    node = open_node(tmp_path / "c.sqlite", block_ms=20)

    async def run_for(seconds: float) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task

    asyncio.run(run_for(0.25))
    assert 4 <= node.height <= 14
    node.store.close()


def test_refused_check_leaves_no_trace(node: DevNode) -> None:
    """A tx refused at check does not spend its nonce: the next tx may reuse it."""
    too_much = transfer(KEYS[0], 0, amount=10**18)
    assert InsufficientFunds.code == node.check_tx(too_much).code
    assert 0 == node.check_tx(transfer(KEYS[0], 0)).code
    assert 0 == node.check_tx(transfer(KEYS[0], 1)).code
    assert [0, 0] == [r.code for r in node.produce_block().block.results]


def test_check_tx_if_idle_steps_aside_while_the_node_is_busy(node: DevNode) -> None:
    """check_tx_if_idle checks when the node is free and returns None while it is held."""
    with node._lock:  # as during block production
        assert None is node.check_tx_if_idle(transfer(KEYS[0], 0))
    assert 0 == len(node.mempool)
    result = node.check_tx_if_idle(transfer(KEYS[0], 0))
    assert result is not None and 0 == result.code
    assert 1 == len(node.mempool)
