"""A bounded in-process cache: least recently used entries go first, and entries expire."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `max_entries` entries, each kept at most `ttl_s` seconds (None: until evicted).

    What a process caches must not grow with what strangers send it: callers cache only what
    they found (a channel that exists, a plan that is active), and this bounds even that.
    """

    __slots__ = ("_entries", "max_entries", "ttl_s")

    def __init__(self, *, max_entries: int, ttl_s: float | None = None) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, value = found
        if expires_at < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        expires_at = time.monotonic() + self.ttl_s if self.ttl_s is not None else float("inf")
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def replace(self, key: K, value: V) -> None:
        """Change a cached value, keeping its expiry (nothing happens when the key is not cached)."""
        found = self._entries.get(key)
        if found is not None:
            self._entries[key] = (found[0], value)

    def pop(self, key: K) -> V | None:
        found = self._entries.pop(key, None)
        return None if found is None else found[1]

    def values(self) -> list[V]:
        return [value for _, value in self._entries.values()]

    def clear(self) -> None:
        self._entries.clear()
