"""A conversation's live view updates around what an agent is typing, never over it."""

from __future__ import annotations

import pytest
from conftest import DESKTOP, logged_in

from tests.support.stack import wait_until

pytestmark = pytest.mark.browser


async def live(pg, condition: str) -> None:
    """Waits for a condition on the live-event counters (polled over CDP: the page's CSP forbids eval)."""

    async def holds() -> bool:
        return bool(await pg.evaluate(condition))

    await wait_until(holds, what=condition)


def pong_flow() -> dict:
    return {
        "schema": "switchboard.flow/v1",
        "name": "Pong",
        "status": "active",
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["ping"]}},
            },
            {"id": "r", "type": "action.send_message", "config": {"text": "pong back"}},
        ],
        "edges": [{"from": "t", "to": "r"}],
    }


# Counts the live events each card receives (swapped or not) in window.sbLive, by event type.
COUNT_LIVE_EVENTS = (
    "window.sbLive = {}; document.addEventListener('htmx:sseBeforeMessage', function (e) {"
    " var t = e.detail.type; window.sbLive[t] = (window.sbLive[t] || 0) + 1; });"
)


async def test_a_message_arriving_does_not_wipe_the_ai_prompt_being_typed(chromium, tenant):
    await tenant.create_flow(pong_flow())
    channel = await tenant.generic_channel()
    assert (await tenant.send_generic(channel, text="hello", sender="+15553330001")).status_code == 200

    cid = await tenant.newest_conversation()
    pg = await logged_in(chromium, tenant, viewport=DESKTOP)
    await pg.add_init_script(COUNT_LIVE_EVENTS)
    try:
        await pg.goto(f"/conversations/{cid}")
        # The stream's first render (every card once) has arrived.
        await live(pg, "window.sbLive.ai >= 1 && window.sbLive.meta >= 1")
        await pg.fill("#ai-prompt", "Be extra kind: this customer waited")
        await pg.fill("#conversation-meta input[name=add_tag]", "waited")
        await tenant.send_generic(channel, text="ping", sender="+15553330001")
        # The reply arrives live (the run's event re-renders messages, meta and AI state)...
        await pg.locator("#message-log", has_text="pong back").wait_for(timeout=20_000)
        await live(pg, "window.sbLive.ai >= 2 && window.sbLive.meta >= 2")
        # ...and what the agent was typing is still there.
        assert await pg.locator("#ai-prompt").input_value() == "Be extra kind: this customer waited"
        assert await pg.locator("#conversation-meta input[name=add_tag]").input_value() == "waited"
        assert pg.js_errors == []
    finally:
        await pg.context.close()


async def test_saved_stays_after_the_saves_own_live_echo(chromium, tenant):
    """Saving the AI state publishes a live event; its re-render wiped the card's "Saved" at once."""
    channel = await tenant.generic_channel()
    assert (await tenant.send_generic(channel, text="hello", sender="+15553330002")).status_code == 200

    cid = await tenant.newest_conversation()
    pg = await logged_in(chromium, tenant, viewport=DESKTOP)
    await pg.add_init_script(COUNT_LIVE_EVENTS)
    try:
        await pg.goto(f"/conversations/{cid}")
        await live(pg, "window.sbLive.ai >= 1")
        await pg.fill("#ai-prompt", "Answer in French")
        await pg.click("#ai-state button[type=submit]")
        await pg.locator("#ai-state .saved").wait_for()
        await live(pg, "window.sbLive.ai >= 2")  # the save's own event came back
        assert await pg.locator("#ai-state .saved").is_visible()
        assert await pg.locator("#ai-prompt").input_value() == "Answer in French"
    finally:
        await pg.context.close()
