"""State.iter_prefix: lazy, and equal to a plain dict's view under pending writes and savepoints."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from deoss.chain.state import State

KEYS = st.sampled_from(
    [bytes([a]) + bytes([b]) for a in (0, 1, 2, 255) for b in (0, 1, 255)] + [b"\x01", b"\xff"]
)
PREFIXES = st.sampled_from([b"", b"\x00", b"\x01", b"\xff", b"\x01\x01", b"\x02"])
OPS = st.lists(
    st.tuples(st.sampled_from(["put", "delete", "commit", "fail"]), KEYS, st.binary(max_size=2)),
    max_size=30,
)


class _Refused(Exception):
    pass


def _expected(model: dict[bytes, bytes], prefix: bytes) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in model.items() if k.startswith(prefix))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, st.binary(max_size=2)), OPS, PREFIXES)
def test_iter_prefix_matches_a_dict(
    initial: dict[bytes, bytes], ops: list[tuple[str, bytes, bytes]], prefix: bytes
) -> None:
    state = State(initial)
    model = dict(initial)
    for op, key, value in ops:
        if op == "put":
            state.put(key, value)
            model[key] = value
        elif op == "delete":
            state.delete(key)
            model.pop(key, None)
        elif op == "commit":
            state.commit_pending()
        else:  # writes inside a refused savepoint leave no trace
            try:
                with state.savepoint():
                    state.put(key, value)
                    state.delete(key + b"\x00")
                    raise _Refused
            except _Refused:
                pass
        assert list(state.iter_prefix(prefix)) == _expected(model, prefix)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(KEYS, st.binary(max_size=2)), OPS)
def test_deleting_while_iterating_sees_the_keys_present_at_the_start(
    initial: dict[bytes, bytes], ops: list[tuple[str, bytes, bytes]]
) -> None:
    state = State(initial)
    for op, key, value in ops:
        if op == "put":
            state.put(key, value)
        elif op == "delete":
            state.delete(key)
    before = list(state.iter_prefix(b""))
    seen = []
    for key, value in state.iter_prefix(b""):
        seen.append((key, value))
        state.delete(key)  # what the deadline hooks do
        state.put(key + b"\x07", b"new")  # added mid-iteration: not visited
    assert seen == before


def test_stopping_early_walks_only_the_start_of_a_large_prefix() -> None:
    state = State({b"due/" + i.to_bytes(8, "big"): b"" for i in range(10_000)})
    state.put(b"due/" + (1).to_bytes(8, "big") + b"x", b"")
    walked = 0
    plain_irange = state._committed.irange  # SortedDict binds irange on the instance

    def counting_irange(*args: object, **kwargs: object) -> Iterator[bytes]:
        nonlocal walked
        for key in plain_irange(*args, **kwargs):
            walked += 1
            yield key

    state._committed.irange = counting_irange
    it = state.iter_prefix(b"due/")
    first = [next(it)[0] for _ in range(3)]
    assert first == [
        b"due/" + (0).to_bytes(8, "big"),
        b"due/" + (1).to_bytes(8, "big"),
        b"due/" + (1).to_bytes(8, "big") + b"x",
    ]
    assert walked <= 3  # the old code walked all 10,000 before the first
