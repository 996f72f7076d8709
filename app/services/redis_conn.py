"""The process's Redis client (redis-py asyncio), opened at start-up and closed at exit."""

from __future__ import annotations

import redis.asyncio as aioredis

_client: aioredis.Redis | None = None


def connect(url: str, *, max_connections: int = 200) -> aioredis.Redis:
    global _client
    _client = aioredis.Redis.from_url(url, max_connections=max_connections, health_check_interval=30)
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
