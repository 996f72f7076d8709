"""GET /health: database, Redis and queue, each "ok" or what is wrong; 503 when one is down."""

from __future__ import annotations

import asyncio

from litestar import Response, get
from litestar.datastructures import State


async def _check(coro) -> str:
    try:
        await asyncio.wait_for(coro, timeout=2.0)
    except Exception as exc:  # health reports failures instead of raising them
        return f"error: {exc!r}"[:300]
    return "ok"


@get("/health", tags=["health"])
async def health(state: State) -> Response:
    svc = state.services
    checks = {
        "database": await _check(svc.db.fetchval("SELECT 1")),
        "redis": await _check(svc.redis.ping()),
        "queue": await _check(svc.queue.count("queued")),
    }
    status = 200 if all(v == "ok" for v in checks.values()) else 503
    return Response(content=checks, status_code=status)
