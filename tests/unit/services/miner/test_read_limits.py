"""Per-reader read budgets at the miner: token buckets of requests and bytes per second."""

from __future__ import annotations

import pytest

from deoss.services.common.errors import TooManyRequests
from deoss.services.miner.read_limits import ReadBudget, ReadLimiter

MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, max_readers: int = 16) -> ReadLimiter:
    return ReadLimiter(
        ReadBudget(requests_per_s=2, bytes_per_s=4 * MiB),
        ReadBudget(requests_per_s=20, bytes_per_s=64 * MiB),
        clock=clock,
        max_readers=max_readers,
    )


def test_bytes_past_the_budget_are_429_with_retry_after_and_recover() -> None:
    clock = Clock()
    limits = limiter(clock)
    limits.charge(b"gw", "download", nbytes=8 * MiB)  # the 2 s burst
    with pytest.raises(TooManyRequests) as refused:
        limits.charge(b"gw", "download", nbytes=2 * MiB)
    assert 1 == refused.value.retry_after_s  # 2 MiB at 4 MiB/s: half a second, rounded up
    assert "budget" in str(refused.value)
    clock.now += 0.5
    limits.charge(b"gw", "download", nbytes=2 * MiB)  # recovered


def test_requests_past_the_budget_are_refused_and_a_refusal_costs_nothing() -> None:
    clock = Clock()
    limits = limiter(clock)
    for _ in range(4):  # 2 per second, 2 s burst
        limits.charge(b"owner", "download", requests=1)
    for _ in range(3):
        with pytest.raises(TooManyRequests):
            limits.charge(b"owner", "download", requests=1)
    clock.now += 0.5  # one request's worth: the refusals took nothing
    limits.charge(b"owner", "download", requests=1)


def test_readers_and_bulk_reasons_have_their_own_buckets() -> None:
    clock = Clock()
    limits = limiter(clock)
    limits.charge(b"gw", "download", nbytes=8 * MiB)
    limits.charge(b"other", "download", nbytes=8 * MiB)  # another reader: its own bucket
    limits.charge(b"gw", "restoral", nbytes=100 * MiB)  # the bulk budget: 128 MiB burst
    with pytest.raises(TooManyRequests):
        limits.charge(b"gw", "tagging", nbytes=100 * MiB)


def test_a_read_larger_than_the_bucket_passes_when_full_and_leaves_a_debt() -> None:
    clock = Clock()
    limits = limiter(clock)
    limits.charge(b"gw", "download", nbytes=12 * MiB)  # more than the 8 MiB bucket
    with pytest.raises(TooManyRequests) as refused:
        limits.charge(b"gw", "download", nbytes=1)
    assert 2 == refused.value.retry_after_s  # 4 MiB of debt and 1 byte at 4 MiB/s
    clock.now += 3  # 12 MiB back at 4 MiB/s: the bucket is full again
    limits.charge(b"gw", "download", nbytes=8 * MiB)


def test_memory_is_bounded_to_the_most_recent_readers() -> None:
    clock = Clock()
    limits = limiter(clock, max_readers=3)
    for reader in range(10):
        limits.charge(reader.to_bytes(2, "big"), "download", requests=1)
    assert 3 == len(limits)
