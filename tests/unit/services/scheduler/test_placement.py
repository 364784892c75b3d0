"""Placement alone: distinct miners, capacity (with what the deal already planned), exclusion,
determinism, and a clear error when there are not enough miners."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deoss.chain.genesis import ChainParams
from deoss.chain.modules.miners import Miner, MinerEntry, MinerState
from deoss.core.keys import KeyPair
from deoss.services.scheduler.placement import (
    Candidate,
    NotEnoughMiners,
    accepting_candidates,
    choose_miners,
    rank_miners,
)

PARAMS = ChainParams()
GiB = 1024**3
KEYS = [KeyPair.from_seed(hashlib.sha256(b"p%d" % i).digest()) for i in range(40)]


def candidate(i: int, idle_bytes: int = GiB) -> Candidate:
    return Candidate(KEYS[i].public_key, KEYS[i].address, f"http://m{i}", idle_bytes)


def entry(i: int, **changes: object) -> MinerEntry:
    fields: dict[str, object] = {
        "endpoint": f"http://m{i}/",
        "stake": PARAMS.stake_per_tib,
        "capacity_bytes": GiB,
        **changes,
    }
    return MinerEntry(address=KEYS[i].address, miner=Miner(**fields))  # type: ignore[arg-type]


def test_chooses_distinct_miners_and_keeps_the_rest_as_spares() -> None:
    pool = [candidate(i) for i in range(20)]
    chosen, spares = choose_miners(pool, deal_id=7, segment=0, count=12, fragment_size=1024)
    keys = [c.public_key for c in chosen + spares]
    assert (12, 8, 20) == (len(chosen), len(spares), len(set(keys)))


def test_the_order_is_deterministic_and_depends_on_deal_and_segment() -> None:
    pool = [candidate(i) for i in range(20)]
    ranked = rank_miners(pool, deal_id=7, segment=0, fragment_size=1)
    assert ranked == rank_miners(list(reversed(pool)), deal_id=7, segment=0, fragment_size=1)
    assert ranked != rank_miners(pool, deal_id=7, segment=1, fragment_size=1)
    assert ranked != rank_miners(pool, deal_id=8, segment=0, fragment_size=1)


def test_miners_without_room_are_skipped_counting_what_the_deal_planned() -> None:
    pool = [candidate(0, idle_bytes=999), candidate(1, idle_bytes=1000), candidate(2)]
    ranked = rank_miners(pool, deal_id=1, segment=0, fragment_size=1000)
    assert {KEYS[1].public_key, KEYS[2].public_key} == {c.public_key for c in ranked}
    reserved = {KEYS[1].public_key: 1}
    ranked = rank_miners(pool, deal_id=1, segment=0, fragment_size=1000, reserved=reserved)
    assert [KEYS[2].public_key] == [c.public_key for c in ranked]


def test_excluded_miners_are_never_chosen() -> None:
    pool = [candidate(i) for i in range(14)]
    failed = {KEYS[3].public_key, KEYS[5].public_key}
    chosen, spares = choose_miners(
        pool, deal_id=2, segment=0, count=12, fragment_size=1, exclude=failed
    )
    assert not failed & {c.public_key for c in chosen + spares}
    assert ([], 12) == (spares, len(chosen))


def test_not_enough_miners_is_a_clear_error() -> None:
    pool = [candidate(i) for i in range(12)] + [candidate(12, idle_bytes=10)]
    with pytest.raises(NotEnoughMiners, match=r"11 accepting miners have 100 idle bytes.*1 failed"):
        choose_miners(
            pool,
            deal_id=3,
            segment=4,
            count=12,
            fragment_size=100,
            exclude={KEYS[0].public_key},
        )


def test_only_active_miners_with_enough_stake_are_candidates() -> None:
    entries = [
        entry(0),
        entry(1, state=MinerState.FAULTY),
        entry(2, state=MinerState.EXITING),
        entry(3, stake=PARAMS.stake_per_tib - 1),
        entry(4, service_bytes=GiB - 10),
    ]
    candidates = accepting_candidates(entries, PARAMS)
    assert sorted([KEYS[0].address, KEYS[4].address]) == [c.address for c in candidates]
    assert {GiB, 10} == {c.idle_bytes for c in candidates}
    assert all(not c.endpoint.endswith("/") for c in candidates)


@given(
    idle=st.lists(st.integers(0, 5000), min_size=0, max_size=30),
    count=st.integers(1, 16),
    size=st.integers(1, 2000),
    excluded=st.sets(st.integers(0, 29), max_size=5),
    deal_id=st.integers(0, 2**40),
)
def test_any_choice_is_distinct_has_room_and_avoids_exclusions(
    idle: list[int], count: int, size: int, excluded: set[int], deal_id: int
) -> None:
    pool = [candidate(i, v) for i, v in enumerate(idle)]
    exclude = {KEYS[i].public_key for i in excluded}
    usable = [c for c in pool if c.idle_bytes >= size and c.public_key not in exclude]
    try:
        chosen, spares = choose_miners(
            pool, deal_id=deal_id, segment=0, count=count, fragment_size=size, exclude=exclude
        )
    except NotEnoughMiners:
        assert len(usable) < count
        return
    assert count == len({c.public_key for c in chosen})
    assert len(usable) == len(chosen) + len(spares)
    assert all(c.idle_bytes >= size and c.public_key not in exclude for c in chosen + spares)
