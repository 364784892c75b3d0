"""The miner lifecycle table (miners.MINER_TRANSITIONS) and the one function that applies it."""

from __future__ import annotations

import itertools

import pytest

from deoss.chain.errors import InvalidTransition
from deoss.chain.modules import miners
from deoss.chain.modules.miners import MINER_TRANSITIONS, Miner, MinerState
from deoss.chain.state import State
from tests.unit.chain.harness import key

PUBKEY = key("miner0").public_key
EDGES = [(old, new) for old, targets in MINER_TRANSITIONS.items() for new in sorted(targets)]
NOT_EDGES = [
    (old, new)
    for old, new in itertools.product(MinerState, MinerState)
    if new not in MINER_TRANSITIONS[old]
]


def stored(miner_state: MinerState) -> tuple[State, Miner]:
    state = State()
    miner = Miner(endpoint="http://m", stake=10, capacity_bytes=1, state=miner_state)
    miners.put_miner(state, PUBKEY, miner)
    state.commit_pending()
    return state, miner


def test_the_table_names_every_state_and_the_lifecycle_edges() -> None:
    assert set(MinerState) == set(MINER_TRANSITIONS)
    assert [
        (MinerState.ACTIVE, MinerState.FAULTY),
        (MinerState.ACTIVE, MinerState.EXITING),
        (MinerState.FAULTY, MinerState.ACTIVE),
        (MinerState.FAULTY, MinerState.EXITING),
        (MinerState.EXITING, MinerState.EXITED),
    ] == EDGES


@pytest.mark.parametrize(("old", "new"), EDGES)
def test_every_edge_of_the_table_is_applied_with_its_changes(
    old: MinerState, new: MinerState
) -> None:
    state, miner = stored(old)
    assert miners.may_transition(miner, new)
    updated = miners.transition(state, PUBKEY, miner, new, consecutive_faults=7)
    assert (new, 7) == (updated.state, updated.consecutive_faults)
    assert updated == miners.get_miner(state, PUBKEY)


@pytest.mark.parametrize(("old", "new"), NOT_EDGES)
def test_a_transition_not_in_the_table_is_refused_and_nothing_changes(
    old: MinerState, new: MinerState
) -> None:
    state, miner = stored(old)
    assert not miners.may_transition(miner, new)
    with pytest.raises(InvalidTransition, match=f"{old.name} -> {new.name}"):
        miners.transition(state, PUBKEY, miner, new, consecutive_faults=7)
    assert [] == state.pending_writes()
    assert miner == miners.get_miner(state, PUBKEY)


def test_a_refusal_message_replaces_the_generic_one() -> None:
    state, miner = stored(MinerState.EXITED)
    with pytest.raises(InvalidTransition, match="^an exited miner cannot exit$"):
        miners.transition(
            state, PUBKEY, miner, MinerState.EXITING, refusal="an exited miner cannot exit"
        )
