"""Nothing lost, nothing twice: a worker killed or stopped mid-batch, Redis losing its data mid-buffer or failing
mid-turn."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.integration.test_message_path import (
    keyword_flow,
    post_signed,
    sent_to,
    text_envelope,
    whatsapp_channel,
)
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse
from tests.support.stack import OWNER_KEY, Stack, Tenant, wait_until

pytestmark = pytest.mark.slow


async def _conversation(db, tenant: Tenant) -> uuid.UUID:
    return await wait_until(
        lambda: db.fetchval(
            "SELECT id FROM conversations WHERE workspace = $1", uuid.UUID(tenant.workspace_id)
        ),
        what="the conversation",
    )


async def test_worker_killed_mid_batch_loses_nothing_and_replies_once(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db
) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    calls = {"n": 0}

    async def slow_then_fast(request: PeerRequest) -> PeerResponse:
        calls["n"] += 1
        # The first send hangs long enough for the test to kill the worker while it waits.
        delay_s = 30.0 if calls["n"] == 1 else 0.0
        return PeerResponse(
            status=200,
            headers={"Content-Type": "application/json"},
            delay_s=delay_s,
            body=json.dumps(
                {"messaging_product": "whatsapp", "messages": [{"id": f"wamid.recovered.{calls['n']}"}]}
            ).encode(),
        )

    graph_api.route("POST", f"/{pnid}/messages", slow_then_fast)
    await tenant.create_flow(keyword_flow(keywords=["crash"], reply="Survived the crash.", disable_ai=False))
    await post_signed(
        tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15550009999", text="crash test")
    )
    await wait_until(lambda: sent_to(graph_api, pnid), what="the worker to be mid-batch (sending)")
    stack.worker.kill()
    conversation_id = await _conversation(db, tenant)
    inbound = await db.fetch(
        "SELECT id, processed_at, run_id FROM messages WHERE conversation = $1 AND direction = 'in'",
        conversation_id,
    )
    assert len(inbound) == 1 and inbound[0]["processed_at"] is None and inbound[0]["run_id"] is not None

    stack.worker.start()
    await wait_until(
        lambda: db.fetchval("SELECT processed_at IS NOT NULL FROM messages WHERE id = $1", inbound[0]["id"]),
        timeout_s=30,
        what="the batch processed after restart",
    )
    runs = await db.fetch(
        "SELECT status FROM runs WHERE conversation = $1 ORDER BY started_at", conversation_id
    )
    assert [r["status"] for r in runs] == ["abandoned", "completed"]
    outbound = await db.fetch(
        "SELECT status, provider_message_id FROM messages WHERE conversation = $1 AND direction = 'out'",
        conversation_id,
    )
    # One reply row, and one send: the Graph API had the request when the worker died, so the
    # retried batch finds the reply in doubt and does not send it blindly again (its outcome is
    # the provider's callback, or `unknown`: tests/integration/test_outbox_in_doubt.py).
    assert len(outbound) == 1 and outbound[0]["status"] in ("sending", "unknown")
    assert len(sent_to(graph_api, pnid)) == 1


async def test_redis_flushed_mid_buffer_recovers_from_postgres(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db, redis
) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["lost"], reply="Found you.", disable_ai=False))
    for text in ["is anything lost", "lost?"]:
        response = await post_signed(
            tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15550008888", text=text)
        )
        assert response.status_code == 200
    # Both messages sit in the 0.4 s buffer window; Redis forgets everything.
    await redis.flushdb()
    await redis.set(OWNER_KEY, os.getpid(), ex=3600)  # the suite's claim on this database, not the app's data
    [reply] = await wait_until(lambda: sent_to(graph_api, pnid), timeout_s=20, what="the recovered reply")
    assert reply.json()["text"]["body"] == "Found you."
    conversation_id = await _conversation(db, tenant)
    await wait_until(
        lambda: db.fetchval(
            "SELECT count(*) = 2 FROM messages WHERE conversation = $1 AND "
            "direction = 'in' AND processed_at IS NOT NULL",
            conversation_id,
        ),
        what="both messages processed",
    )
    runs = await db.fetch(
        "SELECT message_ids FROM runs WHERE conversation = $1 AND status = 'completed'", conversation_id
    )
    assert len(runs) == 1 and len(json.loads(runs[0]["message_ids"])) == 2
    assert len(sent_to(graph_api, pnid)) == 1


async def _stored_unsignalled(
    db, tenant: Tenant, channel: dict, *, phone: str, text: str
) -> tuple[uuid.UUID, uuid.UUID]:
    """A message stored as ingress stores it, but not signalled: only the test's own turn knows about it yet."""
    workspace = uuid.UUID(tenant.workspace_id)
    contact = await db.fetchval(
        "INSERT INTO contacts (id, workspace, phone) VALUES (gen_random_uuid(), $1, $2) RETURNING id",
        workspace,
        phone,
    )
    conversation = await db.fetchval(
        "INSERT INTO conversations (id, workspace, channel, contact) VALUES (gen_random_uuid(), $1, $2, $3) "
        "RETURNING id",
        workspace,
        uuid.UUID(channel["id"]),
        contact,
    )
    message = await db.fetchval(
        "INSERT INTO messages (id, workspace, conversation, channel, direction, seq, provider_message_id, type, text) "
        "VALUES (gen_random_uuid(), $1, $2, $3, 'in', 1, $4, 'text', $5) RETURNING id",
        workspace,
        conversation,
        uuid.UUID(channel["id"]),
        f"wamid.{phone}",
        text,
    )
    return conversation, message


class _AIStoreReading:
    """The worker's AI state store with its read replaced, to fail or hold a turn where a test wants it."""

    def __init__(self, inner, read_with) -> None:
        self._inner = inner
        self.read_with = read_with

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


async def _given_back_then_answered_once(
    db, graph_api: HttpPeer, pnid: str, conversation: uuid.UUID, message: uuid.UUID, *, error: str, reply: str
) -> None:
    """The interrupted run is abandoned, its message released, and the live worker answers it exactly once."""
    [run] = await db.fetch("SELECT status, error FROM runs WHERE conversation = $1", conversation)
    assert run["status"] == "abandoned" and error in run["error"]
    row = await db.fetchrow("SELECT run_id, processed_at FROM messages WHERE id = $1", message)
    assert row["run_id"] is None and row["processed_at"] is None, "the batch was not given back"
    # The worker's recovery finds the stored, unclaimed message and answers it.
    [sent] = await wait_until(
        lambda: sent_to(graph_api, pnid), timeout_s=20, what="the reply after the interruption"
    )
    assert sent.json()["text"]["body"] == reply
    await wait_until(
        lambda: db.fetchval("SELECT processed_at IS NOT NULL FROM messages WHERE id = $1", message),
        what="the message processed",
    )
    statuses = [
        r["status"]
        for r in await db.fetch(
            "SELECT status FROM runs WHERE conversation = $1 ORDER BY started_at", conversation
        )
    ]
    assert statuses == ["abandoned", "completed"]
    assert len(sent_to(graph_api, pnid)) == 1


async def test_a_turn_interrupted_by_redis_gives_its_batch_back(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db
) -> None:
    """A Redis hiccup mid-turn must not mark the batch processed: the next attempt answers it, once."""
    from app import roots

    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["hiccup"], reply="Still here.", disable_ai=False))
    conversation, message = await _stored_unsignalled(
        db, tenant, channel, phone="15550007777", text="hiccup?"
    )

    svc = await roots.open_services()
    try:

        async def hiccup(*_args, **_kwargs):
            raise RedisConnectionError("Too many connections")  # a saturated or restarting Redis

        runner = _runner_reading(svc, hiccup)
        with pytest.raises(RedisConnectionError):
            await runner.run(str(conversation), job_id="test")
    finally:
        await roots.close_services(svc)
    await _given_back_then_answered_once(
        db, graph_api, pnid, conversation, message, error="Too many connections", reply="Still here."
    )


async def test_a_turn_cancelled_by_shutdown_gives_its_batch_back_at_once(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db
) -> None:
    """A stopping worker cancels its turns: their batches go back now, not after the lock expires."""
    from app import roots

    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["restart"], reply="Back again.", disable_ai=False))
    conversation, message = await _stored_unsignalled(
        db, tenant, channel, phone="15550006666", text="restart?"
    )

    svc = await roots.open_services()
    try:
        reached = asyncio.Event()

        async def stall(*_args, **_kwargs):
            reached.set()
            await asyncio.Event().wait()

        turn = asyncio.create_task(_runner_reading(svc, stall).run(str(conversation), job_id="test"))
        await asyncio.wait_for(reached.wait(), timeout=10)
        turn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn
    finally:
        await roots.close_services(svc)
    await _given_back_then_answered_once(
        db, graph_api, pnid, conversation, message, error="cancelled", reply="Back again."
    )


def _runner_reading(svc, read_with):
    """The process's TurnRunner, except that reading the AI state does `read_with`."""
    from app.pipeline.turn import TurnRunner

    return TurnRunner(
        svc.settings,
        db=svc.db,
        ledger=svc.ledger,
        outbox=svc.outbox,
        ai_store=_AIStoreReading(svc.ai_store, read_with),
        plans=svc.plans,
        understanding=svc.understanding,
        webhooks=svc.webhook_calls,
        publisher=svc.publisher,
    )
