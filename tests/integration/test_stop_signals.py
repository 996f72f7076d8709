"""Ctrl-C, `kill` and a closed terminal stop `run` and `worker` the same way: gracefully, at once when idle."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.support import stack as stack_mod
from tests.support.stack import ROOT, Stack, free_port, wait_until

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module")
async def quiet_redis(stack: Stack):
    """A Redis database of its own: a job of another test running at the stop would rightly hold it."""
    base = stack.redis_url.rsplit("/", 1)[0]
    url = f"{base}/{stack_mod._claim_redis_db(base, another=True)}"
    yield url
    client = stack_mod.redis_client(url)
    await client.flushdb()
    await client.aclose()


def _start(args: list[str], *, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.parametrize(
    ("command", "stop"),
    [
        # `run` on SIGTERM and SIGHUP: test_fresh_machine, with embedded services.
        ("run", signal.SIGINT),
        ("web", signal.SIGTERM),
        ("worker", signal.SIGTERM),
        ("worker", signal.SIGHUP),
    ],
)
async def test_stop_signals_stop_cleanly(
    stack: Stack, quiet_redis: str, tmp_path, command: str, stop: signal.Signals
) -> None:
    port = free_port()
    args = [command, "--port", str(port)] if command in ("run", "web") else [command]
    ready = "stop with Ctrl-C" if command == "web" else "worker started"
    log_path = tmp_path / "out.log"
    proc = _start(args, env={**stack.env, "REDIS_URL": quiet_redis}, log_path=log_path)
    try:
        await wait_until(
            lambda: ready in log_path.read_text(),
            timeout_s=60,
            what=f"`switchboard {command}` to start",
        )
        if command in ("run", "web"):
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        proc.send_signal(stop)
        # SAQ's own grace period is 10 s; an idle worker must not wait it out.
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert f'"msg":"stopped","signal":"{stop.name}"' in log, log[-2000:]
    assert "did not finish within the shutdown grace period" not in log, log[-2000:]
    assert "Traceback" not in log, log[-2000:]
    if command in ("run", "web"):
        assert f"Switchboard on http://127.0.0.1:{port}" in log and "stop with Ctrl-C" in log
