"""The editor's dead ends and silent refusals, over HTTP: every node form opens, refusals say why, drafts save."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import httpx

from flows.nodes.registry import NODE_TYPES
from tests.support.stack import Tenant, wait_until

PASSWORD = "correct horse battery"


async def logged_in(tenant: Tenant) -> tuple[httpx.AsyncClient, str]:
    client = httpx.AsyncClient(base_url=tenant.stack.base_url, timeout=30.0)
    token = re.search(r'name="csrf-token" content="([^"]+)"', (await client.get("/login")).text).group(1)
    response = await client.post("/login", data={"email": tenant.email, "password": PASSWORD, "_csrf": token})
    assert response.status_code in (302, 303)
    flows = await client.get("/flows")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', flows.text).group(1)
    return client, csrf


async def post_form(
    client: httpx.AsyncClient, url: str, items: list[tuple[str, str]], csrf: str, *, htmx: bool = True
) -> httpx.Response:
    """A form post with repeated keys (httpx's `data=` takes a dict only)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": csrf}
    if htmx:
        headers["HX-Request"] = "true"
    return await client.post(url, content=urlencode(items), headers=headers)


def _palette(html: str) -> dict[str, dict]:
    raw = re.search(r'<script type="application/json" id="node-types">(.*?)</script>', html, re.S).group(1)
    return {t["type"]: t for t in json.loads(raw)}


async def test_every_palette_node_opens_from_its_starting_config(tenant: Tenant) -> None:
    client, csrf = await logged_in(tenant)
    try:
        created = await client.post("/flows", data={"name": "Palette", "_csrf": csrf}, follow_redirects=True)
        palette = _palette(created.text)
        assert set(palette) == set(NODE_TYPES)
        for type_, entry in palette.items():
            form = await client.post(
                "/editor/node-form",
                headers={"HX-Request": "true", "X-CSRF-Token": csrf},
                data={"node_id": "n9", "type": type_, "config": json.dumps(entry["defaults"])},
            )
            assert form.status_code == 200, (type_, form.status_code, form.text[:300])
            assert 'id="node-form"' in form.text
    finally:
        await client.aclose()


def _confirming_webhook() -> list[tuple[str, str]]:
    return [
        ("_node_id", "n2"),
        ("_type", "action.call_webhook"),
        ("_variables", "[]"),
        ("method", "POST"),
        ("url", "https://shop.example/orders"),
        ("auth.type", "none"),
        ("timeout_seconds:float", "2.5"),
        ("max_retries:int", "3"),
        ("retry_delay_seconds:float", "0.5"),
        ("requires_confirmation:bool", "false"),
        ("requires_confirmation:bool", "true"),
        ("confirmation_message", "Shall I place the order?"),
    ]


async def test_confirmation_in_the_node_form_is_kept_not_dropped(tenant: Tenant) -> None:
    client, csrf = await logged_in(tenant)
    try:
        saved = await post_form(client, "/editor/node-form/save", _confirming_webhook(), csrf)
        assert saved.status_code == 200, saved.text
        applied = json.loads(saved.headers["HX-Trigger"])["sb:node-config"]
        assert applied["config"]["requires_confirmation"] is True
        assert applied["config"]["timeout_seconds"] == 2.5
        assert applied["config"]["retry_delay_seconds"] == 0.5
    finally:
        await client.aclose()


async def test_a_refused_node_form_says_why_in_plain_words(tenant: Tenant) -> None:
    client, csrf = await logged_in(tenant)
    try:
        refused = await post_form(
            client,
            "/editor/node-form/save",
            [("_node_id", "n3"), ("_type", "action.send_message"), ("text", ""), ("message_type", "support")],
            csrf,
        )
        assert refused.status_code == 422
        assert "Write the message to send" in refused.text
        assert "Expected `str`" not in refused.text
    finally:
        await client.aclose()


async def test_action_builder_saves_an_action_that_asks_to_confirm_first(tenant: Tenant) -> None:
    client, csrf = await logged_in(tenant)
    try:
        created = await post_form(
            client,
            "/actions/new",
            [
                ("trigger.match.display_name", "Create order"),
                ("trigger.match.confidence_threshold:float", "0.65"),
                ("trigger.match.training_examples[].text", "I want to order two pizzas"),
                ("trigger.match.training_examples[].language", "en"),
                ("webhook.url", "https://shop.example/orders"),
                ("webhook.method", "POST"),
                ("webhook.requires_confirmation:bool", "false"),
                ("webhook.requires_confirmation:bool", "true"),
                ("webhook.confirmation_message", "Shall I?"),
            ],
            csrf,
            htmx=False,
        )
        assert created.status_code in (302, 303), created.text[:2000]
        flows = (await tenant.http.get("/api/flows")).json()
        (flow,) = [f for f in flows if f["name"] == "Create order"]
        nodes = {n["type"]: n["config"] for n in flow["document"]["nodes"]}
        assert nodes["action.call_webhook"]["requires_confirmation"] is True
        assert nodes["when.message_received"]["match"]["confidence_threshold"] == 0.65
    finally:
        await client.aclose()


async def test_action_builder_refusal_is_visible(tenant: Tenant) -> None:
    client, csrf = await logged_in(tenant)
    try:
        refused = await post_form(
            client,
            "/actions/new",
            [("trigger.match.display_name", "Nothing"), ("webhook.url", "ftp://x")],
            csrf,
            htmx=False,
        )
        assert refused.status_code == 422
        assert 'id="form-errors"' in refused.text
        assert "http://" in refused.text and "training example" in refused.text
    finally:
        await client.aclose()


async def test_patch_conversation_answers_the_updated_conversation(tenant: Tenant) -> None:
    channel = await tenant.generic_channel()
    assert (await tenant.send_generic(channel, text="hello")).status_code == 200

    async def conversation() -> dict | None:
        listed = (await tenant.http.get("/api/conversations")).json()
        return listed[0] if listed else None

    first = await wait_until(conversation, what="a conversation")
    patched = await tenant.http.patch(
        f"/api/conversations/{first['id']}", json={"status": "pending", "add_tags": ["vip"]}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["status"] == "pending" and "vip" in body["tags"]


async def test_unknown_urls_give_a_page_to_browsers_and_json_to_api_clients(tenant: Tenant) -> None:
    async with httpx.AsyncClient(base_url=tenant.stack.base_url) as anonymous:
        page = await anonymous.get("/no/such/page", headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert 'id="error"' in page.text and "There is no page at /no/such/page" in page.text
        api = await anonymous.get("/api/no/such/thing", headers={"Accept": "application/json"})
        assert api.status_code == 404 and api.json()["error"]
        plain = await anonymous.get("/no/such/page")
        assert plain.status_code == 404 and plain.json()["error"]


def _intent_condition_webhook(url: str) -> dict:
    return {
        "schema": "switchboard.flow/v1",
        "name": "Guarded order",
        "status": "active",
        "priority": 5,
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {
                    "match": {
                        "kind": "intent",
                        "display_name": "Guarded order",
                        "training_examples": [{"text": "I want to order pizza", "language": "en"}],
                    }
                },
            },
            {"id": "c", "type": "logic.condition", "config": {"left": "1", "op": "equals", "right": "1"}},
            {"id": "w", "type": "action.call_webhook", "config": {"url": url}},
        ],
        "edges": [{"from": "t", "to": "c"}, {"from": "c", "to": "w", "port": "true"}],
    }


async def test_actions_page_and_logs_find_the_webhook_behind_a_condition(tenant: Tenant, http_peer) -> None:
    from tests.support.http_peer import PeerResponse

    http_peer.reply("POST", "/guarded", PeerResponse.json({"ok": True}))
    flow = await tenant.create_flow(_intent_condition_webhook(http_peer.url("/guarded")))
    channel = await tenant.generic_channel()
    assert (await tenant.send_generic(channel, text="I want to order pizza")).status_code == 200
    await http_peer.wait_for_requests(1, timeout_s=15)

    async def logged() -> dict | None:
        page = (await tenant.http.get(f"/api/actions/{flow['id']}/w/logs")).json()
        return page if page["stats"]["executions"] else None

    await wait_until(logged, what="the webhook execution counted")
    client, _ = await logged_in(tenant)
    try:
        page = await client.get("/actions")
        assert page.status_code == 200
        row = re.search(rf'<tr id="action-{flow["id"]}-t">(.*?)</tr>', page.text, re.S).group(1)
        assert http_peer.url("/guarded")[:30] in row
        assert (
            f"/logs?flow_id={flow['id']}&amp;node_id=w" in row
            or f"/logs?flow_id={flow['id']}&node_id=w" in row
        )
        assert 'data-label="Executions">1</td>' in row and "100.0%" in row  # one, counted for the webhook
        logs = await client.get(f"/logs?flow_id={flow['id']}&node_id=w")
        assert logs.status_code == 200
        assert f'<option value="{flow["id"]}/w" selected>Guarded order' in logs.text
        assert "/guarded" in logs.text
    finally:
        await client.aclose()


async def test_a_draft_saves_whatever_state_the_graph_is_in(tenant: Tenant) -> None:
    flow = await tenant.create_flow(
        {
            "schema": "switchboard.flow/v1",
            "name": "Work in progress",
            "nodes": [{"id": "n1", "type": "when.message_received", "config": {"match": {"kind": "any"}}}],
            "edges": [],
        }
    )
    draft = {
        "schema": "switchboard.flow/v1",
        "name": "Work in progress",
        "nodes": [
            {"id": "n1", "type": "when.message_received", "config": {"match": {"kind": "any"}}},
            {"id": "n2", "type": "action.send_message", "config": {"text": "", "message_type": "support"}},
            {"id": "n3", "type": "action.call_webhook", "config": {"url": "", "method": "POST"}},
        ],
        "edges": [{"from": "n1", "to": "n2"}],
    }
    saved = await tenant.http.put(f"/api/flows/{flow['id']}", json=draft)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert set(body["node_errors"]) == {"n2", "n3"}
    assert any("message" in m.lower() for m in body["node_errors"]["n2"])
    assert [e["node_id"] for e in body["errors"]].count("n3") >= 1
    again = (await tenant.http.get(f"/api/flows/{flow['id']}")).json()
    assert [n["config"] for n in again["document"]["nodes"]] == [n["config"] for n in draft["nodes"]]
    refused = await tenant.http.post(f"/api/flows/{flow['id']}/publish")
    assert refused.status_code == 422
    assert {e["node_id"] for e in refused.json()["errors"]} >= {"n2", "n3"}


async def test_threshold_field_shows_what_held_out_examples_score(tenant: Tenant) -> None:
    client, csrf = await logged_in(tenant)
    match = {
        "kind": "intent",
        "display_name": "Order pizza",
        "confidence_threshold": 0.65,
        "training_examples": [
            {"text": "I want to order two pizzas", "language": "en"},
            {"text": "can I get a pizza delivered", "language": "en"},
            {"text": "order a large pepperoni pizza", "language": "en"},
            {"text": "I'd like pizza for dinner, please deliver", "language": "en"},
        ],
    }
    try:
        form = await client.post(
            "/editor/node-form",
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            data={"node_id": "n1", "type": "when.message_received", "config": json.dumps({"match": match})},
        )
        assert form.status_code == 200
        advice = re.search(
            r'<div class="hint" id="threshold-advice"[^>]*>(.*?)</div>', form.text, re.S
        ).group(1)
        low, high, median = (float(x) for x in re.findall(r"\d\.\d\d", advice)[:3])
        assert 0.0 <= low <= median <= high <= 1.0
        assert re.search(r"at this threshold \d of 4 would match", advice)
        assert 'step="any"' in form.text and 'value="0.65"' in form.text
    finally:
        await client.aclose()
