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
        await client.aclose()
    assert replies == [[b"1", None]] * 40


async def test_concurrent_commands_share_round_trips_and_keep_their_own_replies(service_urls) -> None:
    client = redis_conn.connect(service_urls[1])
    round_trips: list[int] = []

    class CountingClient:
        """The client as the Pipeliner sees it; every pipeline it sends is one round trip."""

        def pipeline(self, **options):
            pipe = client.pipeline(**options)
            real_execute = pipe.execute

            async def execute(**kwargs):
                round_trips.append(len(pipe.command_stack))
                return await real_execute(**kwargs)

            pipe.execute = execute
            return pipe

    pipeliner = redis_conn.Pipeliner(CountingClient())
    try:
        await client.delete("sb:test:list")
        await client.set("sb:test:text", "not a list", ex=60)
        results = await asyncio.gather(
            *(
                pipeliner.execute(("SET", f"sb:test:k{i}", i, "EX", 60), ("GET", f"sb:test:k{i}"))
                for i in range(30)
            ),
            pipeliner.execute(("LPUSH", "sb:test:text", "x")),  # wrong type
            return_exceptions=True,
        )
    finally:
        await pipeliner.aclose()
        await client.aclose()
    assert [r[1] for r in results[:30]] == [str(i).encode() for i in range(30)]
    assert "WRONGTYPE" in str(results[30])
    assert len(round_trips) < 31 and sum(round_trips) >= 31  # shared, and nothing dropped
