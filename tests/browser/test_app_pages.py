"""The browser app against the running service.

Login, build/save/publish a flow, live conversation, builder + tester, errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from conftest import PASSWORD, logged_in, shot

from tests.support.stack import wait_until

pytestmark = pytest.mark.browser


@pytest_asyncio.fixture
async def page(chromium, tenant) -> AsyncIterator[object]:
    """A logged-in page for a fresh workspace."""
    pg = await logged_in(chromium, tenant, viewport={"width": 1366, "height": 768})
    await pg.locator("#flows-table").wait_for()
    yield pg
    await pg.context.close()


async def export(pg) -> dict:
    return await pg.evaluate("window.sbEditor.exportDocument()")


async def test_build_save_reload_publish_and_watch_the_reply_live(page, tenant):
    channel = await tenant.generic_channel()
    assert await page.locator("#workspace-name").inner_text()
    await page.fill("#create-flow-form input[name=name]", "Greeter")
    await page.click("#create-flow-form button")
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    assert re.search(r"/flows/.+/edit$", page.url)
    canvas = page.locator("#canvas")
    # The new flow starts with a trigger (n1); drag two actions in and connect the chain.
    await page.locator('[data-node-type="action.add_tag"]').drag_to(
        canvas, target_position={"x": 320, "y": 60}
    )
    await page.locator('[data-node-type="action.send_message"]').drag_to(
        canvas, target_position={"x": 320, "y": 300}
    )
    nodes = page.locator(".drawflow-node")
    assert await nodes.count() == 3
    await nodes.nth(0).locator(".output").first.drag_to(nodes.nth(1).locator(".input"))
    await nodes.nth(1).locator(".output").first.drag_to(nodes.nth(2).locator(".input"))
    # Configure each node through its server-rendered form: it applies as you type.
    await nodes.nth(1).click()
    await page.fill("#node-form #f-tag", "greeted")
    await page.locator("#node-form .saved").wait_for()
    await nodes.nth(2).click()
    await page.locator("#node-form #f-text").wait_for()
    await page.fill("#node-form #f-text", "Hello {{ contact.first_name }}!")
    await page.locator("#node-form .saved").wait_for()
    await shot(page, "editor")
    before = await export(page)
    assert before["edges"] == [{"from": "n1", "to": "n2"}, {"from": "n2", "to": "n3"}]
    await page.click('[data-editor-action="save"]')
    await page.locator("#editor-status.is-ok").wait_for()
    await page.reload()
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    after = await export(page)
    assert [n["id"] for n in after["nodes"]] == ["n1", "n2", "n3"]
    assert after["edges"] == before["edges"]
    assert [n["position"] for n in after["nodes"]] == [n["position"] for n in before["nodes"]]
    assert after["nodes"][2]["config"]["text"] == "Hello {{ contact.first_name }}!"
    await page.click('[data-editor-action="publish"]')
    await page.locator("#flow-status.status-active").wait_for()
    await page.click("#tab-versions")
    await page.locator("#versions-list li[data-version='1'] .badge.status-active").wait_for()

    response = await tenant.send_generic(channel, text="hi there", first_name="Ada")
    assert response.status_code == 200
    convo_id = await wait_until(lambda: _first_conversation(tenant), what="the conversation")
    await page.goto(f"/conversations/{convo_id}")
    await page.locator("#message-log .msg.out", has_text="Hello Ada!").wait_for(timeout=20000)
    # A second message arrives while the page is open: it appears without a reload.
    await tenant.send_generic(channel, text="second message", first_name="Ada")
    await page.locator("#message-log .msg.in", has_text="second message").wait_for(timeout=20000)
    await page.locator("#conversation-tags", has_text="greeted").wait_for(timeout=20000)
    await shot(page, "conversation")
    await page.goto("/conversations")
    await shot(page, "conversations")
    await page.goto("/logs")
    await page.locator("#runs-table tbody tr").first.wait_for()
    await shot(page, "logs")
    assert page.js_errors == []


async def _first_conversation(tenant) -> str | None:
    items = (await tenant.http.get("/api/conversations")).json()
    return items[0]["id"] if items else None


async def test_builder_creates_an_action_the_tester_matches(page, tenant):
    await page.goto("/actions/new")
    await page.fill("#f-trigger\\.match\\.display_name", "Order pizza")
    for text in [
        "I want to order a pizza",
        "can I get two pizzas",
        "order pizza please",
        "pizza delivery order",
    ]:
        await page.click("#add-example")
        await page.locator("#list-examples .list-row").last.locator("input").first.fill(text)
    await page.fill("#f-webhook\\.url", "http://127.0.0.1:9/orders")
    await shot(page, "action-builder")
    await page.click("#create-action")
    await page.locator("#action-created").wait_for()
    await shot(page, "actions")
    await page.goto("/tester")
    await page.fill("#tester-message", "I want to order a pizza")
    await page.click("#tester-send")
    await page.locator(".turn .answer-layer").wait_for()
    assert await page.locator(".turn .matched-action").inner_text() == "Order pizza"
    await shot(page, "tester")


async def test_invalid_flow_shows_errors_on_its_nodes(page, tenant):
    flow = await tenant.create_flow(
        {
            "schema": "switchboard.flow/v1",
            "name": "Broken",
            "nodes": [
                {"id": "n1", "type": "when.message_received", "config": {"match": {"kind": "any"}}},
                {"id": "n2", "type": "action.call_webhook", "config": {"url": "https://example.com/hook"}},
            ],
            "edges": [{"from": "n1", "to": "n2"}],
        }
    )
    await page.goto(f"/flows/{flow['id']}/edit")
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    await page.evaluate("window.sbEditor.configs['n2'].url = 'not a url'")
    await page.click('[data-editor-action="validate"]')
    bad = page.locator(".drawflow-node.has-error")
    await bad.first.wait_for()
    assert await bad.count() == 1
    assert "n2" in await bad.inner_text()
    assert await page.locator("#flow-errors li").count() >= 1
    await shot(page, "editor-errors")


async def test_import_of_a_broken_file_shows_its_errors(page, tmp_path):
    good = tmp_path / "good.flow.json"
    good.write_text(
        json.dumps(
            {
                "schema": "switchboard.flow/v1",
                "name": "Fine",
                "nodes": [
                    {"id": "n1", "type": "when.message_received", "config": {"match": {"kind": "any"}}}
                ],
                "edges": [],
            }
        )
    )
    broken = tmp_path / "broken.flow.json"
    broken.write_text(
        json.dumps(
            {
                "schema": "switchboard.flow/v1",
                "name": "Broken",
                "nodes": [
                    {"id": "n1", "type": "when.message_received", "config": {"match": {"kind": "any"}}},
                    {"id": "n2", "type": "action.send_mesage", "config": {}},
                ],
                "edges": [{"from": "n1", "to": "n9"}],
            }
        )
    )
    await page.goto("/flows")
    await page.set_input_files("#import-form input[type=file]", [str(good), str(broken)])
    await page.click("#import-form button[type=submit]")
    item = page.locator('#import-result li.import-file[data-file="broken.flow.json"]')
    await item.wait_for()
    text = await item.inner_text()
    assert "n2" in text
    assert await page.locator('#import-result li.import-file[data-file="good.flow.json"]').count() == 0
    await shot(page, "flows-import-errors")
    await page.goto("/settings")
    await shot(page, "settings")


async def test_unsafe_requests_without_the_csrf_token_are_refused(tenant):
    async with httpx.AsyncClient(base_url=tenant.stack.base_url) as client:
        login_page = await client.get("/login")
        token = re.search(r'name="csrf-token" content="([^"]+)"', login_page.text).group(1)
        refused = await client.post("/login", data={"email": tenant.email, "password": PASSWORD})
        assert refused.status_code == 403
        ok = await client.post("/login", data={"email": tenant.email, "password": PASSWORD, "_csrf": token})
        assert ok.status_code in (302, 303)
        assert (await client.post("/flows", data={"name": "x"})).status_code == 403
        flows = await client.get("/flows", headers={"HX-Request": "true"})
        assert flows.status_code == 200 and 'id="flows-table"' in flows.text and "<html" not in flows.text
