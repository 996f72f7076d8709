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
    Entries of very different sizes (trained models) can also be bounded by their summed `weight`
    (`max_weight`); the newest entry is kept even when it alone weighs more.
    """

    __slots__ = ("_entries", "max_entries", "max_weight", "ttl_s", "weight")

    def __init__(
        self, *, max_entries: int, ttl_s: float | None = None, max_weight: float | None = None
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.max_weight = max_weight
        self.weight = 0.0
        """The summed weight of the entries (each entry weighs 1 unless `put` says otherwise)."""
        self._entries: OrderedDict[K, tuple[float, V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, value, _ = found
        if expires_at < time.monotonic():
            self.pop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, *, weight: float = 1.0) -> None:
        expires_at = time.monotonic() + self.ttl_s if self.ttl_s is not None else float("inf")
        self.pop(key)
        self._entries[key] = (expires_at, value, weight)
        self.weight += weight
        while len(self._entries) > self.max_entries or (
            self.max_weight is not None and self.weight > self.max_weight and len(self._entries) > 1
        ):
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self.weight -= dropped

    def replace(self, key: K, value: V) -> None:
        """Change a cached value, keeping its expiry and weight (nothing happens when the key is not cached)."""
        found = self._entries.get(key)
        if found is not None:
            self._entries[key] = (found[0], value, found[2])

    def pop(self, key: K) -> V | None:
        found = self._entries.pop(key, None)
        if found is None:
            return None
        self.weight -= found[2]
        return found[1]

    def values(self) -> list[V]:
        return [value for _, value, _ in self._entries.values()]

    def clear(self) -> None:
        self._entries.clear()
        self.weight = 0.0
