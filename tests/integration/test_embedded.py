"""Embedded services: created under the data folder, shared through the state file, stopped by their last user."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from app.services import embedded
from tests.support.stack import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A project folder that PostgreSQL's account can reach when the tests run as root."""
    project = Path(tempfile.mkdtemp(prefix="sb-embedded-"))
    project.chmod(0o755)
    yield project / ".data"
    state = embedded._load_state(project / ".data")
    embedded._stop_all(project / ".data", state)  # whatever a failed test left running
    shutil.rmtree(project, ignore_errors=True)


def _port(url: str) -> int:
    return int(url.split("@", 1)[1].split("/", maxsplit=1)[0].rsplit(":", 1)[1])


def _alive(pid: int) -> bool:
    return embedded._alive(pid)


SHARE_AND_EXIT = """
import json, os, signal, sys
from app.services import embedded
services = embedded.resolve_services(data_dir=sys.argv[1], force_embedded=True)
print(json.dumps({"db": services.database_url, "redis": services.redis_url, "started": services.started}))
sys.stdout.flush()
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
services.close()
"""


def _other_process(data_dir: Path, how: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", SHARE_AND_EXIT, str(data_dir), how],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.stdout, run.stderr
    return json.loads(run.stdout.splitlines()[0])


async def test_services_are_created_shared_and_stopped_by_their_last_user(data_dir: Path) -> None:
    assert not data_dir.exists()
    services = embedded.resolve_services(data_dir=str(data_dir), force_embedded=True)
    try:
        assert services.started == ["postgres", "redis"] and services.embedded == ["postgres", "redis"]
        assert (data_dir / "postgres" / "PG_VERSION").exists()  # the folder is created, with its parent
        state = json.loads((data_dir / "services.json").read_text())
        assert state["owner_pid"] == os.getpid()
        assert (
            state["postgres"]["url"] == services.database_url and state["redis"]["url"] == services.redis_url
        )
        assert oct((data_dir / "services.json").stat().st_mode & 0o777) == "0o600"  # it holds passwords

        await embedded.ensure_database(services.database_url, origin="embedded")
        conn = await asyncpg.connect(dsn=services.database_url)
        assert await conn.fetchval("SELECT 41 + 1") == 42
        await conn.close()
        # Other accounts of the machine cannot log in: both servers want the password.
        no_password = services.database_url.replace(
            services.database_url.split("@")[0], "postgresql://postgres"
        )
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(dsn=no_password)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=_port(services.redis_url)).ping()
        assert redis.Redis.from_url(services.redis_url).ping()

        # Another command uses them instead of starting its own, and leaves them running.
        other = _other_process(data_dir, "close")
        assert other == {"db": services.database_url, "redis": services.redis_url, "started": []}
        assert embedded.port_answers("127.0.0.1", _port(services.database_url))
        assert embedded.port_answers("127.0.0.1", _port(services.redis_url))
    finally:
        services.close()
    # The last user stops them and removes the state.
    assert not embedded.port_answers("127.0.0.1", _port(services.database_url))
    assert not embedded.port_answers("127.0.0.1", _port(services.redis_url))
    assert not (data_dir / "services.json").exists()


async def test_a_killed_owner_leaves_a_state_the_next_start_recovers_from(data_dir: Path, caplog) -> None:
    left = _other_process(data_dir, "kill")
    state = json.loads((data_dir / "services.json").read_text())
    old_pids = [state["postgres"]["pid"], state["redis"]["pid"]]
    assert all(_alive(pid) for pid in old_pids)  # kill -9 stopped nothing

    with caplog.at_level(logging.WARNING, logger="app.services.embedded"):
        services = embedded.resolve_services(data_dir=str(data_dir), force_embedded=True)
    try:
        assert "found embedded services left by a process that is gone" in caplog.text
        assert services.started == ["postgres", "redis"]
        assert not any(_alive(pid) for pid in old_pids)
        assert services.database_url != left["db"]  # a new port
        await embedded.ensure_database(services.database_url, origin="embedded")
    finally:
        services.close()


async def test_a_stale_postmaster_pid_is_removed(data_dir: Path, caplog) -> None:
    embedded.resolve_services(data_dir=str(data_dir), force_embedded=True).close()
    # A crash of the machine leaves postmaster.pid behind; after a reboot its pid may be anyone's.
    stranger = subprocess.Popen(["sleep", "60"])
    pid_file = data_dir / "postgres" / "postmaster.pid"
    pid_file.write_text(f"{stranger.pid}\n{data_dir / 'postgres'}\n")
    try:
        with caplog.at_level(logging.WARNING, logger="app.services.embedded"):
            services = embedded.resolve_services(data_dir=str(data_dir), force_embedded=True)
        try:
            assert "removed a stale postmaster.pid" in caplog.text
            await embedded.ensure_database(services.database_url, origin="embedded")
        finally:
            services.close()
        assert stranger.poll() is None  # not ours: left alone
    finally:
        stranger.kill()
        stranger.wait()


def test_data_of_another_major_version_says_so_and_what_to_do(data_dir: Path) -> None:
    (data_dir / "postgres").mkdir(parents=True)
    (data_dir / "postgres" / "PG_VERSION").write_text("9\n")

    with pytest.raises(embedded.ServiceError) as refused:
        embedded.resolve_services(data_dir=str(data_dir), force_embedded=True)

    message = str(refused.value)
    assert "made by PostgreSQL 9" in message and "install PostgreSQL 9" in message
    assert f"mv {data_dir / 'postgres'} {data_dir / 'postgres'}-9.old" in message
    assert not (data_dir / "services.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="what root does: CI runs as root")
def test_as_root_the_data_stays_in_the_folder_and_no_account_is_created(data_dir: Path) -> None:
    accounts = {p.pw_name for p in pwd.getpwall()}
    services = embedded.resolve_services(data_dir=str(data_dir), force_embedded=True)
    try:
        pid = json.loads((data_dir / "services.json").read_text())["postgres"]["pid"]
        uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        assert uid != 0 and (data_dir / "postgres").stat().st_uid == uid
    finally:
        services.close()
    assert {p.pw_name for p in pwd.getpwall()} == accounts


async def test_refused_credentials_say_what_was_tried_and_what_to_set(data_dir: Path) -> None:
    services = embedded.resolve_services(data_dir=str(data_dir), force_embedded=True)
    try:
        wrong = services.database_url.replace(services.database_url.split(":")[2].split("@")[0], "wrong")
        with pytest.raises(embedded.ServiceError) as configured:
            await embedded.ensure_database(wrong, origin="configured")
        text = str(configured.value)
        assert 'refused user "postgres"' in text and "password authentication failed" in text
        assert "DATABASE_URL=postgresql://postgres:***@" in text and "wrong" not in text

        with pytest.raises(embedded.ServiceError) as local:
            await embedded.ensure_database(wrong, origin="local")
        assert "because DATABASE_URL is not set" in str(local.value)
        assert "SWITCHBOARD_EMBEDDED=1" in str(local.value)

        no_password = f"redis://127.0.0.1:{_port(services.redis_url)}/0"
        with pytest.raises(embedded.ServiceError) as redis_refused:
            embedded.check_redis(no_password, origin="local")
        assert "Redis on 127.0.0.1" in str(redis_refused.value) and "REDIS_URL" in str(redis_refused.value)
    finally:
        services.close()


def test_configured_urls_win_and_nothing_is_started(tmp_path) -> None:
    services = embedded.resolve_services(
        data_dir=str(tmp_path / ".data"),
        database_url="postgresql://db.example/x",
        redis_url="redis://cache.example/0",
        force_embedded=True,
    )
    assert (services.database_url, services.redis_url) == (
        "postgresql://db.example/x",
        "redis://cache.example/0",
    )
    assert services.started == [] and not (tmp_path / ".data").exists()


def test_the_kill_signal_leaves_processes_only_of_the_killed_owner(data_dir: Path) -> None:
    """No state at all (deleted by hand) but a PostgreSQL still running on the data: it is stopped first."""
    _other_process(data_dir, "kill")
    state = json.loads((data_dir / "services.json").read_text())
    (data_dir / "services.json").unlink()
    services = embedded.resolve_services(data_dir=str(data_dir), force_embedded=True)
    try:
        assert not _alive(state["postgres"]["pid"]) and not _alive(state["redis"]["pid"])
    finally:
        services.close()
        for pid in (state["postgres"]["pid"], state["redis"]["pid"]):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
