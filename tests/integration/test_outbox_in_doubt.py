"""A reply whose send may have happened is never sent blindly again, and no reply stays in between.

The Graph API is a real HTTP server on 127.0.0.1 that accepts the message and then the worker
dies (SIGKILL), or the mark after the accept fails. The re-run finds the row in doubt and does
not send it again: the provider's status callback (which echoes `biz_opaque_callback_data`, the
row's id) settles it as sent; without one, after the evidence window, it ends `unknown` with its
reason, shown on the conversation page.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from app.pipeline.statuses import failed_callbacks_key
from tests.integration.test_message_path import (
    keyword_flow,
    post_signed,
    sent_to,
    text_envelope,
    whatsapp_channel,
)
from tests.integration.test_recovery import _stored_unsignalled
from tests.integration.test_ui_fragments import logged_in
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse
from tests.support.stack import Stack, Tenant, wait_until

pytestmark = pytest.mark.slow


def callback_envelope(*, phone_number_id: str, wamid: str, status: str, callback_data: str) -> dict:
    """A status callback as Meta sends it for a message sent with `biz_opaque_callback_data`."""
    entry = {
        "id": wamid,
        "status": status,
        "timestamp": "1764600000",
        "recipient_id": "15550002222",
        "biz_opaque_callback_data": callback_data,
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
        "statuses": [entry],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}],
    }


def accept_and_hang(graph_api: HttpPeer, phone_number_id: str) -> None:
    """The Graph API takes the first message (the request is received) and answers too late to
    matter; any later send is answered at once (so a blind resend would show)."""
    calls = iter(range(1, 1000))

    async def first_hangs(_request: PeerRequest) -> PeerResponse:
        n = next(calls)
        return PeerResponse(
            status=200,
            headers={"Content-Type": "application/json"},
            body=json.dumps(
                {"messaging_product": "whatsapp", "messages": [{"id": f"wamid.send.{n}"}]}
            ).encode(),
            delay_s=60.0 if n == 1 else 0.0,
        )

    graph_api.route("POST", f"/{phone_number_id}/messages", first_hangs)


async def _worker_killed_after_the_accept(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db, *, keyword: str
) -> tuple[dict, PeerRequest, uuid.UUID]:
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    accept_and_hang(graph_api, pnid)
    await tenant.create_flow(keyword_flow(keywords=[keyword], reply="Only once.", disable_ai=False))
    await post_signed(
        tenant,
        channel["id"],
        text_envelope(phone_number_id=pnid, sender="15550002222", text=f"{keyword} now"),
    )
    [request] = await wait_until(lambda: sent_to(graph_api, pnid), what="the send to reach the Graph API")
    stack.worker.kill()
    stack.worker.start()
    conversation = await db.fetchval(
        "SELECT id FROM conversations WHERE workspace = $1", uuid.UUID(tenant.workspace_id)
    )
    await wait_until(
        lambda: db.fetchval(
            "SELECT bool_and(processed_at IS NOT NULL) FROM messages WHERE conversation = $1 AND direction = 'in'",
            conversation,
        ),
        timeout_s=30,
        what="the batch run again after the restart",
    )
    return channel, request, conversation


async def _reply(db, conversation: uuid.UUID):
    [row] = await db.fetch(
        "SELECT id, status, provider_message_id, error FROM messages WHERE conversation = $1 AND direction = 'out'",
        conversation,
    )
    return row


async def test_a_reply_accepted_before_the_worker_died_is_not_sent_again(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db
) -> None:
    channel, request, conversation = await _worker_killed_after_the_accept(
        stack, tenant, graph_api, db, keyword="accepted"
    )
    pnid = channel["phone_number_id"]
    assert len(sent_to(graph_api, pnid)) == 1, "the re-run sent the reply again"
    runs = await db.fetch("SELECT status FROM runs WHERE conversation = $1 ORDER BY started_at", conversation)
    # The killed run was abandoned and the batch run again (under load, recovery may abandon a slow re-run too).
    assert runs[0]["status"] == "abandoned" and runs[-1]["status"] == "completed"

    reply = await _reply(db, conversation)
    callback_data = request.json().get("biz_opaque_callback_data")
    assert callback_data == str(reply["id"])  # the row's id travels with the send
    # The provider's "sent" callback names the row: the reply is settled without its wamid ever stored.
    response = await post_signed(
        tenant,
        channel["id"],
        callback_envelope(
            phone_number_id=pnid, wamid="wamid.accepted.1", status="sent", callback_data=callback_data
        ),
    )
    assert response.status_code == 200
    settled = await wait_until(
        lambda: db.fetchrow(
            "SELECT status, provider_message_id FROM messages WHERE id = $1 AND status = 'sent'", reply["id"]
        ),
        what="the reply settled by the callback",
    )
    assert settled["provider_message_id"] == "wamid.accepted.1"
    assert len(sent_to(graph_api, pnid)) == 1


async def test_a_reply_in_doubt_without_evidence_ends_unknown_with_its_reason_shown(
    stack: Stack, tenant: Tenant, graph_api: HttpPeer, db
) -> None:
    channel, request, conversation = await _worker_killed_after_the_accept(
        stack, tenant, graph_api, db, keyword="silence"
    )
    pnid = channel["phone_number_id"]
    reply = await _reply(db, conversation)
    unknown = await wait_until(
        lambda: db.fetchrow(
            "SELECT status, error FROM messages WHERE id = $1 AND status = 'unknown'", reply["id"]
        ),
        what="the reply in doubt decided unknown after the evidence window",
    )
    reason = json.loads(unknown["error"])["reason"]
    assert "not sent again" in reason and "callback" in reason
    assert len(sent_to(graph_api, pnid)) == 1

    # The conversation page says so, with the reason.
    client, _ = await logged_in(tenant)
    try:
        page = await client.get(f"/conversations/{conversation}")
    finally:
        await client.aclose()
    assert page.status_code == 200
    item = re.search(rf'<div class="msg out[^"]*" id="msg-{reply["id"]}".*?</div>', page.text, re.S)
    assert item is not None, page.text
    assert 'class="msg-status status-unknown"' in item.group(0)
    assert "not sent again" in item.group(0)

    # Evidence that comes late still wins: the customer did get it.
    await post_signed(
        tenant,
        channel["id"],
        callback_envelope(
            phone_number_id=pnid,
            wamid="wamid.late.1",
            status="delivered",
            callback_data=request.json()["biz_opaque_callback_data"],
        ),
    )
    await wait_until(
        lambda: db.fetchval("SELECT status = 'delivered' FROM messages WHERE id = $1", reply["id"]),
        what="the late callback applied",
    )


async def _run_with_failing_marks(
    svc, graph_api: HttpPeer, conversation: uuid.UUID, *, failures: int
) -> dict:
    """One turn in this process whose outbox cannot mark its first `failures` sends (PostgreSQL is gone)."""
    import asyncpg

    from app.pipeline.outbox import Outbox
    from app.pipeline.turn import TurnRunner
    from app.services.channels.whatsapp import WhatsAppSender
    from app.settings import ChannelSettings

    class MarkFails(Outbox):
        left = failures

        async def _mark_sent(self, *args, **kwargs) -> None:
            if self.left > 0:
                self.left -= 1
                raise asyncpg.PostgresConnectionError("connection lost at the mark")
            await super()._mark_sent(*args, **kwargs)

    whatsapp = WhatsAppSender(ChannelSettings(whatsapp_graph_url=graph_api.base_url))
    outbox = MarkFails(svc.db, whatsapp, svc.publisher, on_sent=svc.statuses.replay_parked)
    runner = TurnRunner(
        svc.settings,
        db=svc.db,
        ledger=svc.ledger,
        outbox=outbox,
        ai_store=svc.ai_store,
        plans=svc.plans,
        understanding=svc.understanding,
        webhooks=svc.webhook_calls,
        publisher=svc.publisher,
    )
    try:
        return await runner.run(str(conversation), job_id="test")
    finally:
        await outbox.aclose()
        await whatsapp.aclose()


async def test_a_short_outage_at_the_mark_is_ridden_out(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    from app import roots

    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["mark"], reply="Marked.", disable_ai=False))
    conversation, _ = await _stored_unsignalled(db, tenant, channel, phone="15550003333", text="mark it")
    svc = await roots.open_services()
    try:
        result = await _run_with_failing_marks(svc, graph_api, conversation, failures=2)
    finally:
        await roots.close_services(svc)
    assert result["status"] == "completed"
    reply = await _reply(db, conversation)
    assert reply["status"] == "sent" and reply["provider_message_id"] == f"wamid.out.{pnid}.1"
    assert len(sent_to(graph_api, pnid)) == 1


async def test_a_mark_that_keeps_failing_leaves_the_reply_in_doubt_never_resent(
    tenant: Tenant, graph_api: HttpPeer, db
) -> None:
    """The Graph API accepted, and PostgreSQL stayed away at the mark: the reply is in doubt, not
    sent again; the provider's callback (naming the row) settles it."""
    from app import roots

    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["mark"], reply="Marked or not.", disable_ai=False))
    conversation, _ = await _stored_unsignalled(db, tenant, channel, phone="15550003334", text="mark it")
    svc = await roots.open_services()
    try:
        await _run_with_failing_marks(svc, graph_api, conversation, failures=100)
    finally:
        await roots.close_services(svc)
    # The flow's reply failed at its node, so the AI answered too: one request per row, never two.
    callback_ids = [r.json()["biz_opaque_callback_data"] for r in sent_to(graph_api, pnid)]
    assert len(callback_ids) == len(set(callback_ids))
    [request] = [r for r in sent_to(graph_api, pnid) if r.json()["text"]["body"] == "Marked or not."]
    reply = await db.fetchrow(
        "SELECT id, status, provider_message_id FROM messages WHERE conversation = $1 AND text = 'Marked or not.'",
        conversation,
    )
    assert reply["status"] in ("sending", "unknown") and reply["provider_message_id"] is None
    assert request.json()["biz_opaque_callback_data"] == str(reply["id"])
    await post_signed(
        tenant,
        channel["id"],
        callback_envelope(
            phone_number_id=pnid,
            wamid="wamid.accepted.mark",
            status="sent",
            callback_data=str(reply["id"]),
        ),
    )
    await wait_until(
        lambda: db.fetchval("SELECT status = 'sent' FROM messages WHERE id = $1", reply["id"]),
        what="the callback to settle the reply",
    )
    assert [r.json()["biz_opaque_callback_data"] for r in sent_to(graph_api, pnid)] == callback_ids


async def test_a_reply_stuck_queued_is_settled_with_a_reason(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    """A row recorded but never attempted (the turn that wrote it is gone) does not stay queued forever."""
    channel = await whatsapp_channel(tenant, graph_api)
    conversation, _ = await _stored_unsignalled(db, tenant, channel, phone="15550004444", text="hello")
    stuck = await db.fetchval(
        "INSERT INTO messages (id, workspace, conversation, channel, direction, type, text, status, dedupe_key, "
        "created_at, processed_at) VALUES (gen_random_uuid(), $1, $2, $3, 'out', 'text', 'Left behind.', 'queued', "
        "$4, now() - interval '10 minutes', now()) RETURNING id",
        uuid.UUID(tenant.workspace_id),
        conversation,
        uuid.UUID(channel["id"]),
        f"stuck:{uuid.uuid4().hex}",
    )
    failed = await wait_until(
        lambda: db.fetchrow("SELECT status, error FROM messages WHERE id = $1 AND status = 'failed'", stuck),
        what="the stuck reply settled",
    )
    assert "never sent" in json.loads(failed["error"])["reason"].lower()
    assert sent_to(graph_api, channel["phone_number_id"]) == []


async def test_a_reply_that_never_reached_the_provider_is_sent_once_callbacks_prove_it(
    tenant: Tenant, graph_api: HttpPeer, db
) -> None:
    """Recorded as sending, then the worker died before its request left: WhatsApp never saw it. Status
    callbacks for the channel keep arriving and none names it, so after the evidence window it is sent
    (once, with the same row id), instead of ending unknown."""
    pnid, lost = await _reply_lost_before_it_left(tenant, graph_api, db)
    sent = await wait_until(
        lambda: db.fetchrow(
            "SELECT status, provider_message_id FROM messages WHERE id = $1 AND status = 'sent'", lost
        ),
        what="the reply sent after the evidence window",
    )
    [request] = sent_to(graph_api, pnid)
    body = request.json()
    assert body["to"] == "15550005555" and body["text"]["body"] == "Lost before it left."
    assert body["biz_opaque_callback_data"] == str(lost)
    assert sent["provider_message_id"] == f"wamid.out.{pnid}.1"


async def test_a_callback_that_failed_since_the_attempt_proves_nothing(
    tenant: Tenant, graph_api: HttpPeer, db, redis
) -> None:
    """A status callback for the channel failed to be applied after the attempt (the database was away):
    it may be this reply's own, which WhatsApp will deliver again, so the reply is not sent a second time
    (chaos: two replies sent twice after PostgreSQL outages); it ends unknown, and its callback still counts."""
    pnid, lost = await _reply_lost_before_it_left(tenant, graph_api, db, failed_callback=redis)
    settled = await wait_until(
        lambda: db.fetchrow("SELECT status FROM messages WHERE id = $1 AND status <> 'sending'", lost),
        what="the reply settled after the evidence window",
    )
    assert settled["status"] == "unknown" and sent_to(graph_api, pnid) == []


async def _reply_lost_before_it_left(tenant: Tenant, graph_api: HttpPeer, db, *, failed_callback=None):
    """A reply recorded `sending` a minute ago whose request never left; callbacks of the channel flow."""
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    workspace = uuid.UUID(tenant.workspace_id)
    # The channel's callbacks flow: one arrives (for an earlier message of another system, say).
    response = await post_signed(
        tenant,
        channel["id"],
        callback_envelope(phone_number_id=pnid, wamid="wamid.other.1", status="delivered", callback_data="x"),
    )
    assert response.status_code == 200
    if failed_callback is not None:  # what Statuses notes when applying a callback raised (set first:
        # the row below is already past the evidence window, so recovery may decide on it at once)
        await failed_callback.set(failed_callbacks_key(channel["id"]), repr(time.time()), ex=600)
    contact = await db.fetchval(
        "INSERT INTO contacts (id, workspace, phone) VALUES (gen_random_uuid(), $1, '15550005555') RETURNING id",
        workspace,
    )
    conversation = await db.fetchval(
        "INSERT INTO conversations (id, workspace, channel, contact) VALUES (gen_random_uuid(), $1, $2, $3) "
        "RETURNING id",
        workspace,
        uuid.UUID(channel["id"]),
        contact,
    )
    lost = await db.fetchval(
        "INSERT INTO messages (id, workspace, conversation, channel, direction, type, text, message_type, status, "
        "dedupe_key, created_at, processed_at, status_at) VALUES (gen_random_uuid(), $1, $2, $3, 'out', 'text', "
        "'Lost before it left.', 'support', 'sending', $4, now() - interval '1 minute', now(), "
        "now() - interval '1 minute') RETURNING id",
        workspace,
        conversation,
        uuid.UUID(channel["id"]),
        f"lost:{uuid.uuid4().hex}",
    )
    return pnid, lost
