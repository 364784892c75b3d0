"""Per-block hooks read only what is due: an empty block walks a deadline index up to its first
entry in the future, not every lease, deal, tagging or restoral deadline ever set (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deoss.chain.modules import deals, files, restoral, space

from .harness import Chain

FAR = (10**9).to_bytes(8, "big")
FUTURE_ENTRIES = 5_000

DEADLINE_INDEXES = {
    "space lease expiry": space.EXPIRY,
    "deal deadline": deals.DEADLINE,
    "tagging deadline": files.TAG_DEADLINE,
    "restoral claim deadline": restoral.DEADLINE,
}


@pytest.mark.parametrize("prefix", DEADLINE_INDEXES.values(), ids=DEADLINE_INDEXES.keys())
def test_an_empty_block_does_not_walk_deadlines_that_are_not_due(prefix: bytes) -> None:
    chain = Chain()
    committed = chain.machine.state._committed
    committed.update({prefix + FAR + i.to_bytes(32, "big"): b"" for i in range(FUTURE_ENTRIES)})
    walked = 0
    plain_irange = committed.irange  # SortedDict binds irange on the instance

    def counting_irange(*args: object, **kwargs: object) -> Iterator[bytes]:
        nonlocal walked
        for key in plain_irange(*args, **kwargs):
            if key.startswith(prefix):
                walked += 1
            yield key

    committed.irange = counting_irange
    chain.advance(3)
    # each block reads the first (future) entry and stops; the old code walked all 5,000
    assert walked <= 3
    assert sum(1 for k in committed if k.startswith(prefix)) == FUTURE_ENTRIES
