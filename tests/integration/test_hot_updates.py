"""Rows a turn writes twice are updated in place (HOT), not copied into every index again.

A webhook execution is inserted before its call and ended after it; an inbound message is
stored, then claimed by its turn. An update of such a row is HOT (heap-only: no new entry in
any of the table's indexes, a fraction of the WAL) when no indexed column changed and the row's
page has room for the new version. These tests run the real statements of the message path
inside one transaction and read PostgreSQL's own count of the transaction's HOT updates.
"""

from __future__ import annotations

import uuid

import pytest

from app.pipeline import ledger, webhook_calls
from tests.support.stack import Stack, Tenant

pytestmark = pytest.mark.slow


async def _hot_updates(db, table: str) -> tuple[int, int]:
    """(updates, of which HOT) of `table` in the current transaction."""
    row = await db.fetchrow(
        "SELECT pg_stat_get_xact_tuples_updated($1::regclass) AS updated, "
        "pg_stat_get_xact_tuples_hot_updated($1::regclass) AS hot",
        table,
    )
    return row["updated"], row["hot"]


async def test_a_webhook_execution_ends_in_place(stack: Stack, tenant: Tenant, db) -> None:
    workspace, flow_id, execution = uuid.UUID(tenant.workspace_id), uuid.uuid4(), uuid.uuid4()
    transaction = db.transaction()
    await transaction.start()
    try:
        inserted = await db.fetch(
            webhook_calls._INSERT_EXECUTIONS,
            [execution], [workspace], [flow_id], [1], ["post"], [None], [None], ["{}"], [None],
            ["please take my order"], ["+15550000000"], [execution.hex], ['{"vars": {}}'], [None],
        )  # fmt: skip
        assert [r["id"] for r in inserted] == [execution]
        await db.execute(
            webhook_calls._LOG_AND_FINISH_MANY,
            [uuid.uuid4()], [workspace], [execution], [flow_id], ["post"], [None], ["+15550000000"],
            ["please take my order"], [None], ['{"method": "POST"}'], [200], ["{}"], ["success"], [None],
            [6.4], [0], ["completed"], [1], [False],
        )  # fmt: skip
        ended = await db.fetchval("SELECT status FROM action_executions WHERE id = $1", execution)
        updated, hot = await _hot_updates(db, "action_executions")
    finally:
        await transaction.rollback()
    assert ended == "completed"
    assert (updated, hot) == (1, 1), "the execution's end wrote a new entry in each of its indexes"


async def test_a_claimed_message_is_updated_in_place(stack: Stack, tenant: Tenant, db) -> None:
    workspace = uuid.UUID(tenant.workspace_id)
    transaction = db.transaction()
    await transaction.start()
    try:
        channel = await db.fetchval(
            "INSERT INTO channels (id, workspace, kind, name) VALUES (gen_random_uuid(), $1, 'generic', 'hot') "
            "RETURNING id",
            workspace,
        )
        contact = await db.fetchval(
            "INSERT INTO contacts (id, workspace, phone) VALUES (gen_random_uuid(), $1, '+15550001111') RETURNING id",
            workspace,
        )
        conversation = await db.fetchval(
            "INSERT INTO conversations (id, workspace, channel, contact) VALUES (gen_random_uuid(), $1, $2, $3) "
            "RETURNING id",
            workspace,
            channel,
            contact,
        )
        await db.execute(
            "INSERT INTO messages (id, workspace, conversation, channel, direction, seq, provider_message_id, type, "
            "text) VALUES (gen_random_uuid(), $1, $2, $3, 'in', 1, 'hot.1', 'text', 'please take my order')",
            workspace,
            conversation,
            channel,
        )
        rows = await db.fetch(ledger._START_MANY, [conversation], [uuid.uuid4()], ["job"])
        updated, hot = await _hot_updates(db, "messages")
    finally:
        await transaction.rollback()
    assert rows and rows[0]["epoch"] is not None, "nothing was claimed"
    assert (updated, hot) == (1, 1), "the claim wrote a new entry in each of the message's indexes"
