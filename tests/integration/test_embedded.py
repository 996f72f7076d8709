"""Embedded services: what `switchboard run` and the suite start when no PostgreSQL or Redis answers."""

from __future__ import annotations

import asyncpg
import pytest
import redis

from app.services import embedded

pytestmark = pytest.mark.slow


async def test_embedded_postgres_and_redis_start_answer_and_stop(tmp_path) -> None:
    pg_url, stop_pg = embedded._start_postgres(tmp_path)
    try:
        await embedded.ensure_database(embedded.with_database(pg_url, "switchboard"))
        conn = await asyncpg.connect(dsn=embedded.with_database(pg_url, "switchboard"))
        assert await conn.fetchval("SELECT 41 + 1") == 42
        await conn.close()
    finally:
        stop_pg()
    port = int(pg_url.rsplit(":", 1)[1].split("/")[0])
    assert not embedded.port_answers("127.0.0.1", port)

    redis_url, stop_redis = embedded._start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(redis_url)
        assert client.ping() and client.set("k", "v") and client.get("k") == b"v"
        client.close()
    finally:
        stop_redis()
    assert not embedded.port_answers("127.0.0.1", int(redis_url.rsplit(":", 1)[1].split("/")[0]))


def test_configured_urls_win_and_nothing_is_started(tmp_path) -> None:
    services = embedded.resolve_services(
        data_dir=str(tmp_path), database_url="postgresql://db.example/x", redis_url="redis://cache.example/0"
    )
    assert (
        services.database_url == "postgresql://db.example/x"
        and services.redis_url == "redis://cache.example/0"
    )
    assert services.started == []
