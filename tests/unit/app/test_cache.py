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
