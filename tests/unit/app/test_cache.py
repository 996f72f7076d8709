"""The bounded cache: least recently used entries go first; entries expire."""

from __future__ import annotations

import time

from app.services.cache import BoundedCache


def test_the_least_recently_used_entry_goes_first():
    cache: BoundedCache[str, int] = BoundedCache(max_entries=3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.get("a") == 0  # a is now the most recently used
    cache.put("d", 3)
    assert len(cache) == 3
    assert cache.get("b") is None and cache.get("a") == 0 and cache.get("d") == 3


def test_entries_expire(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    cache: BoundedCache[str, str] = BoundedCache(max_entries=10, ttl_s=30)
    cache.put("k", "v")
    now[0] += 29
    assert cache.get("k") == "v"
    cache.replace("k", "w")  # keeps its expiry
    now[0] += 2
    assert cache.get("k") is None and len(cache) == 0


def test_a_weight_budget_drops_the_least_recently_used_and_keeps_the_newest():
    cache: BoundedCache[str, str] = BoundedCache(max_entries=100, max_weight=10)
    cache.put("a", "A", weight=4)
    cache.put("b", "B", weight=4)
    assert cache.get("a") == "A"  # b is now the least recently used
    cache.put("c", "C", weight=4)
    assert cache.get("b") is None and cache.get("a") == "A" and cache.get("c") == "C" and cache.weight == 8
    cache.put("huge", "H", weight=50)  # heavier than the budget alone: kept while it is the newest
    assert len(cache) == 1 and cache.get("huge") == "H" and cache.weight == 50
    cache.pop("huge")
    assert cache.weight == 0
