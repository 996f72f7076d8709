"""Fixtures for browser tests: Debian's Chromium through Playwright, and the static editor harness."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from editor_harness import HarnessServer

# Debian's Chromium, never a downloaded browser build; another path for a machine that keeps it elsewhere.
CHROMIUM = os.environ.get("SWITCHBOARD_TEST_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PASSWORD = "correct horse battery"  # every tenant's (tests/support/stack.create_tenant)
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> None:
    """Under CI (CI=true) a missing Chromium fails the run: a green run must have run the browser tests.

    .ci/run installs the package before the suite starts, so there is nothing to wait for.
    """
    if os.path.exists(CHROMIUM):
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# Per module: sync Playwright keeps its event loop running while open, which would stop the
# async app-page fixtures of the modules collected after it.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors
    yield pg
    context.close()


@pytest.fixture(scope="session")
def harness() -> Iterator[HarnessServer]:
    with HarnessServer() as server:
        yield server


def screenshot(page: object, name: str) -> Path:
    """Saves a full-page screenshot under artifacts/screenshots/ (kept by CI: they are the UI review)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest_asyncio.fixture(scope="session")
async def chromium() -> AsyncIterator[object]:
    """Chromium for tests against the running app (async Playwright, like the app's own loop)."""
    from playwright.async_api import async_playwright

    require_chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def logged_in(chromium, tenant, *, viewport: dict[str, int] = DESKTOP, **options: object) -> object:
    """A new browser context logged in as the tenant's owner; its page collects JS errors in `.js_errors`."""
    context = await chromium.new_context(viewport=viewport, base_url=tenant.stack.base_url, **options)
    pg = await context.new_page()
    pg.js_errors = []
    pg.on("pageerror", lambda exc: pg.js_errors.append(str(exc)))
    await pg.goto("/login")
    await pg.fill("#email", tenant.email)
    await pg.fill("#password", PASSWORD)
    await pg.click("#login-form button[type=submit]")
    await pg.wait_for_url("**/flows")
    return pg


async def shot(pg, name: str) -> Path:
    """A screenshot of the app under artifacts/screenshots/app-<name>.png (the UI review looks at them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"app-{name}.png"
    await pg.screenshot(path=str(path), full_page=True)
    return path
