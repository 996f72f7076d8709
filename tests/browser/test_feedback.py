"""What a person sees when a click does not work: the server's reason, or that the server did not answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from conftest import DESKTOP, logged_in

from tests.support.stack import wait_until

pytestmark = pytest.mark.browser


def starter(name: str) -> dict:
    return {
        "schema": "switchboard.flow/v1",
        "name": name,
        "status": "paused",
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["hi"]}},
            },
            {"id": "r", "type": "action.send_message", "config": {"text": "Hello"}},
        ],
        "edges": [{"from": "t", "to": "r"}],
    }


@pytest_asyncio.fixture
async def page(chromium, tenant) -> AsyncIterator[object]:
    pg = await logged_in(chromium, tenant, viewport=DESKTOP)
    yield pg
    await pg.context.close()


async def flash(pg) -> str:
    box = pg.locator("#flash")
    await box.wait_for(state="visible")
    return (await box.inner_text()).strip()


async def test_a_refused_click_shows_the_servers_reason(page, tenant):
    """The flow was deleted in another tab: Activate says so, not only "Request failed (404)"."""
    flow = await tenant.create_flow(starter("Gone soon"))
    await page.goto("/flows")
    row = page.locator(f"#flow-row-{flow['id']}")
    await row.wait_for()
    assert (await tenant.http.delete(f"/api/flows/{flow['id']}")).status_code == 204
    await row.locator("button.toggle").click()
    assert "This flow does not exist" in await flash(page)
    assert page.js_errors == []


async def test_an_expired_form_says_to_reload(page, tenant):
    """A CSRF refusal (the session's token changed, e.g. logged in again in another tab) says what to do."""
    flow = await tenant.create_flow(starter("Stale form"))
    await page.goto("/flows")
    await page.locator(f"#flow-row-{flow['id']}").wait_for()
    await page.evaluate("document.querySelector('meta[name=csrf-token]').content = 'stale'")
    await page.locator(f"#flow-row-{flow['id']} button.toggle").click()
    assert "reload the page" in await flash(page)


async def test_a_click_the_server_never_answers_says_so(page, tenant):
    """The network drops (or the server is down): the click is not silently lost."""
    flow = await tenant.create_flow(starter("Offline"))
    await page.goto("/flows")
    await page.locator(f"#flow-row-{flow['id']}").wait_for()
    await page.route("**/toggle", lambda route: route.abort())
    await page.locator(f"#flow-row-{flow['id']} button.toggle").click()
    said = await flash(page)
    assert "did not answer" in said, said
    # The next click that works clears the notice.
    await page.unroute("**/toggle")
    await page.locator(f"#flow-row-{flow['id']} button.toggle").click()
    await wait_until(
        lambda: page.locator("#flash").is_hidden(), what="the notice to clear after a click that worked"
    )


async def test_a_double_click_on_send_runs_one_turn(page, tenant):
    """A double click (or Enter pressed twice) while the turn runs sends the message once: the second
    submit went out after the first had emptied the box, and the transcript showed an error turn."""
    await page.goto("/tester")
    await page.fill("#tester-message", "hello there")
    await page.locator("#tester-send").dblclick()
    await page.locator("#tester-transcript .turn").first.wait_for()
    await page.wait_for_load_state("networkidle")
    assert await page.locator("#tester-transcript .turn").count() == 1
    assert "Type what the customer says" not in await page.locator("#tester-transcript").inner_text()


async def test_a_double_click_on_an_agent_reply_sends_it_once(page, tenant):
    channel = await tenant.generic_channel()
    assert (await tenant.send_generic(channel, text="hi", sender="+15554440001")).status_code == 200

    cid = await tenant.newest_conversation()
    await page.goto(f"/conversations/{cid}")
    await page.fill("#send-box textarea", "On its way")
    await page.locator("#send-box button[type=submit]").dblclick()
    await page.locator("#message-log", has_text="On its way").wait_for()
    await page.wait_for_load_state("networkidle")
    assert "Write a message first" not in await page.locator("#send-box").inner_text()

    async def agent_messages() -> list[str]:
        messages = (await tenant.http.get(f"/api/conversations/{cid}/messages")).json()
        return [m["text"] for m in messages if m["text"] == "On its way"]

    assert await agent_messages() == ["On its way"]
