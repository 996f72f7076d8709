"""Flows in the service: seed scenarios end to end, versions and rollback, import/export (API and CLI)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.integration.test_message_path import keyword_flow
from tests.support.stack import ROOT, Stack, Tenant, create_tenant, run_cli, wait_until

pytestmark = pytest.mark.slow

EXAMPLES = ROOT / "flows" / "examples"


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.flow.json").read_text())


async def conversation_of(tenant: Tenant, db, phone: str) -> str:
    return str(
        await wait_until(
            lambda: db.fetchval(
                "SELECT c.id FROM conversations c JOIN contacts p ON p.id = c.contact "
                "WHERE c.workspace = $1 AND p.phone = $2",
                uuid.UUID(tenant.workspace_id),
                phone,
            ),
            what=f"the conversation of {phone}",
        )
    )


async def replies(tenant: Tenant, conversation_id: str, count: int) -> list[dict]:
    async def outbound():
        detail = (await tenant.http.get(f"/api/conversations/{conversation_id}")).json()
        out = [m for m in detail["messages"] if m["direction"] == "out"]
        return out if len(out) >= count else None

    return await wait_until(outbound, what=f"{count} replies")


async def test_seed_scenarios_end_to_end(tenant: Tenant, db, redis) -> None:
    documents = [example(n) for n in ("premium-support", "spanish-support", "human-handoff")]
    imported = await tenant.http.post("/api/flows/import", json=documents)
    assert imported.status_code == 201, imported.text
    assert len(imported.json()["created"]) == 3
    channel = await tenant.generic_channel()

    # Premium support: custom prompt + context + message.
    assert (
        await tenant.send_generic(channel, text="I need help with my order", sender="+1555100")
    ).status_code == 200
    premium = await conversation_of(tenant, db, "+1555100")
    [reply] = await replies(tenant, premium, 1)
    assert reply["text"] == "I've escalated your request."
    assert json.loads(await redis.get(f"ai_control_{premium}")) == {
        "ai_enabled": True,
        "custom_prompt": "You are a premium assistant for Ada.",
    }
    assert json.loads(await redis.get(f"ai_context_{premium}")) == {"support_tier": "premium"}
    assert 0 < await redis.ttl(f"ai_context_{premium}") <= 86400

    # Spanish support: custom prompt and context, then the AI (offline fallback text) answers.
    await tenant.send_generic(channel, text="hola, necesito ayuda", sender="+1555200", first_name="Lucía")
    spanish = await conversation_of(tenant, db, "+1555200")
    [answer] = await replies(tenant, spanish, 1)
    assert answer["message_type"] == "ai"
    control = json.loads(await redis.get(f"ai_control_{spanish}"))
    assert (
        control["ai_enabled"] is True
        and "Lucía" in control["custom_prompt"]
        and "español" in control["custom_prompt"]
    )
    assert json.loads(await redis.get(f"ai_context_{spanish}")) == {"language": "es"}

    # Human hand-off: AI off, status set, tagged, told.
    await tenant.send_generic(channel, text="can I talk to a human?", sender="+1555300")
    handoff = await conversation_of(tenant, db, "+1555300")
    [told] = await replies(tenant, handoff, 1)
    assert told["text"] == "A member of our team will take over shortly, Ada."
    assert json.loads(await redis.get(f"ai_control_{handoff}")) == {
        "ai_enabled": False,
        "custom_prompt": None,
    }
    detail = (await tenant.http.get(f"/api/conversations/{handoff}")).json()
    assert detail["status"] == "pending" and detail["tags"] == ["handoff"]

    # With the AI off, a later message gets no AI answer.
    await tenant.send_generic(channel, text="hello? anyone?", sender="+1555300")
    await wait_until(
        lambda: db.fetchval(
            "SELECT count(*) = 2 FROM runs WHERE conversation = $1 AND status = 'completed'",
            uuid.UUID(handoff),
        ),
        what="the second turn",
    )
    assert (
        len(
            [
                m
                for m in (await tenant.http.get(f"/api/conversations/{handoff}")).json()["messages"]
                if m["direction"] == "out"
            ]
        )
        == 1
    )


async def test_publish_and_rollback_change_which_version_runs(tenant: Tenant, db) -> None:
    flow = await tenant.create_flow(keyword_flow(keywords=["version"], reply="one", disable_ai=False))
    assert flow["version"] == 1 and flow["status"] == "active"
    draft = flow["document"]
    draft["nodes"][1]["config"]["text"] = "two"
    saved = await tenant.http.put(f"/api/flows/{flow['id']}", json=draft)
    assert saved.status_code == 200 and saved.json()["active_version"] == 1  # a draft does not run yet
    published = await tenant.http.post(f"/api/flows/{flow['id']}/publish")
    assert published.json()["version"] == 2
    versions = (await tenant.http.get(f"/api/flows/{flow['id']}/versions")).json()
    assert [(v["version"], v["active"], v["created_by"]) for v in versions] == [
        (2, True, tenant.email),
        (1, False, tenant.email),
    ]

    channel = await tenant.generic_channel()
    await tenant.send_generic(channel, text="which version?", sender="+1555400")
    conversation = await conversation_of(tenant, db, "+1555400")
    assert [m["text"] for m in await replies(tenant, conversation, 1)] == ["two"]
    run = await wait_until(
        lambda: db.fetchrow(
            "SELECT flows FROM runs WHERE conversation = $1 AND status = 'completed'", uuid.UUID(conversation)
        ),
        what="the run",
    )
    assert json.loads(run["flows"]) == [{"flow_id": flow["id"], "version": 2}]

    rolled = await tenant.http.post(f"/api/flows/{flow['id']}/rollback", json={"version": 1})
    assert rolled.status_code == 200 and rolled.json()["active_version"] == 1
    await tenant.send_generic(channel, text="and now which version?", sender="+1555400")
    assert [m["text"] for m in await replies(tenant, conversation, 2)] == ["two", "one"]


async def test_paused_flow_does_not_run(tenant: Tenant, db) -> None:
    flow = await tenant.create_flow(
        keyword_flow(keywords=["paused"], reply="should not be sent", disable_ai=False)
    )
    paused = await tenant.http.post(f"/api/flows/{flow['id']}/status", json={"status": "paused"})
    assert paused.json()["status"] == "paused"
    channel = await tenant.generic_channel()
    await tenant.send_generic(channel, text="paused?", sender="+1555500")
    conversation = await conversation_of(tenant, db, "+1555500")
    [reply] = await replies(tenant, conversation, 1)
    assert reply["message_type"] == "ai"  # the core-intent fallback answered, not the paused flow


async def test_invalid_documents_are_refused_with_node_and_field(tenant: Tenant) -> None:
    document = keyword_flow(keywords=["x"], reply="y")
    document["nodes"][1]["config"]["colour"] = "red"
    document["edges"].append({"from": "send", "to": "ghost"})
    response = await tenant.http.post("/api/flows", json=document)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert any(e["node_id"] == "send" and "colour" in (e["field"] or "") for e in errors)
    assert any("ghost" in e["message"] for e in errors)
    assert (await tenant.http.get("/api/flows")).json() == []

    broken = await tenant.http.post(
        "/api/flows", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]


async def test_import_is_all_or_nothing_and_export_round_trips(stack: Stack, tenant: Tenant) -> None:
    good = example("premium-support")
    bad = example("human-handoff")
    bad["nodes"][0]["type"] = "when.nonsense"
    refused = await tenant.http.post("/api/flows/import", json=[good, bad])
    assert refused.status_code == 422
    [report] = refused.json()["errors"]
    assert report["index"] == 1 and report["errors"][0]["node_id"] == "trigger"
    assert (await tenant.http.get("/api/flows")).json() == []

    created = (await tenant.http.post("/api/flows/import", json=good)).json()["created"]
    exported = await tenant.http.get(f"/api/flows/{created[0]}/export")
    assert exported.headers["content-disposition"] == 'attachment; filename="premium-support.flow.json"'
    assert exported.content == (EXAMPLES / "premium-support.flow.json").read_bytes()

    other = await create_tenant(stack)
    try:
        again = (
            await other.http.post(
                "/api/flows/import", content=exported.content, headers={"Content-Type": "application/json"}
            )
        ).json()["created"]
        assert (await other.http.get(f"/api/flows/{again[0]}/export")).content == exported.content
    finally:
        await other.aclose()


async def test_webhook_secrets_are_references_in_storage_and_exports(tenant: Tenant, db) -> None:
    document = example("create-order-webhook")
    document["nodes"][1]["config"]["auth"] = {"type": "bearer", "secret": "shop-token-123"}
    flow = await tenant.create_flow(document)
    stored_auth = flow["document"]["nodes"][1]["config"]["auth"]
    assert stored_auth["secret"].startswith("secret://")
    exported = (await tenant.http.get(f"/api/flows/{flow['id']}/export")).text
    assert "shop-token-123" not in exported and stored_auth["secret"] in exported
    rows = await db.fetch(
        "SELECT draft::text AS d FROM flows WHERE id = $1 UNION ALL "
        "SELECT document::text FROM flow_versions WHERE flow = $1 UNION ALL "
        "SELECT value_enc FROM secrets WHERE workspace = $2",
        uuid.UUID(flow["id"]),
        uuid.UUID(tenant.workspace_id),
    )
    assert rows and all("shop-token-123" not in r["d"] for r in rows)


async def test_cli_export_then_import(stack: Stack, tenant: Tenant, tmp_path: Path) -> None:
    for name in ("premium-support", "human-handoff"):
        await tenant.create_flow(example(name))
    out = run_cli(stack, "flows", "export", str(tmp_path), "--email", tenant.email)
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["human-hand-off.flow.json", "premium-support.flow.json"]
    assert (tmp_path / "premium-support.flow.json").read_bytes() == (
        EXAMPLES / "premium-support.flow.json"
    ).read_bytes()

    other = await create_tenant(stack)
    try:
        result = run_cli(
            stack, "flows", "import", *(str(p) for p in sorted(tmp_path.iterdir())), "--email", other.email
        )
        assert result.returncode == 0, result.stderr
        names = sorted(f["name"] for f in (await other.http.get("/api/flows")).json())
        assert names == ["Human hand-off", "Premium support"]
        broken = tmp_path / "broken.flow.json"
        broken.write_text(json.dumps({**example("premium-support"), "edges": [{"from": "n1", "to": "zz"}]}))
        failed = run_cli(stack, "flows", "import", str(broken), "--email", other.email)
        assert failed.returncode == 1 and "zz" in failed.stderr and "nothing was imported" in failed.stderr
    finally:
        await other.aclose()
