"""The turn's claim must read only its conversation's unprocessed messages, whatever the backlog.

The pool runs statements prepared, so after a few executions PostgreSQL may switch to a
generic plan that knows nothing of the conversation id. With an index holding every
unprocessed row, that plan combined it with the conversation index and read the whole
backlog at every turn (12 ms per claim at 20,000 waiting messages, the benchmark's worst
cost). These tests look at that generic plan on a table with a backlog.
"""

from __future__ import annotations

import json
import uuid

import pytest

from app.pipeline import ledger, recovery
from tests.support.stack import Stack, Tenant

pytestmark = pytest.mark.slow

BACKLOG_CONVERSATIONS = 200
BACKLOG_MESSAGES = 5000


def _nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def _backlog(db, tenant: Tenant) -> uuid.UUID:
    """Conversations with unprocessed inbound messages, inside the caller's transaction."""
    workspace = uuid.UUID(tenant.workspace_id)
    channel = await db.fetchval(
        "INSERT INTO channels (id, workspace, kind, name) VALUES (gen_random_uuid(), $1, 'generic', 'backlog') "
        "RETURNING id",
        workspace,
    )
    await db.execute(
        "INSERT INTO contacts (id, workspace, phone) SELECT md5($2 || i)::uuid, $1, $2 || i "
        "FROM generate_series(1, $3) i",
        workspace,
        str(channel),
        BACKLOG_CONVERSATIONS,
    )
    await db.execute(
        "INSERT INTO conversations (id, workspace, channel, contact) "
        "SELECT md5('c' || $3 || i)::uuid, $1, $2, md5($3 || i)::uuid FROM generate_series(1, $4) i",
        workspace,
        channel,
        str(channel),
        BACKLOG_CONVERSATIONS,
    )
    await db.execute(
        "INSERT INTO messages (id, workspace, conversation, channel, direction, seq, provider_message_id, type, text) "
        "SELECT gen_random_uuid(), $1, md5('c' || $3 || (i % $4 + 1))::uuid, $2, 'in', i, 'backlog.' || i, 'text', "
        "'hello' FROM generate_series(1, $5) i",
        workspace,
        channel,
        str(channel),
        BACKLOG_CONVERSATIONS,
        BACKLOG_MESSAGES,
    )
    return await db.fetchval("SELECT md5('c' || $1 || '1')::uuid", str(channel))


def _literal(value: object) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        quoted = ('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return "'{" + ",".join(quoted) + "}'"
    return f"'{value}'"


async def _generic_plan(db, statement: str, *args: object) -> list[dict]:
    await db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    await db.execute(f"PREPARE claim_plan AS {statement}")
    try:
        # EXPLAIN takes no bind parameters; the values do not matter to a generic plan.
        literals = ", ".join(_literal(a) for a in args)
        raw = await db.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE claim_plan({literals})")
    finally:
        await db.execute("DEALLOCATE claim_plan")
    return _nodes(json.loads(raw)[0]["Plan"])


async def test_turn_claim_reads_its_conversations_through_the_partial_index(
    stack: Stack, tenant: Tenant, db
) -> None:
    transaction = db.transaction()
    await transaction.start()
    try:
        conversation = await _backlog(db, tenant)
        nodes = await _generic_plan(db, ledger._START_MANY, [conversation], [uuid.uuid4()], ["job"])
    finally:
        await transaction.rollback()
    message_scans = [
        n for n in nodes if n.get("Relation Name") == "messages" and n["Node Type"] != "ModifyTable"
    ]
    assert message_scans, "the claim no longer reads the messages table?"
    assert all(
        n["Node Type"] == "Index Scan" and n["Index Name"] == "messages_unprocessed" for n in message_scans
    ), [(n["Node Type"], n.get("Index Name")) for n in message_scans]
    assert not [
        n
        for n in nodes
        if n["Node Type"] in ("BitmapAnd", "Seq Scan") and n.get("Relation Name", "messages") == "messages"
    ]


async def test_recovery_scan_reads_only_unprocessed_messages(stack: Stack, tenant: Tenant, db) -> None:
    transaction = db.transaction()
    await transaction.start()
    try:
        await _backlog(db, tenant)
        await db.execute(
            "UPDATE messages SET processed_at = now() WHERE workspace = $1 AND seq % 2 = 0",
            uuid.UUID(tenant.workspace_id),
        )
        nodes = await _generic_plan(db, recovery._UNPROCESSED, 9.0, 1000, 30.0)
    finally:
        await transaction.rollback()
    scans = [n for n in nodes if n.get("Relation Name") == "messages" and n["Node Type"] != "ModifyTable"]
    assert scans and all(n.get("Index Name") == "messages_unprocessed" for n in scans), [
        (n["Node Type"], n.get("Index Name")) for n in scans
    ]


async def test_turn_end_marks_messages_by_primary_key(stack: Stack, tenant: Tenant, db) -> None:
    transaction = db.transaction()
    await transaction.start()
    try:
        await _backlog(db, tenant)
        nodes = await _generic_plan(
            db,
            ledger._FINISH_MANY,
            [uuid.uuid4()],
            ["trigger"],
            ["[]"],
            ["[]"],
            ["[]"],
            ["{}"],
            ["[]"],
            [uuid.uuid4()],
            [uuid.uuid4()],
            [uuid.uuid4()],
        )
    finally:
        await transaction.rollback()
    message_indexes = {n["Index Name"] for n in nodes if n.get("Index Name", "").startswith("messages")}
    assert message_indexes == {"messages_pkey"}, message_indexes
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "messages"]
