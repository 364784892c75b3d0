"""services/common/cache.py: entries expire on the given clock; the map stays bounded."""

from __future__ import annotations

from deoss.services.common.cache import TtlCache


def test_entries_expire_after_their_ttl() -> None:
    now = [100.0]
    cache: TtlCache[str, int] = TtlCache(clock=lambda: now[0])
    cache.put("a", 1, ttl_s=5.0)
    assert 1 == cache.get("a")
    now[0] = 105.0
    assert 1 == cache.get("a")  # still valid at exactly its expiry
    now[0] = 105.1
    assert cache.get("a") is None
    assert cache.get("never") is None


def test_a_full_cache_starts_over_rather_than_growing() -> None:
    cache: TtlCache[int, int] = TtlCache(clock=lambda: 0.0, max_entries=3)
    for key in range(3):
        cache.put(key, key, ttl_s=60.0)
    cache.put(3, 3, ttl_s=60.0)
    assert [None, None, None, 3] == [cache.get(k) for k in range(4)]
