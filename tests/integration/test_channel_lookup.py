"""The channel of a webhook or a turn, read once when many callers miss the cache together."""

from __future__ import annotations

import asyncio

from tests.support.stack import Stack, Tenant


async def test_callers_that_miss_the_cache_together_wait_for_one_read(stack: Stack, tenant: Tenant) -> None:
    """The turns of a flush job (or a burst of webhooks) all miss at start and when the entry expires."""
    from app.services.channels import store as channel_store

    channel = await tenant.generic_channel()
    channel_store._cache.pop(channel["id"])  # as after the entry's expiry
    records = await asyncio.gather(*(channel_store.lookup(channel["id"]) for _ in range(20)))
    assert records[0] is not None and records[0].id == channel["id"]
    assert all(record is records[0] for record in records), "callers read the channel each on their own"
    assert await channel_store.lookup(channel["id"]) is records[0]  # and it is cached
    assert not channel_store._loading  # nothing left in flight
