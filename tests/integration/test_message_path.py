"""One inbound WhatsApp message all the way through: webhook, buffer, worker, flow, reply, records."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from app.services.channels.signatures import sign_sha256
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse
from tests.support.stack import Stack, Tenant, wait_until
from tests.support.whatsapp import status_envelope, text_envelope

pytestmark = pytest.mark.slow

APP_SECRET = "meta-app-secret"


def keyword_flow(
    *, keywords: list[str], reply: str, name: str = "Help desk", disable_ai: bool = True
) -> dict:
    nodes = [
        {
            "id": "t",
            "type": "when.message_received",
            "config": {"match": {"kind": "keywords", "keywords": keywords}},
            "position": {"x": 0, "y": 0},
        },
        {"id": "send", "type": "action.send_message", "config": {"text": reply, "message_type": "support"}},
    ]
    edges = [{"from": "t", "to": "send"}]
    if disable_ai:
        nodes.append({"id": "off", "type": "action.control_ai_response", "config": {"action": "disable"}})
        edges.append({"from": "send", "to": "off"})
    return {"schema": "switchboard.flow/v1", "name": name, "status": "active", "nodes": nodes, "edges": edges}


async def post_signed(
    tenant: Tenant, channel_id: str, payload: dict, *, secret: str = APP_SECRET
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await tenant.http.post(
        f"/webhooks/whatsapp/{channel_id}",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign_sha256(secret, body)},
    )


async def whatsapp_channel(tenant: Tenant, graph_api: HttpPeer) -> dict:
    phone_number_id = str(uuid.uuid4().int)[:15]
    counter = iter(range(1, 10_000))

    async def send(request: PeerRequest) -> PeerResponse:
        body = request.json()
        return PeerResponse.json(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": f"wamid.out.{phone_number_id}.{next(counter)}"}],
            }
        )

    graph_api.route("POST", f"/{phone_number_id}/messages", send)
    return await tenant.create_channel(
        kind="whatsapp",
        name="Main number",
        phone_number_id=phone_number_id,
        access_token="EAAG-token",
        app_secret=APP_SECRET,
        verify_token="verify-me",
    )


async def stored_reply_wamid(tenant: Tenant, db) -> str:
    """The wamid of the workspace's reply, once the Graph API's answer is stored."""
    return await wait_until(
        lambda: db.fetchval(
            "SELECT provider_message_id FROM messages WHERE workspace = $1 AND direction = 'out' "
            "AND provider_message_id IS NOT NULL",
            uuid.UUID(tenant.workspace_id),
        ),
        what="the stored wamid",
    )


def sent_to(graph_api: HttpPeer, phone_number_id: str) -> list[PeerRequest]:
    return graph_api.requests_to(f"/{phone_number_id}/messages")


async def test_verification_handshake(tenant: Tenant, graph_api: HttpPeer) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    ok = await tenant.http.get(
        f"/webhooks/whatsapp/{channel['id']}",
        params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"},
    )
    assert ok.status_code == 200 and ok.text == "1158201444"
    wrong = await tenant.http.get(
        f"/webhooks/whatsapp/{channel['id']}",
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"},
    )
    assert wrong.status_code == 403
    assert "verify token" in wrong.json()["error"]


async def test_channel_secrets_are_write_only_and_encrypted(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    assert "access_token" not in channel and "app_secret" not in channel and channel["has_app_secret"] is True
    listed = (await tenant.http.get("/api/channels")).json()
    assert APP_SECRET not in json.dumps(listed)
    row = await db.fetchrow(
        "SELECT access_token_enc, app_secret_enc FROM channels WHERE id = $1", uuid.UUID(channel["id"])
    )
    assert row["app_secret_enc"] and APP_SECRET not in row["app_secret_enc"]
    assert "EAAG-token" not in row["access_token_enc"]


async def test_keyword_message_end_to_end(tenant: Tenant, graph_api: HttpPeer, db, redis) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(
        keyword_flow(keywords=["help"], reply="Hi {{ contact.first_name }}, a human will reply.")
    )
    response = await post_signed(
        tenant,
        channel["id"],
        text_envelope(phone_number_id=pnid, sender="15551234567", text="I need HELP please"),
    )
    assert response.status_code == 200 and response.json()["received"] == 1

    [reply] = await wait_until(lambda: sent_to(graph_api, pnid), what="the reply at the Graph API")
    body = reply.json()
    assert body["to"] == "15551234567" and body["text"]["body"] == "Hi Sheena, a human will reply."
    assert reply.headers["authorization"] == "Bearer EAAG-token"

    conversation_id = await db.fetchval(
        "SELECT id FROM conversations WHERE workspace = $1", uuid.UUID(tenant.workspace_id)
    )
    # The flow turns the AI off after its reply went out: wait for that, as for the reply.
    control = json.loads(
        await wait_until(lambda: redis.get(f"ai_control_{conversation_id}"), what="the AI control key")
    )
    assert control == {"ai_enabled": False, "custom_prompt": None}
    assert 0 < await redis.ttl(f"ai_control_{conversation_id}") <= 24 * 3600

    async def stored_reply():
        return await db.fetchrow(
            "SELECT status, provider_message_id FROM messages WHERE conversation = $1 AND "
            "direction = 'out' AND status = 'sent'",
            conversation_id,
        )

    out = await wait_until(stored_reply, what="the outbound message stored with its wamid")
    assert out["provider_message_id"].startswith(f"wamid.out.{pnid}.")
    # The run is completed just after its reply went out: wait for it, as for the reply.
    run = await wait_until(
        lambda: db.fetchrow(
            "SELECT status, layer FROM runs WHERE conversation = $1 AND status <> 'running'", conversation_id
        ),
        what="the run finished",
    )
    assert run["status"] == "completed" and run["layer"] == "trigger"
    assert await db.fetchval("SELECT count(*) FROM runs WHERE conversation = $1", conversation_id) == 1
    detail = (await tenant.http.get(f"/api/conversations/{conversation_id}")).json()
    assert [m["direction"] for m in detail["messages"]] == ["in", "out"]
    assert detail["ai"]["ai_enabled"] is False


async def test_burst_makes_one_batch_and_one_reply(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(
        keyword_flow(keywords=["order"], reply="Got your order details.", disable_ai=False)
    )
    # Posted together, as a customer's burst reaches us: one after the other, a loaded machine could
    # leave a 0.4 s quiet gap between two of them (the buffer window), which is a second batch by design.
    answers = await asyncio.gather(
        *(
            post_signed(
                tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15550001111", text=text)
            )
            for text in ["hello", "about my order", "number 42", "it is late", "thanks"]
        )
    )
    assert [a.status_code for a in answers] == [200] * 5
    conversation_id = await db.fetchval(
        "SELECT id FROM conversations WHERE workspace = $1", uuid.UUID(tenant.workspace_id)
    )

    async def all_processed(count: int) -> bool:
        # A run marks its messages processed in the statement that completes it, after its replies went
        # out: once every message is processed, every run and reply of them is there to count.
        return await db.fetchval(
            "SELECT count(*) = $2 FROM messages WHERE conversation = $1 AND direction = 'in' "
            "AND processed_at IS NOT NULL",
            conversation_id,
            count,
        )

    await wait_until(lambda: all_processed(5), what="the burst processed")
    runs = await db.fetch(
        "SELECT message_ids FROM runs WHERE conversation = $1 AND status = 'completed'", conversation_id
    )
    assert len(runs) == 1 and len(json.loads(runs[0]["message_ids"])) == 5
    assert len(sent_to(graph_api, pnid)) == 1

    # A second burst after the window is a second batch.
    await post_signed(
        tenant,
        channel["id"],
        text_envelope(phone_number_id=pnid, sender="15550001111", text="another order question"),
    )
    await wait_until(lambda: all_processed(6), what="the second burst processed")
    count = await db.fetchval(
        "SELECT count(*) FROM runs WHERE conversation = $1 AND status = 'completed'", conversation_id
    )
    assert count == 2 and len(sent_to(graph_api, pnid)) == 2


async def test_chatty_sender_is_capped_by_max_window(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    """Messages every 0.2 s never leave a 0.4 s quiet gap; the 1.5 s cap still flushes."""
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["ping"], reply="pong", disable_ai=False))
    started = time.monotonic()
    first_reply_at = None
    while time.monotonic() - started < 3.5:
        await post_signed(
            tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15550002222", text="ping")
        )
        if first_reply_at is None and sent_to(graph_api, pnid):
            first_reply_at = time.monotonic() - started
        await asyncio.sleep(0.2)
    assert first_reply_at is not None, "the cap never flushed a batch while the sender kept talking"
    conversation_id = await db.fetchval(
        "SELECT id FROM conversations WHERE workspace = $1", uuid.UUID(tenant.workspace_id)
    )
    # The sender never paused for the quiet time, so every batch was cut by the cap.
    await wait_until(
        lambda: db.fetchval(
            "SELECT count(*) >= 2 FROM runs WHERE conversation = $1 AND status = 'completed'", conversation_id
        ),
        what="a second capped batch",
    )


async def test_duplicate_delivery_is_stored_and_processed_once(
    tenant: Tenant, graph_api: HttpPeer, db, redis
) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["refund"], reply="Refund noted.", disable_ai=False))
    payload = text_envelope(phone_number_id=pnid, sender="15550003333", text="refund", wamid="wamid.dup.1")
    results = await asyncio.gather(*[post_signed(tenant, channel["id"], payload) for _ in range(4)])
    assert all(r.status_code == 200 for r in results)
    assert sum(r.json()["received"] for r in results) == 4
    assert sum(r.json()["duplicates"] for r in results) == 3
    await wait_until(lambda: sent_to(graph_api, pnid), what="the reply")
    stored = await db.fetch(
        "SELECT conversation, processed_at FROM messages WHERE provider_message_id = 'wamid.dup.1'"
    )
    assert len(stored) == 1
    conversation_id = str(stored[0]["conversation"])
    await wait_until(
        lambda: db.fetchval(
            "SELECT count(*) = 1 FROM runs WHERE conversation = $1 AND status = 'completed'",
            stored[0]["conversation"],
        ),
        what="the run",
    )
    # Nothing else is signalled or scheduled for this conversation: no second batch can follow.
    assert await redis.zscore("sb:due", conversation_id) is None
    assert await redis.llen(f"sb:buf:{conversation_id}") == 0
    assert len(sent_to(graph_api, pnid)) == 1


async def test_signature_is_required(tenant: Tenant, graph_api: HttpPeer) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    payload = text_envelope(phone_number_id=channel["phone_number_id"], sender="1555", text="hi")
    body = json.dumps(payload).encode()
    missing = await tenant.http.post(f"/webhooks/whatsapp/{channel['id']}", content=body)
    assert missing.status_code == 401 and "X-Hub-Signature-256" in missing.json()["error"]
    tampered = await tenant.http.post(
        f"/webhooks/whatsapp/{channel['id']}",
        content=body.replace(b"hi", b"ho"),
        headers={"X-Hub-Signature-256": sign_sha256(APP_SECRET, body)},
    )
    assert tampered.status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        (b"{not json", 400, "JSON"),
        (b'{"object": "instagram", "entry": []}', 400, "whatsapp_business_account"),
        (b'{"object": "whatsapp_business_account", "entry": "x"}', 400, "entry"),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    tenant: Tenant, graph_api: HttpPeer, body: bytes, status: int, phrase: str
) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    response = await tenant.http.post(
        f"/webhooks/whatsapp/{channel['id']}",
        content=body,
        headers={"X-Hub-Signature-256": sign_sha256(APP_SECRET, body)},
    )
    assert response.status_code == status
    assert phrase in response.json()["error"]


async def test_unknown_channel_and_oversized_body(tenant: Tenant) -> None:
    unknown = await tenant.http.post(f"/webhooks/whatsapp/{uuid.uuid4()}", content=b"{}")
    assert unknown.status_code == 404 and "channel" in unknown.json()["error"]
    huge = b'{"object": "whatsapp_business_account", "pad": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    too_big = await tenant.http.post(f"/webhooks/whatsapp/{uuid.uuid4()}", content=huge)
    assert too_big.status_code == 413


async def test_status_callbacks_move_forward_only(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["status"], reply="Status reply", disable_ai=False))
    await post_signed(
        tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15550004444", text="status")
    )

    out_id = await stored_reply_wamid(tenant, db)
    # read arrives before delivered; the late "delivered" and "sent" must not move it back.
    for status in ["read", "delivered", "sent"]:
        r = await post_signed(
            tenant,
            channel["id"],
            status_envelope(phone_number_id=pnid, wamid=out_id, status=status, recipient="15550004444"),
        )
        assert r.status_code == 200 and r.json()["statuses"] == 1
    assert await db.fetchval("SELECT status FROM messages WHERE provider_message_id = $1", out_id) == "read"
    # Statuses never start a turn.
    count = await db.fetchval(
        "SELECT count(*) FROM runs WHERE workspace = $1", uuid.UUID(tenant.workspace_id)
    )
    assert count == 1


async def test_failed_status_keeps_the_error(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await tenant.create_flow(keyword_flow(keywords=["fail"], reply="This will fail", disable_ai=False))
    await post_signed(
        tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15550005555", text="fail")
    )

    out_id = await stored_reply_wamid(tenant, db)
    await post_signed(
        tenant,
        channel["id"],
        status_envelope(phone_number_id=pnid, wamid=out_id, status="failed", recipient="15550005555"),
    )
    row = await db.fetchrow("SELECT status, error FROM messages WHERE provider_message_id = $1", out_id)
    assert row["status"] == "failed" and json.loads(row["error"])["errors"][0]["code"] == 131049


async def test_workspace_isolation(stack: Stack, tenant: Tenant, graph_api: HttpPeer, db) -> None:
    from tests.support.stack import create_tenant

    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    await post_signed(
        tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15550006666", text="hi")
    )
    conversation_id = str(
        await wait_until(
            lambda: db.fetchval(
                "SELECT id FROM conversations WHERE workspace = $1", uuid.UUID(tenant.workspace_id)
            ),
            what="conversation",
        )
    )
    other = await create_tenant(stack)
    try:
        assert (await other.http.get(f"/api/channels/{channel['id']}")).status_code == 404
        assert (await other.http.get(f"/api/conversations/{conversation_id}")).status_code == 404
        assert (await other.http.get(f"/api/conversations/{conversation_id}/messages")).status_code == 404
        assert (await other.http.get("/api/conversations")).json() == []
        assert (await tenant.http.get(f"/api/conversations/{conversation_id}")).status_code == 200
    finally:
        await other.aclose()


async def test_health_reports_each_dependency(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        health = await client.get(f"{stack.base_url}/health")
    assert health.status_code == 200
    assert health.json() == {"database": "ok", "redis": "ok", "queue": "ok"}


async def test_api_requires_a_valid_token(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        assert (await client.get("/api/flows")).status_code == 401
        bad = await client.get("/api/flows", headers={"Authorization": "Bearer sb_nope"})
        assert bad.status_code == 401 and "token" in bad.json()["error"]


async def test_unknown_message_types_are_stored_as_unsupported(
    tenant: Tenant, graph_api: HttpPeer, db
) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    envelope = text_envelope(phone_number_id=channel["phone_number_id"], sender="15550007777", text="x")
    message = envelope["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="hologram", hologram={"id": "H1"})
    response = await post_signed(tenant, channel["id"], envelope)
    assert response.status_code == 200 and response.json()["received"] == 1
    row = await db.fetchrow(
        "SELECT type, text, payload::text AS payload FROM messages WHERE provider_message_id = $1",
        message["id"],
    )
    assert row["type"] == "unsupported" and "hologram" in row["text"]
    assert json.loads(row["payload"])["hologram"] == {"id": "H1"}  # the original is kept


async def test_console_channel_prints_replies_and_takes_local_unsigned_messages(
    stack: Stack, tenant: Tenant, db
) -> None:
    channel = await tenant.create_channel(kind="console", name="Terminal")
    await tenant.create_flow(keyword_flow(keywords=["console"], reply="Printed for you.", disable_ai=False))
    body = json.dumps({"message_id": uuid.uuid4().hex, "from": "+1555000", "text": "console test"}).encode()
    response = await tenant.http.post(
        f"/webhooks/generic/{channel['id']}", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    await wait_until(
        lambda: "-> +1555000: Printed for you." in stack.worker.log_path.read_text(errors="replace"),
        what="the reply printed by the worker",
    )


async def test_graph_api_errors_are_retried_then_recorded(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    """503 and 429 are retried with backoff; a 400 is final and kept on the message."""
    phone_number_id = str(uuid.uuid4().int)[:15]
    graph_api.sequence(
        "POST",
        f"/{phone_number_id}/messages",
        [
            PeerResponse.json({"error": {"message": "busy"}}, status=503),
            PeerResponse.json({"error": {"message": "slow down"}}, status=429),
            PeerResponse.json({"messaging_product": "whatsapp", "messages": [{"id": "wamid.after.retries"}]}),
            PeerResponse.json({"error": {"message": "(#100) Invalid parameter", "code": 100}}, status=400),
        ],
    )
    channel = await tenant.create_channel(
        kind="whatsapp",
        name="Flaky number",
        phone_number_id=phone_number_id,
        access_token="EAAG-token",
        app_secret=APP_SECRET,
        verify_token="v",
    )
    await tenant.create_flow(keyword_flow(keywords=["retry"], reply="Made it.", disable_ai=False))
    await post_signed(
        tenant,
        channel["id"],
        text_envelope(phone_number_id=phone_number_id, sender="15551110000", text="retry please"),
    )
    sent = await wait_until(
        lambda: db.fetchrow(
            "SELECT status, provider_message_id FROM messages WHERE workspace = $1 AND direction = 'out' AND "
            "status = 'sent'",
            uuid.UUID(tenant.workspace_id),
        ),
        what="the reply sent after two retries",
    )
    assert sent["provider_message_id"] == "wamid.after.retries"
    assert len(sent_to(graph_api, phone_number_id)) == 3

    await post_signed(
        tenant,
        channel["id"],
        text_envelope(phone_number_id=phone_number_id, sender="15551110000", text="retry again"),
    )
    failed = await wait_until(
        lambda: db.fetchrow(
            "SELECT error::text AS error FROM messages WHERE workspace = $1 AND direction = 'out' AND "
            "status = 'failed'",
            uuid.UUID(tenant.workspace_id),
        ),
        what="the refused reply recorded",
    )
    assert "Invalid parameter" in failed["error"] and len(sent_to(graph_api, phone_number_id)) == 4


async def test_a_nul_character_does_not_break_ingress(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    """JSON allows \\u0000, PostgreSQL does not: the message is stored without it, and others are unaffected."""
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    bad = text_envelope(phone_number_id=pnid, sender="15552220000", text="hello\u0000world")
    good = [text_envelope(phone_number_id=pnid, sender=f"1555222{i:04d}", text="fine") for i in range(1, 6)]
    responses = await asyncio.gather(*(post_signed(tenant, channel["id"], p) for p in [bad, *good]))
    assert [r.status_code for r in responses] == [200] * 6
    wamid = bad["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert (
        await db.fetchval("SELECT text FROM messages WHERE provider_message_id = $1", wamid) == "helloworld"
    )


async def test_api_is_documented_at_schema(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        spec = (await client.get("/schema/openapi.json")).json()
        docs = await client.get("/schema/swagger")
    paths = spec["paths"]
    for path in (
        "/api/flows",
        "/api/flows/{flow_id}/rollback",
        "/api/channels",
        "/api/tester/run",
        "/api/conversations/{conversation_id}",
        "/api/actions/{flow_id}/{node_id}/logs",
        "/webhooks/whatsapp/{channel_id}",
        "/webhooks/generic/{channel_id}",
        "/health",
    ):
        assert path in paths, path
    assert docs.status_code == 200


async def test_patching_a_conversation_answers_with_the_updated_conversation(
    tenant: Tenant, graph_api: HttpPeer
) -> None:
    """PATCH /api/conversations/{id} changes status and tags and answers with the conversation."""
    channel = await whatsapp_channel(tenant, graph_api)
    pnid = channel["phone_number_id"]
    response = await post_signed(
        tenant, channel["id"], text_envelope(phone_number_id=pnid, sender="15559990001", text="hello there")
    )
    assert response.status_code == 200
    [conversation] = (await tenant.http.get("/api/conversations")).json()
    patched = await tenant.http.patch(
        f"/api/conversations/{conversation['id']}", json={"status": "pending", "add_tags": ["vip"]}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["id"], body["status"], body["tags"]) == (conversation["id"], "pending", ["vip"])
    assert [m["text"] for m in body["messages"]] == ["hello there"]
