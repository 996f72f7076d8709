"""The process's Redis client under a burst wider than its connection pool."""

from __future__ import annotations

import asyncio

from app.services import redis_conn


async def test_a_burst_beyond_the_pool_waits_for_connections_instead_of_failing(service_urls) -> None:
    client = redis_conn.connect(service_urls[1], max_connections=2, wait_s=10)
    try:
        await client.set("sb:test:burst", "1", ex=60)
        replies = await asyncio.gather(*(client.mget("sb:test:burst", "sb:test:absent") for _ in range(40)))
    finally:
        await redis_conn.close()
    assert replies == [[b"1", None]] * 40
