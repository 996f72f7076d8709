"""Every page at 1440x900 and on a phone (390x844): screenshots, logs that name things, a phone inbox."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import DESKTOP, PHONE, logged_in, shot

from tests.support.http_peer import HttpPeer, PeerResponse
from tests.support.stack import Tenant, wait_until

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
LONG_MESSAGE = "Hello! I ordered two large pizzas an hour ago and they have not arrived yet, can you check?"


def failing_hook_flow(url: str) -> dict[str, Any]:
    return {
        "schema": "switchboard.flow/v1",
        "name": "Order status",
        "status": "active",
        "nodes": [
            {
                "id": "n1",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["status"]}},
            },
            {
                "id": "n2",
                "type": "action.call_webhook",
                "config": {"url": url, "max_retries": 0, "failure_message": "Sorry, we cannot check now."},
            },
        ],
        "edges": [{"from": "n1", "to": "n2"}],
    }


async def seed(tenant: Tenant, http_peer: HttpPeer) -> dict[str, Any]:
    """Example flows, a failing webhook flow, an external action with a logged call, two conversations."""
    http_peer.reply("POST", "/status", PeerResponse.json({"error": "upstream down"}, status=500))
    http_peer.reply("POST", "/api/orders", PeerResponse.json({"order_id": "A-1"}, status=201))
    flows = {}
    for path in sorted((ROOT / "flows/examples").glob("*.flow.json")):
        doc = json.loads(path.read_text())
        for node in doc["nodes"]:
            if node["type"] == "action.call_webhook":
                node["config"]["url"] = http_peer.url("/api/orders")
        flows[doc["name"]] = await tenant.create_flow(doc)
    flows["Order status"] = await tenant.create_flow(failing_hook_flow(http_peer.url("/status")))
    channel = await tenant.generic_channel()
    for sender, text in (("+15550001", "what is the status of my order"), ("+15550002", LONG_MESSAGE)):
        assert (await tenant.send_generic(channel, text=text, sender=sender)).status_code == 200
    assert (
        await tenant.send_generic(channel, text="I want to buy 3 iPhones", sender="+15550003")
    ).status_code == 200
    await wait_until(lambda: _runs(tenant, 3), timeout_s=30, what="three runs")
    return flows


async def _runs(tenant: Tenant, count: int) -> list[dict[str, Any]] | None:
    found = (await tenant.http.get("/api/runs")).json()
    # An `abandoned` run (recovery gave a slow turn's batch back) is followed by its re-run: not counted.
    done = [r for r in found if r["status"] not in ("running", "abandoned")]
    return done if len(done) >= count else None


async def _conversation_of(tenant: Tenant, phone: str) -> str:
    async def find() -> str | None:
        for item in (await tenant.http.get("/api/conversations")).json():
            if item["contact_phone"] == phone:
                return item["id"]
        return None

    return await wait_until(find, timeout_s=20, what=f"the conversation of {phone}")


async def no_sideways_scroll(pg) -> bool:
    return await pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# Controls past the screen's right edge, outside what is meant to scroll sideways (the editor, wide
# tables' .table-wrap): a card that scrolls sideways as a fallback hides them from a person.
CUT_OFF_CONTROLS = """() => {
  const scrolls = (el) => el.closest("#flow-editor, .table-wrap") !== null;
  return [...document.querySelectorAll("button, a[href], input:not([type=hidden]), select, textarea")]
    .filter((el) => el.offsetParent !== null && !scrolls(el))
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
    .map((el) => (el.id ? "#" + el.id : el.tagName.toLowerCase()) + " "
      + (el.innerText || el.value || "").slice(0, 30));
}"""


async def cut_off_controls(pg) -> list[str]:
    return await pg.evaluate(CUT_OFF_CONTROLS)


async def test_logs_name_flows_show_failed_webhooks_and_filter_alone(chromium, tenant, http_peer: HttpPeer):
    flows = await seed(tenant, http_peer)
    pg = await logged_in(chromium, tenant)
    try:
        await pg.goto("/logs")
        rows = pg.locator("#runs-table tbody tr.run-row")
        await rows.first.wait_for()
        table = await pg.locator("#runs-table").inner_text()
        for flow in flows.values():
            assert flow["id"] not in table  # names, never ids
        failed = pg.locator("#runs-table tr.run-row", has=pg.locator(".flow-name", has_text="Order status"))
        assert await failed.locator(".run-status").inner_text() == "failed"
        reason = await failed.locator(".run-reason").inner_text()
        assert "Call webhook (n2)" in reason and "500" in reason
        ordered = pg.locator(
            "#runs-table tr.run-row", has=pg.locator(".flow-name", has_text="Create order by webhook")
        )
        assert await ordered.locator(".run-status").inner_text() == "completed"
        # Status "failed" finds the run whose webhook failed (its turn itself completed).
        await pg.select_option("#flt-status", "failed")
        await wait_until(lambda: _row_count(pg, 1), what="only the failed run")
        await pg.select_option("#flt-status", "")
        # Every run the API lists: on a loaded machine recovery may have given a slow turn's batch back
        # (an `abandoned` run beside its re-run), so the count is read, not assumed to be 3.
        every_run = len((await tenant.http.get("/api/runs", params={"limit": 500})).json())
        await wait_until(lambda: _row_count(pg, every_run), what=f"every run again ({every_run})")
        # "Webhook executions of" alone, without choosing the flow, lists that webhook's calls.
        await pg.select_option("#flt-action", label="Create order (Create order by webhook)")
        await pg.locator("#webhook-logs tbody tr .badge.status-success").wait_for()
        assert "Create order" in await pg.locator("#webhook-logs h2").inner_text()
        assert await pg.locator("#flt-flow").input_value() == ""
        # Its statuses are a webhook's; "failure" finds none here, and choosing a flow goes back to runs.
        assert await pg.locator("#flt-status option").all_inner_texts() == [
            "any",
            "success",
            "failure",
            "pending",
            "processing",
        ]
        await pg.select_option("#flt-status", "failure")
        await pg.locator("#webhook-logs tbody td.empty").wait_for()
        await pg.select_option("#flt-flow", label="Order status")
        await wait_until(lambda: _row_count(pg, 1), what="the failed run of Order status")
        assert await pg.locator("#flt-action").input_value() == ""
        assert await pg.locator("#flt-status").input_value() == "failed"  # the same intent, in run words
        await shot(pg, "logs-webhook-filter")
        # The run detail names flows and nodes too.
        await pg.goto("/logs")
        await failed.locator("a", has_text="Detail").click()
        await pg.locator("#run-detail .run-reason").wait_for()
        detail = await pg.locator("#run-detail").inner_text()
        assert "Failed at Call webhook (n2)" in detail and flows["Order status"]["id"] not in detail
        assert "Message received" in await pg.locator("#trace").inner_text()
        assert pg.js_errors == []
    finally:
        await pg.context.close()


async def _row_count(pg, count: int) -> bool:
    return await pg.locator("#runs-table tbody tr.run-row").count() == count


async def test_every_page_at_1440_and_on_a_phone(chromium, tenant, http_peer: HttpPeer):
    flows = await seed(tenant, http_peer)
    convo = await _conversation_of(tenant, "+15550002")
    run_id = (await tenant.http.get("/api/runs")).json()[0]["id"]
    example = flows["Create order by webhook"]["id"]
    pages = {
        "flows": "/flows",
        "editor": f"/flows/{example}/edit",
        "versions": f"/flows/{example}/versions",
        "actions": "/actions",
        "action-builder": "/actions/new",
        "tester": "/tester",
        "conversations": "/conversations",
        "conversation": f"/conversations/{convo}",
        "logs": "/logs",
        "run": f"/logs/runs/{run_id}",
        "settings": "/settings",
        "not-found": f"/no-such-page-{uuid.uuid4().hex[:6]}",
    }
    for device, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        login = await chromium.new_context(viewport=viewport, base_url=tenant.stack.base_url)
        anonymous = await login.new_page()
        await anonymous.goto("/login")
        await shot(anonymous, f"login-{device}")
        assert await no_sideways_scroll(anonymous)
        await login.close()
        pg = await logged_in(chromium, tenant, viewport=viewport)
        try:
            for name, path in pages.items():
                await pg.goto(path)
                await pg.wait_for_load_state("networkidle")
                await shot(pg, f"{name}-{device}")
                assert await no_sideways_scroll(pg), f"{path} scrolls sideways at {viewport}"
                assert await cut_off_controls(pg) == [], f"{path} cuts controls off at {viewport}"
            # The editor's Try it panel, one turn in.
            await pg.goto(pages["editor"])
            await pg.wait_for_selector("#flow-editor[data-ready]", state="attached")
            await pg.click("#tab-try")
            await pg.fill("#tester-message", "I want to buy 3 iPhones")
            await pg.click("#tester-send")
            await pg.locator(".turn .bubble.bot").first.wait_for()
            await shot(pg, f"editor-try-it-{device}")
            assert await no_sideways_scroll(pg)
            assert pg.js_errors == []
        finally:
            await pg.context.close()


async def test_the_inbox_and_a_conversation_work_on_a_phone(chromium, tenant, http_peer: HttpPeer):
    await seed(tenant, http_peer)
    convo = await _conversation_of(tenant, "+15550002")
    pg = await logged_in(chromium, tenant, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        # The side navigation is folded behind the menu button, and opens.
        assert not await pg.locator("#main-nav").is_visible()
        await pg.click(".nav-toggle")
        await pg.locator("#main-nav a", has_text="Conversations").click()
        await pg.locator("#conversations-table").wait_for()
        assert await no_sideways_scroll(pg)
        row = pg.locator("#conversations-table tr", has_text="+15550002")
        # Measured in one step: a live update (the failing webhook's retry ends later) may swap the
        # row between a visibility check and a separate bounding_box() call, which then sees None.
        await row.wait_for()
        assert await row.evaluate("el => el.getBoundingClientRect().width") <= PHONE["width"]
        await row.locator("a").first.click()
        await pg.wait_for_url(f"**/conversations/{convo}")
        bubble = pg.locator("#message-log .msg.in", has_text=LONG_MESSAGE[:30])
        await bubble.wait_for()
        assert await no_sideways_scroll(pg)
        # Bubbles wrap between words: a long message is wide and a few lines tall, not one syllable per line.
        # Measured in one step too: the live view may swap the log while the test looks at it.
        box = await bubble.evaluate(
            "el => { const r = el.getBoundingClientRect();"
            " return {width: r.width, height: r.height, line: parseFloat(getComputedStyle(el).lineHeight)}; }"
        )
        assert box["width"] >= 0.6 * PHONE["width"], box
        assert box["height"] / box["line"] <= 6, box
        # An agent can reply from the phone.
        await pg.fill("#send-box textarea", "On its way!")
        send = await pg.locator("#send-box button[type=submit]").bounding_box()
        assert send["x"] + send["width"] <= PHONE["width"]
        await shot(pg, "conversation-phone-reply")
        assert pg.js_errors == []
    finally:
        await pg.context.close()
