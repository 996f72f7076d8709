"""Fixtures for browser tests: Debian's Chromium through Playwright, and the static editor harness."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from editor_harness import HarnessServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def _wait_for_chromium(deadline_s: float = 300.0) -> None:
    # CI may still be installing the chromium package when the suite starts.
    end = time.monotonic() + deadline_s
    while not os.path.exists(CHROMIUM):
        if time.monotonic() > end:
            pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package")
        time.sleep(1)


# Per module: sync Playwright keeps its event loop running while open, which would stop the
# async app-page fixtures of the modules collected after it.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _wait_for_chromium()
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
