"""A new user's first hour in Chromium: first-run page, welcome, a first reply live; /schema with no network."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
EXAMPLES = Path(__file__).resolve().parents[2] / "flows" / "examples"
SIZES = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


async def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await pg.screenshot(path=str(SHOTS / f"first-hour-{name}.png"), full_page=True)


async def _no_horizontal_scroll(pg) -> bool:
    return await pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_first_run_page_to_a_reply_in_the_live_view(chromium, empty_stack: Stack) -> None:
    phone = await chromium.new_context(viewport=SIZES["phone"], base_url=empty_stack.base_url)
    pg = await phone.new_page()
    await pg.goto("/")
    await pg.locator("#setup-form").wait_for()
    assert urlsplit(pg.url).path == "/setup"
    assert await _no_horizontal_scroll(pg)
    await shot(pg, "setup-390x844")
    await phone.close()

    context = await chromium.new_context(viewport=SIZES["desktop"], base_url=empty_stack.base_url)
    pg = await context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    await pg.goto("/")
    await pg.locator("#setup-form").wait_for()
    await shot(pg, "setup-1440x900")

    # A mistake is explained on the page and what was typed stays.
    await pg.fill("#workspace", "Acme")
    await pg.fill("#email", "owner@example.com")
    await pg.fill("#password", PASSWORD)
    await pg.fill("#password_again", PASSWORD + "x")
    await pg.click("#setup-form button[type=submit]")
    await pg.locator("#setup-error").wait_for()
    assert "passwords differ" in await pg.locator("#setup-error").inner_text()
    assert await pg.input_value("#email") == "owner@example.com"
    await shot(pg, "setup-error-1440x900")

    await pg.fill("#password", PASSWORD)
    await pg.fill("#password_again", PASSWORD)
    await pg.click("#setup-form button[type=submit]")
    await pg.locator("#try-form").wait_for()
    assert urlsplit(pg.url).path == "/welcome"
    assert await pg.locator("#workspace-name").inner_text() == "Acme"
    await shot(pg, "welcome-1440x900")

    await pg.click("#try-form button[type=submit]")
    await pg.locator("#message-log-wrap").wait_for()
    assert urlsplit(pg.url).path.startswith("/conversations/")
    # The reply arrives through the live view (server-sent events), without a reload.
    await pg.locator("#message-log-wrap", has_text="escalated your request").wait_for(timeout=30_000)
    await shot(pg, "reply-1440x900")
    assert errors == []

    # Importing an example again asks instead of making a second active flow answer the same messages.
    await pg.goto("/flows")
    await pg.set_input_files("#import-form input[type=file]", str(EXAMPLES / "premium-support.flow.json"))
    await pg.click("#import-form button[type=submit]")
    await pg.locator("#import-choice").wait_for()
    assert "already exists" in await pg.locator("#import-result").inner_text()
    await shot(pg, "import-question-1440x900")
    await pg.click("#import-choice button[value=copy]")
    await pg.locator("#import-result .flash.ok").wait_for()
    statuses = await pg.locator("#flows-table tbody tr .badge").all_inner_texts()
    assert sorted(statuses) == ["active"] * 4 + ["paused"]

    # The first-run page is closed now: the owner, or anyone, is sent to the login page.
    await pg.goto("/setup")
    assert urlsplit(pg.url).path == "/login"
    assert errors == []
    await context.close()


async def test_schema_renders_with_no_network_beyond_this_machine(chromium, empty_stack: Stack) -> None:
    context = await chromium.new_context(viewport=SIZES["desktop"], base_url=empty_stack.base_url)
    elsewhere: list[str] = []

    async def only_this_machine(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_this_machine)
    pg = await context.new_page()
    await pg.goto("/schema")
    await pg.locator(".opblock").first.wait_for()
    assert await pg.locator(".opblock").count() > 10
    assert elsewhere == []
    await shot(pg, "schema-1440x900")
    await context.close()
