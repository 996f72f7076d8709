"""Nothing lost, nothing twice: a worker killed or stopped mid-batch, Redis losing its data mid-buffer or failing
mid-turn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.integration.test_message_path import (
    keyword_flow,
    post_signed,
    sent_to,
    whatsapp_channel,
)
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse
from tests.support.stack import OWNER_KEY, Process, Stack, Tenant, wait_until
from tests.support.whatsapp import text_envelope

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


# The processing bound of the README's guarantees, with the suite's settings (tests/conftest.py):
# SWITCHBOARD_BUFFER_MAX_SECONDS 1.5 + SWITCHBOARD_LOCK_SECONDS 2 + SWITCHBOARD_RECOVERY_INTERVAL_SECONDS 0.5.
BOUND_S = 1.5 + 2.0 + 0.5
# What the bound leaves out: the scheduler's poll, the turn itself, a machine shared with other suites.
SLACK_S = 10.0


async def test_a_swept_flush_job_leaves_nothing_stranded(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db, redis
) -> None:
    """SAQ swept the flush job before it took its lock: the buffer keys stayed and the due set had
    forgotten the conversation. Recovery goes by PostgreSQL (a stored message nobody claimed) and answers it
    within the bound, whatever Redis still holds."""
    from app.pipeline import buffer

    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["swept"], reply="Not forgotten.", disable_ai=False))
    conversation, message = await _stored_unsignalled(
        db, tenant, channel, phone="15550005555", text="swept away?"
    )
    # What a swept job leaves in Redis: the window's keys (no lock, not due); no expiry of their own.
    await redis.rpush(buffer.buffer_key(str(conversation)), str(message))
    await redis.set(buffer.first_key(str(conversation)), time.time())

    [reply] = await wait_until(
        lambda: sent_to(graph_api, pnid), timeout_s=BOUND_S + SLACK_S, what="the stranded message answered"
    )
    assert reply.json()["text"]["body"] == "Not forgotten."
    await wait_until(
        lambda: db.fetchval("SELECT processed_at IS NOT NULL FROM messages WHERE id = $1", message),
        what="the message processed",
    )
    assert len(sent_to(graph_api, pnid)) == 1


async def _services_like_the_workers(graph_api: HttpPeer, monkeypatch):
    """This process's own services, sending to the suite's Graph API as the stack's worker does."""
    from app import roots
    from app.settings import get_settings

    monkeypatch.setenv("WHATSAPP_GRAPH_URL", graph_api.base_url)
    get_settings.cache_clear()
    try:
        return await roots.open_services()
    finally:
        get_settings.cache_clear()  # the next reader sees the environment as monkeypatch restores it


class _LedgerStallingFinish:
    """The worker's ledger, except that `finish` waits for the test: a turn that sent its reply and then
    stalled (a frozen or dying worker) before recording its end."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.finished: list[bool] = []

    async def finish(self, *args, **kwargs):
        self.reached.set()
        await self.release.wait()
        finished = await self._inner.finish(*args, **kwargs)
        self.finished.append(finished)
        return finished

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


async def test_a_rerun_keeps_the_batch_it_first_claimed(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db, monkeypatch
) -> None:
    """A turn claims a batch, replies, and stalls before recording its end; a message arrives, and the stalled
    run is abandoned (as recovery does when its heartbeat stops). The batch runs again with exactly its first
    members (same batch key: the reply is not sent again); the later message is the next batch, with its own
    reply. Before, the retry claimed old and new together and answered the old message a second time."""
    from app import roots
    from app.pipeline.turn import TurnRunner

    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(
        keyword_flow(keywords=["order"], reply="Got: {{ message_text }}", disable_ai=False)
    )
    conversation, first = await _stored_unsignalled(
        db, tenant, channel, phone="15550004444", text="order one"
    )

    svc = await _services_like_the_workers(graph_api, monkeypatch)
    ledger = _LedgerStallingFinish(svc.ledger)
    runner = TurnRunner(
        svc.settings,
        db=svc.db,
        ledger=ledger,
        outbox=svc.outbox,
        ai_store=svc.ai_store,
        plans=svc.plans,
        understanding=svc.understanding,
        webhooks=svc.webhook_calls,
        publisher=svc.publisher,
    )
    stalled = asyncio.create_task(runner.run(str(conversation), job_id="stalled"))

    async def beat_until_stalled() -> None:
        # Alive (as its worker's keep-alive would have it) until it stalls.
        while not ledger.reached.is_set():
            await svc.ledger.heartbeat([str(conversation)])
            await asyncio.sleep(0.2)

    beating = asyncio.create_task(beat_until_stalled())
    try:
        await asyncio.wait_for(ledger.reached.wait(), timeout=15)
        await beating
        assert [r.json()["text"]["body"] for r in sent_to(graph_api, pnid)] == ["Got: order one"]
        second = await db.fetchval(
            "INSERT INTO messages (id, workspace, conversation, channel, direction, seq, provider_message_id, "
            "type, text) VALUES (gen_random_uuid(), $1, $2, $3, 'in', 2, 'wamid.later', 'text', 'order two') "
            "RETURNING id",
            uuid.UUID(tenant.workspace_id),
            conversation,
            uuid.UUID(channel["id"]),
        )
        # The stalled run's worker is taken for dead: what recovery does once its heartbeat is older than a lock.
        stalled_run = await db.fetchval(
            "SELECT id FROM runs WHERE conversation = $1 AND status = 'running'", conversation
        )
        await svc.ledger.give_back(
            stalled_run, conversation, error="worker stopped during the run", fence=True
        )
        await wait_until(
            lambda: db.fetchval(
                "SELECT count(*) = 2 FROM messages WHERE conversation = $1 AND direction = 'in' "
                "AND processed_at IS NOT NULL",
                conversation,
            ),
            timeout_s=2 * BOUND_S + SLACK_S,
            what="both messages processed",
        )
        completed = await wait_until(
            lambda: db.fetch(
                "SELECT message_ids FROM runs WHERE conversation = $1 AND status = 'completed' "
                "ORDER BY started_at",
                conversation,
            ),
            what="the completed runs",
        )
        assert [json.loads(r["message_ids"]) for r in completed] == [[str(first)], [str(second)]]
        assert [r.json()["text"]["body"] for r in sent_to(graph_api, pnid)] == [
            "Got: order one",
            "Got: order two",
        ]
    finally:
        ledger.release.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stalled, timeout=15)
        await roots.close_services(svc)
    # The stalled turn's end came too late: its run had been abandoned, and it records nothing.
    assert ledger.finished == [False]


def _status_check_flow(url: str) -> dict:
    """keyword -> a webhook asked for a status -> "Fresh." when it says fresh; else a tag, then "Stale."."""
    return {
        "schema": "switchboard.flow/v1",
        "name": "Status check",
        "status": "active",
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["fence"]}},
            },
            {
                "id": "hook",
                "type": "action.call_webhook",
                "config": {"url": url, "method": "POST", "timeout_seconds": 60, "max_retries": 0},
            },
            {
                "id": "fresh",
                "type": "logic.condition",
                "config": {"left": "{{ response.status }}", "op": "equals", "right": "fresh"},
            },
            {"id": "said_fresh", "type": "action.send_message", "config": {"text": "Fresh."}},
            {"id": "tag_stale", "type": "action.add_tag", "config": {"tag": "stale-turn"}},
            {"id": "said_stale", "type": "action.send_message", "config": {"text": "Stale."}},
        ],
        "edges": [
            {"from": "t", "to": "hook"},
            {"from": "hook", "to": "fresh", "port": "success"},
            {"from": "fresh", "to": "said_fresh", "port": "true"},
            {"from": "fresh", "to": "tag_stale", "port": "false"},
            {"from": "tag_stale", "to": "said_stale"},
        ],
    }


async def test_a_frozen_turn_is_fenced_once_another_worker_took_over(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, http_peer: HttpPeer, db
) -> None:
    """A worker freezes (SIGSTOP) while its turn waits on a webhook; its lock expires and another worker runs
    the batch again. When the frozen one wakes up and its webhook answers, its turn is fenced: what it then
    does (a tag, a reply, its run's completion) is refused in the statement that would record it."""
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    answered = asyncio.Event()
    calls: list[PeerRequest] = []

    async def status(request: PeerRequest) -> PeerResponse:
        calls.append(request)
        if len(calls) == 1:  # the first worker's call hangs until the test lets it answer
            await answered.wait()
            return PeerResponse.json({"status": "stale"})
        return PeerResponse.json({"status": "fresh"})

    http_peer.route("POST", "/status", status)
    await tenant.create_flow(_status_check_flow(http_peer.url("/status")))
    first = Process("fenced-worker", ["worker", "--concurrency", "8"], stack.env)
    stack.worker.stop()  # the first worker alone takes the turn
    try:
        first.start()
        await post_signed(
            tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15550003333", text="fence me")
        )
        await wait_until(lambda: calls, timeout_s=60, what="the first worker's turn waiting on the webhook")
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGSTOP)
        stack.worker.start()
        conversation = await _conversation(db, tenant)
        [reply] = await wait_until(
            lambda: sent_to(graph_api, pnid), timeout_s=60, what="the second worker's reply"
        )
        assert reply.json()["text"]["body"] == "Fresh."
        await wait_until(
            lambda: db.fetchval(
                "SELECT count(*) = 1 FROM runs WHERE conversation = $1 AND status = 'completed'", conversation
            ),
            what="the second worker's run completed",
        )

        os.kill(first.proc.pid, signal.SIGCONT)
        answered.set()  # the frozen turn wakes up to a stale answer
        await wait_until(
            lambda: "turn superseded" in first.log_path.read_text(errors="replace"),
            timeout_s=30,
            what="the woken turn refused",
        )
        refused = [
            json.loads(line)
            for line in first.log_path.read_text(errors="replace").splitlines()
            if "effect refused" in line
        ]
        assert refused and "tag 'stale-turn' added" in refused[0]["effect"]
        assert (
            json.loads(await db.fetchval("SELECT tags FROM conversations WHERE id = $1", conversation)) == []
        )
        assert [r.json()["text"]["body"] for r in sent_to(graph_api, pnid)] == ["Fresh."]
        statuses = [
            r["status"]
            for r in await db.fetch(
                "SELECT status FROM runs WHERE conversation = $1 ORDER BY started_at", conversation
            )
        ]
        assert statuses == ["abandoned", "completed"]
        assert (
            await db.fetchval(
                "SELECT count(*) FROM messages WHERE conversation = $1 AND direction = 'out'", conversation
            )
            == 1
        )
    finally:
        answered.set()
        if first.alive() and first.proc is not None:
            os.kill(first.proc.pid, signal.SIGCONT)
        first.stop()
        if not stack.worker.alive():
            stack.worker.start()


async def test_every_effect_of_a_superseded_turn_is_refused_in_its_own_statement(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, http_peer: HttpPeer, db, monkeypatch
) -> None:
    """A turn whose lease epoch moved on (recovery took its worker for dead) records nothing: the reply's row
    (so it is not sent), AI state, status, tags, a pending action, a webhook execution (so it is not called)
    and its run's completion are each refused by the statement that would record them."""
    from app import roots
    from app.pipeline.effects import TurnEffects, TurnScope
    from app.services.channels import store as channel_store
    from flows.nodes.call_webhook import CallWebhookConfig, WebhookCall
    from flows.runtime import Superseded
    from flows.turn import PendingAction, PendingKind

    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    http_peer.reply("POST", "/never", PeerResponse.json({"ok": True}))
    conversation, message = await _stored_unsignalled(
        db, tenant, channel, phone="15550002222", text="anything"
    )
    svc = await _services_like_the_workers(graph_api, monkeypatch)
    try:
        run_id = uuid.uuid4()
        started = await svc.ledger.start(conversation, run_id, "test")
        assert started["epoch"] is not None and json.loads(started["claimed"])[0]["id"] == str(message)
        await svc.ledger.give_back(run_id, conversation, error="worker taken for dead", fence=True)
        # Nobody runs the batch again here: the test alone acts, with the stale token.
        await db.execute("UPDATE messages SET processed_at = now() WHERE id = $1", message)
        before = await db.fetchrow(
            "SELECT status, tags::text, ai_enabled, custom_prompt, ai_context::text FROM conversations "
            "WHERE id = $1",
            conversation,
        )
        effects = TurnEffects(
            TurnScope(
                workspace_id=tenant.workspace_id,
                conversation_id=str(conversation),
                contact_phone="15550002222",
                run_id=str(run_id),
                batch_key="stale-batch",
                epoch=started["epoch"],
            ),
            db=svc.db,
            channel=await channel_store.lookup(channel["id"]),
            outbox=svc.outbox,
            ai_store=svc.ai_store,
            understanding=svc.understanding,
            webhooks=svc.webhook_calls,
            publisher=svc.publisher,
            history_turns=10,
            confirmation_ttl_s=600,
        )
        pending = PendingAction(
            id=str(uuid.uuid4()), flow_id=str(uuid.uuid4()), node_id="n", kind=PendingKind.CONFIRMATION
        )
        call = WebhookCall(
            flow_id=str(uuid.uuid4()),
            node_id="hook",
            config=CallWebhookConfig(url=http_peer.url("/never")),
            names={},
        )
        for effect in (
            effects.send_message("Too late.", message_type="support"),
            effects.write_ai_control(ai_enabled=False, custom_prompt="stale"),
            effects.merge_ai_context({"stale": True}),
            effects.reset_ai_context(),
            effects.set_conversation_status("closed"),
            effects.add_tag("stale"),
            effects.remove_tag("anything"),
            effects.save_pending(pending, message=""),
            effects.call_webhook(call),
        ):
            with pytest.raises(Superseded, match="refused"):
                await effect
        assert not await svc.ledger.finish(
            run_id,
            {"layer": None, "flows": [], "trace": [], "warnings": [], "summary": {}},
            [str(message)],
        )
    finally:
        await roots.close_services(svc)
    assert sent_to(graph_api, pnid) == [] and http_peer.requests_to("/never") == []
    assert (
        await db.fetchval(
            "SELECT count(*) FROM messages WHERE conversation = $1 AND direction = 'out'", conversation
        )
        == 0
    )
    assert (
        await db.fetchval("SELECT count(*) FROM action_executions WHERE conversation = $1", conversation) == 0
    )
    after = await db.fetchrow(
        "SELECT status, tags::text, ai_enabled, custom_prompt, ai_context::text FROM conversations WHERE id = $1",
        conversation,
    )
    assert after == before
    assert await db.fetchval("SELECT status FROM runs WHERE id = $1", run_id) == "abandoned"
