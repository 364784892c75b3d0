"""The holdings module on its own: a holding's service space, its tag-confirmation due index,
and the release of holdings whose confirmation never came (deoss.chain.modules.holdings)."""

from __future__ import annotations

import hashlib

from deoss.chain.modules import holdings, miners
from deoss.chain.state import State
from deoss.core.layout import SegmentPlan

from .harness import Chain, key, setup_network

FID = hashlib.sha256(b"file").hexdigest()
SIZE = 4096


def segment(index: int) -> SegmentPlan:
    hashes = [hashlib.sha256(bytes([index, i])).digest() for i in range(3)]
    return SegmentPlan(
        index=index, size=SIZE, padded_size=SIZE, hash=hashes[0], fragment_hashes=hashes
    )


def network_state() -> State:
    chain = Chain()
    setup_network(chain, miner_count=2, scheduler_count=1)
    return chain.machine.state


def service_bytes(state: State, name: str) -> int:
    miner = miners.get_miner(state, key(name).public_key)
    assert miner is not None
    return miner.service_bytes


def due_entries(state: State) -> list[bytes]:
    return [k for k, _ in state.iter_prefix(holdings.TAG_CONFIRM_DUE)]


def test_a_new_holding_grows_service_space_and_is_indexed_by_its_due_height() -> None:
    state = network_state()
    miner = key("miner0").public_key
    holdings.set_holding(state, miner, FID, segment(0), 1, SIZE, confirm_due=50)
    holding = holdings.get_holding(state, miner, FID, 0, 1)
    assert holding is not None
    assert (False, 50, segment(0).fragment_hashes[1]) == (
        holding.tags_confirmed,
        holding.confirm_due,
        holding.fragment_hash,
    )
    assert SIZE == service_bytes(state, "miner0")
    assert [holdings.confirm_due_key(50, miner, holding)] == due_entries(state)
    assert [holding] == list(holdings.holdings_of(state, miner))


def test_confirming_a_holding_removes_it_from_the_due_index() -> None:
    state = network_state()
    miner = key("miner0").public_key
    holdings.set_holding(state, miner, FID, segment(0), 0, SIZE, confirm_due=50)
    holding = holdings.get_holding(state, miner, FID, 0, 0)
    assert holding is not None
    holdings.confirm_holding(state, miner, holding)
    confirmed = holdings.get_holding(state, miner, FID, 0, 0)
    assert confirmed is not None and (True, 0) == (confirmed.tags_confirmed, confirmed.confirm_due)
    assert [] == due_entries(state)
    assert [] == holdings.take_unconfirmed_holdings_due(state, 10**6)


def test_only_holdings_due_by_the_height_are_taken_and_their_entries_removed() -> None:
    state = network_state()
    early, late = key("miner0").public_key, key("miner1").public_key
    holdings.set_holding(state, early, FID, segment(0), 0, SIZE, confirm_due=10)
    holdings.set_holding(state, late, FID, segment(0), 1, SIZE, confirm_due=20)
    assert [] == holdings.take_unconfirmed_holdings_due(state, 9)
    taken = holdings.take_unconfirmed_holdings_due(state, 15)
    assert [(early, 0)] == [(miner, h.fragment) for miner, h in taken]
    assert 1 == len(due_entries(state))
    # the holding itself stays: releasing it is restoral's work
    assert holdings.get_holding(state, early, FID, 0, 0) is not None
    assert [(late, 1)] == [
        (miner, h.fragment) for miner, h in holdings.take_unconfirmed_holdings_due(state, 20)
    ]
    assert [] == due_entries(state)


def test_dropping_a_holding_twice_shrinks_service_space_once() -> None:
    state = network_state()
    miner = key("miner0").public_key
    holdings.set_holding(state, miner, FID, segment(0), 0, SIZE, confirm_due=10)
    holdings.set_holding(state, miner, FID, segment(1), 0, SIZE)
    holdings.drop_holding(state, miner, FID, 0, 0, SIZE)
    holdings.drop_holding(state, miner, FID, 0, 0, SIZE)
    assert SIZE == service_bytes(state, "miner0")
    assert holdings.get_holding(state, miner, FID, 0, 0) is None
    assert [] == due_entries(state)
