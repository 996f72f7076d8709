"""The system under test: a private database, a private Redis key space, web and worker processes."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from app.services import embedded
from app.services.channels.signatures import sign_sha256

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "artifacts" / "logs"
OWNER_KEY = "sb:test:owner"


def _claim_redis_db(base_url: str, *, another: bool = False) -> int:
    """A Redis database for this test session alone: 15 downwards, the first not owned by a live session.

    Two sessions in one database would empty each other's queue and run each other's jobs;
    SWITCHBOARD_TEST_REDIS_DB pins one instead. `another` claims one more for a second stack.
    """
    import redis

    pinned = os.environ.get("SWITCHBOARD_TEST_REDIS_DB")
    if pinned and not another:
        return int(pinned)
    for db in range(15, 7, -1):
        client = redis.Redis.from_url(f"{base_url}/{db}")
        try:
            owner = client.get(OWNER_KEY)
            if owner is not None and _alive(int(owner)):
                continue
            client.set(OWNER_KEY, os.getpid(), ex=6 * 3600)
            return db
        finally:
            client.close()
    raise RuntimeError(
        "Redis databases 8-15 are all in use by other test sessions; set SWITCHBOARD_TEST_REDIS_DB"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_test_services() -> tuple[str, str]:
    """Server URLs for the suite: the configured ones, the local ports, or embedded servers.

    The suite then works in a database of its own and in a Redis database of its own
    (15 downwards, see _claim_redis_db), so a developer's data is never touched.
    """
    services = embedded.resolve_services(
        data_dir=str(ROOT / ".data" / "test"),
        database_url=os.environ.get("DATABASE_URL", ""),
        redis_url=os.environ.get("REDIS_URL", ""),
    )
    database = embedded.with_database(services.database_url, f"switchboard_test_{os.getpid()}")
    redis_base = (
        services.redis_url.rsplit("/", 1)[0] if services.redis_url.count("/") > 2 else services.redis_url
    )
    return database, f"{redis_base}/{_claim_redis_db(redis_base)}"


async def create_database(url: str, *, template: str | None = None) -> None:
    """A new, empty database (or a copy of `template`'s database, which nobody may be connected to)."""
    admin = await asyncpg.connect(dsn=embedded.with_database(url, "postgres"))
    name = url.rsplit("/", 1)[1]
    copy = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await admin.close()


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(dsn=embedded.with_database(url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


def free_port() -> int:
    return embedded.free_port()


class Process:
    """A `switchboard` subcommand in its own process, logs to artifacts/logs/<name>.log."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], *, cwd: Path = ROOT) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.cwd = cwd  # the checkout whose `app` runs (`python -m` imports from there first)
        self.proc: subprocess.Popen | None = None
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.log"

    def start(self) -> None:
        # Popen keeps its own copy of the descriptor; a restart appends to the first life's log.
        log = open(self.log_path, "ab" if self.proc else "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a machine dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process would hold the SIGTERM until the kill
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def freeze(self) -> None:
        """SIGSTOP: the process holds its connections and locks but does nothing, as in a long GC or VM pause."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the frozen process carries on where it stopped."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        self.proc.send_signal(signal.SIGCONT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def run_cli(stack: Stack, *args: str, stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """`switchboard ARGS...` in a process of its own against the stack's database and Redis."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=stack.env,
        cwd=stack.web.cwd,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Stack:
    """Web + worker processes against the test database and Redis key space."""

    def __init__(
        self, *, database_url: str, redis_url: str, env: dict[str, str], name: str = "", workers: int = 1
    ) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
        prefix = f"{name}-" if name else ""
        self.web = Process(f"{prefix}web", ["web", "--port", str(self.port)], self.env)
        self.workers = [
            Process(f"{prefix}worker{i + 1 if i else ''}", ["worker", "--concurrency", "8"], self.env)
            for i in range(workers)
        ]
        self.worker = self.workers[0]

    async def wait_healthy(self, *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if not self.web.alive():
                    raise RuntimeError(f"web process exited; see {self.web.log_path}")
                try:
                    if (await client.get(f"{self.base_url}/health", timeout=1.0)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"web did not become healthy in {timeout_s} s; see {self.web.log_path}")

    async def start(self) -> None:
        self.web.start()
        await self.wait_healthy()
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.web.stop()


async def wait_until(
    predicate, *, timeout_s: float = 15.0, interval_s: float = 0.05, what: str = "condition"
) -> Any:
    """Poll a predicate (sync or async) until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)


class Tenant:
    """A workspace with a user and an API token, and helpers to drive it over HTTP."""

    def __init__(self, stack: Stack, *, workspace_id: str, email: str, token: str) -> None:
        self.stack = stack
        self.workspace_id = workspace_id
        self.email = email
        self.token = token
        self.http = httpx.AsyncClient(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        )

    async def create_channel(self, **fields: Any) -> dict[str, Any]:
        response = await self.http.post("/api/channels", json=fields)
        assert response.status_code == 201, response.text
        return response.json()

    async def generic_channel(self, *, secret: str = "generic-secret") -> dict[str, Any]:
        channel = await self.create_channel(kind="generic", name="Web chat", secret=secret)
        channel["secret"] = secret
        return channel

    async def create_flow(self, document: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post("/api/flows", json=document)
        assert response.status_code == 201, response.text
        return response.json()

    async def send_generic(
        self,
        channel: dict[str, Any],
        *,
        text: str,
        sender: str = "+15550001",
        message_id: str | None = None,
        first_name: str = "Ada",
    ) -> httpx.Response:
        body = httpx.Request(
            "POST",
            "/",
            json={
                "message_id": message_id or uuid.uuid4().hex,
                "from": sender,
                "text": text,
                "type": "text",
                "timestamp": int(time.time()),
                "contact": {"first_name": first_name, "last_name": "Lovelace"},
            },
        ).read()
        return await self.http.post(
            f"/webhooks/generic/{channel['id']}",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Switchboard-Signature": sign_sha256(channel["secret"], body),
            },
        )

    async def newest_conversation(self) -> str:
        """The id of the workspace's newest conversation, once it has one (a message sent is stored first)."""

        async def conversation_id() -> str | None:
            listed = (await self.http.get("/api/conversations")).json()
            return listed[0]["id"] if listed else None

        return await wait_until(conversation_id, what="a conversation")

    async def aclose(self) -> None:
        await self.http.aclose()


async def create_tenant(stack: Stack, *, name: str | None = None) -> Tenant:
    """A fresh workspace, created through the CLI's own service functions in this process."""
    from app.services import auth

    name = name or f"ws-{uuid.uuid4().hex[:8]}"
    email = f"{name}@example.com"
    principal = await auth.create_admin(email=email, password="correct horse battery", workspace=name)
    token = await auth.create_token(email=email, name="tests")
    return Tenant(stack, workspace_id=principal.workspace_id, email=email, token=token)


def redis_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True)
