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
