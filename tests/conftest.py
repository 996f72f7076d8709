"""Suite-wide fixtures: a private database and Redis key space, and the running service.

Unit tests of flows/ need none of this and run with only flows' own dependencies installed
(msgspec, jinja2, google-re2; .ci/run checks it): this module imports the service side (asyncpg, redis,
httpx, app/) inside the fixtures that need it, never at the top.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from tests.support.http_peer import http_peer  # noqa: F401  (a fresh peer per test, for every test module)

if TYPE_CHECKING:
    from tests.support import stack as stack_mod

_TEST_ENV = {
    "SWITCHBOARD_BUFFER_SECONDS": "0.4",
    "SWITCHBOARD_DB_POOL_SIZE": "6",  # several stacks may share one PostgreSQL (max_connections)
    "SWITCHBOARD_BUFFER_MAX_SECONDS": "1.5",
    "SWITCHBOARD_LOCK_SECONDS": "2",
    "SWITCHBOARD_RECOVERY_INTERVAL_SECONDS": "0.5",
    "SWITCHBOARD_SEND_EVIDENCE_SECONDS": "2",
    "SWITCHBOARD_SCHEDULER_POLL_SECONDS": "0.02",
    "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE": "true",
    "SWITCHBOARD_SECRET_KEY": "test-secret-key",
    "SWITCHBOARD_LOG_LEVEL": "INFO",
    "OPENAI_API_KEY": "",
}


@pytest.fixture(scope="session")
def service_urls() -> tuple[str, str]:
    from tests.support import stack as stack_mod

    database_url, redis_url = stack_mod.resolve_test_services()
    asyncio.run(stack_mod.create_database(database_url))
    # This process talks to the same database (Piccolo reads DATABASE_URL on first use).
    os.environ.update(_TEST_ENV)
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    from app.settings import get_settings

    get_settings.cache_clear()
    yield database_url, redis_url
    asyncio.run(stack_mod.drop_database(database_url))


@pytest_asyncio.fixture(scope="session")
async def graph_api() -> AsyncIterator[object]:
    """A fake WhatsApp Graph API on 127.0.0.1, shared by the suite (tests filter by phone id)."""
    from tests.support.http_peer import HttpPeer

    async with HttpPeer() as peer:
        yield peer


@pytest_asyncio.fixture(scope="session")
async def stack(service_urls: tuple[str, str], graph_api) -> AsyncIterator[stack_mod.Stack]:
    from tests.support import stack as stack_mod

    database_url, redis_url = service_urls
    redis = stack_mod.redis_client(redis_url)
    await redis.flushdb()
    await redis.set(stack_mod.OWNER_KEY, os.getpid(), ex=6 * 3600)  # keep our claim on this database
    await redis.aclose()
    running = stack_mod.Stack(
        database_url=database_url,
        redis_url=redis_url,
        env={
            **_TEST_ENV,
            "WHATSAPP_GRAPH_URL": graph_api.base_url,
            "SWITCHBOARD_SEND_RETRY_BASE_SECONDS": "0.05",
        },
    )
    await running.start()
    yield running
    running.stop()


@pytest_asyncio.fixture(scope="module")
async def empty_stack(service_urls: tuple[str, str], graph_api) -> AsyncIterator[stack_mod.Stack]:
    """Web + worker on a database of their own with no user yet (what a new install looks like)."""
    from app.services import embedded
    from tests.support import stack as stack_mod

    database_url, redis_url = service_urls
    name = f"{database_url.rsplit('/', 1)[1]}_empty_{uuid.uuid4().hex[:6]}"
    empty_db = embedded.with_database(database_url, name)
    await stack_mod.create_database(empty_db)
    redis_base = redis_url.rsplit("/", 1)[0]
    own_redis = f"{redis_base}/{stack_mod._claim_redis_db(redis_base, another=True)}"
    redis = stack_mod.redis_client(own_redis)
    await redis.flushdb()
    await redis.set(stack_mod.OWNER_KEY, os.getpid(), ex=6 * 3600)
    await redis.aclose()
    running = stack_mod.Stack(
        database_url=empty_db,
        redis_url=own_redis,
        env={**_TEST_ENV, "WHATSAPP_GRAPH_URL": graph_api.base_url},
        name=f"empty-{name.rsplit('_', 1)[1]}",
    )
    await running.start()
    yield running
    running.stop()
    redis = stack_mod.redis_client(own_redis)
    await redis.flushdb()  # gives the database back to later sessions
    await redis.aclose()
    await stack_mod.drop_database(empty_db)


@pytest_asyncio.fixture
async def tenant(stack: stack_mod.Stack) -> AsyncIterator[stack_mod.Tenant]:
    from tests.support import stack as stack_mod

    created = await stack_mod.create_tenant(stack)
    yield created
    await created.aclose()


@pytest_asyncio.fixture
async def db(service_urls: tuple[str, str]) -> AsyncIterator[object]:
    import asyncpg

    conn = await asyncpg.connect(dsn=service_urls[0])
    yield conn
    await conn.close()


@pytest_asyncio.fixture
async def redis(service_urls: tuple[str, str]) -> AsyncIterator[object]:
    from tests.support import stack as stack_mod

    client = stack_mod.redis_client(service_urls[1])
    yield client
    await client.aclose()
