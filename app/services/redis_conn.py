"""The process's Redis client (redis-py asyncio), opened at start-up and closed at exit."""

from __future__ import annotations

import redis.asyncio as aioredis

_client: aioredis.Redis | None = None


def connect(url: str, *, max_connections: int = 200, wait_s: float = 30.0) -> aioredis.Redis:
    """A client whose commands wait up to `wait_s` for a free connection when all are busy.

    redis-py's default pool raises "Too many connections" instead, which under a burst
    failed turns that only needed to wait a moment.
    """
    global _client
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=wait_s,
                                                    health_check_interval=30)
    _client = aioredis.Redis.from_pool(pool)
    return _client


def client() -> aioredis.Redis:
    if _client is None:
        raise RuntimeError("Redis is not connected: call redis_conn.connect() at start-up")
    return _client


async def close() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
