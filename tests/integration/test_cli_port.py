"""A busy port is reported before anything starts, with the way to choose another."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.support.stack import ROOT, Stack


def test_busy_port_says_which_and_how_to_choose_another(stack: Stack) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "app.cli", "run", "--port", str(port)],
            env=stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert run.returncode == 2, run.stderr
    assert f"port {port} on 127.0.0.1 is in use" in run.stderr
    assert f"--port {port + 1} or SWITCHBOARD_PORT={port + 1}" in run.stderr
    assert "Switchboard on http" not in run.stderr and "Traceback" not in run.stderr
    assert "services ready" not in run.stderr  # nothing was started for a server that cannot listen
