"""CI rules a green run depends on: without Chromium, CI fails instead of skipping the browser tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _browser_test_without_chromium(*, ci: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CI": ci,
        "SWITCHBOARD_TEST_CHROMIUM": str(ROOT / "no-such-chromium"),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/browser/test_editor_harness.py::test_loaded_document_exports_unchanged",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        # The old rule waited 300 s for Chromium to appear before skipping.
        timeout=120,
    )


def test_missing_chromium_fails_the_run_under_ci() -> None:
    run = _browser_test_without_chromium(ci="true")

    assert run.returncode == 1, run.stdout + run.stderr
    assert "no-such-chromium is missing" in run.stdout and "1 error" in run.stdout


def test_missing_chromium_skips_outside_ci() -> None:
    run = _browser_test_without_chromium(ci="")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout and "no-such-chromium is missing" in run.stdout
