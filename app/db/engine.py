"""Database lifecycle: pick the URL, run migrations, open and close the connection pool."""

from __future__ import annotations

import contextlib
import io
import logging
import os

import asyncpg

log = logging.getLogger(__name__)


def engine():
    """Piccolo's engine (created on first use from DATABASE_URL)."""
    from app.db.piccolo_conf import DB

    return DB


_MIGRATION_LOCK = 0x5B_0001  # pg_advisory_lock key: web and workers may start together


async def migrate() -> None:
    """Apply every Piccolo migration not yet applied (idempotent, safe on each start)."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    lock = await asyncpg.connect(dsn=os.environ["DATABASE_URL"])
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        # Piccolo prints progress to stdout; keep the service's stdout for structured logs.
        with contextlib.redirect_stdout(io.StringIO()) as out:
            result = await run_forwards(app_name="switchboard")
    finally:
        await lock.close()
    if not result.success:
        raise RuntimeError(f"database migration failed: {result.message}\n{out.getvalue()}")
    log.info("database migrated")


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool release hook: Switchboard sets no session state (no LISTEN, SET or held advisory
    locks on pooled connections), so asyncpg's default reset would be one wasted round trip
    per checkout."""


async def open_pool(*, max_size: int) -> None:
    await engine().start_connection_pool(min_size=1, max_size=max_size, reset=_keep_session)


async def close_pool() -> None:
    await engine().close_connection_pool()


def pool() -> asyncpg.Pool:
    """The asyncpg pool behind Piccolo, for the few hot paths written as one SQL statement."""
    db = engine()
    if db.pool is None:
        raise RuntimeError("the database pool is not open: call open_pool() at start-up")
    return db.pool
