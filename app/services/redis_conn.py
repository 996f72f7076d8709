"""Redis connections: a client that waits for a free connection, and the Pipeliner that batches commands."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from app.services.coalesce import Coalescer


class Pipeliner:
    """Redis commands of concurrent callers go out together: one pipeline, one round trip.

    A worker's hundred concurrent turns each read their AI state and release their lock;
    sent one by one, each command pays redis-py's connection checkout and a round trip.

        control, context = await pipeliner.execute(("GET", key1), ("GET", key2))
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._batches: Coalescer[tuple[tuple, ...], list[Any]] = Coalescer(self._run, name="redis-pipeline")

    async def execute(self, *commands: tuple) -> list[Any]:
        """Each command's reply, in order; an error reply is raised (the other commands still ran)."""
        replies = await self._batches.submit(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _run(self, items: list[tuple[tuple, ...]]) -> list[list[Any]]:
        pipe = self._client.pipeline(transaction=False)
        for commands in items:
            for command in commands:
                pipe.execute_command(*command)
        replies = await pipe.execute(raise_on_error=False)
        results, start = [], 0
        for commands in items:
            results.append(replies[start : start + len(commands)])
            start += len(commands)
        return results

    async def aclose(self) -> None:
        await self._batches.aclose()


def connect(url: str, *, max_connections: int = 200, wait_s: float = 30.0) -> aioredis.Redis:
    """A client whose commands wait up to `wait_s` for a free connection when all are busy.

    redis-py's default pool raises "Too many connections" instead, which under a burst
    failed turns that only needed to wait a moment. The composition root (app.roots) makes
    one per process, with its Pipeliner.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_s, health_check_interval=30
    )
    return aioredis.Redis.from_pool(pool)
