"""Chaos harness: the service as processes against a PostgreSQL and a Redis of its own, and faults.

Faults (Redis FLUSHALL, PostgreSQL stopped, workers killed or frozen) must never touch the
services other test sessions share, so `PrivateServices` starts both servers here, from the
machine's binaries, through app.services.embedded (the same starter `switchboard run` uses),
in a temporary folder and on free ports. `ChaosStack` runs web + workers against them
(tests.support.stack), a `FakeGraph` plays the WhatsApp Graph API (a real HTTP server on
127.0.0.1 with a latency, which records every send and posts the status callbacks Meta
would), and a `Driver` sends customer messages through the real inbound webhook, delivering
again on an error as Meta does. `figures` reads PostgreSQL and the Graph's log into the
numbers issue 13 asks for; the tests and tests/bench/bench_faults.py assert and print them.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec
import redis.asyncio as aioredis

from app.services import embedded
from app.services.channels.signatures import sign_sha256
from tests.support import stack as stack_mod
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse
from tests.support.raw_http import RawClient, post_request
from tests.support.whatsapp import envelope, text_message

APP_SECRET = "chaos-app-secret"
TOKEN = re.compile(r"\btk\d+x\d+\b")
ORDER_REPLY = "Noted: {{ message_text }}"
HANDOFF_REPLY = "A person will take over from here."
# A reply row in one of these has reached its end; anything else (queued, sending) is stuck.
FINAL_STATUSES = ("sent", "delivered", "read", "played", "failed", "unknown")
FIGURES_DIR = stack_mod.ROOT / "artifacts" / "chaos"

BASE_ENV = {
    "SWITCHBOARD_BUFFER_SECONDS": "0.5",
    "SWITCHBOARD_BUFFER_MAX_SECONDS": "2",
    "SWITCHBOARD_LOCK_SECONDS": "2",
    "SWITCHBOARD_RECOVERY_INTERVAL_SECONDS": "0.5",
    "SWITCHBOARD_SCHEDULER_POLL_SECONDS": "0.02",
    "SWITCHBOARD_DB_POOL_SIZE": "8",
    "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE": "true",
    "SWITCHBOARD_SECRET_KEY": "chaos-secret-key",
    "SWITCHBOARD_SEND_RETRY_BASE_SECONDS": "0.05",
    # A reply in doubt waits this long for its status callback (the fake Graph API posts one 0.3 s after
    # each send, and delivers it again across an outage) before it is marked unknown.
    "SWITCHBOARD_SEND_EVIDENCE_SECONDS": "5",
    "SWITCHBOARD_LOG_LEVEL": "INFO",
    "OPENAI_API_KEY": "",
}


# --- PostgreSQL and Redis of our own ------------------------------------------------------------


class PrivateServices:
    """A PostgreSQL and a redis-server started for the chaos tests alone, in a temporary folder.

    PostgreSQL keeps its port across `stop_postgres` / `start_postgres`, so the processes under
    test reconnect to it as they would to a database server that restarted.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sb-chaos-"))
        self.root.chmod(0o755)  # as root, PostgreSQL runs as another account that must reach its folder
        self._postgres: dict[str, Any] | None = None
        self._redis: dict[str, Any] | None = None
        self.processes: list[stack_mod.Process] = []  # every process run against them, killed in `close`
        self._workspaces: dict[str, Workspace] = {}

    def start(self) -> PrivateServices:
        atexit.register(self.close)  # an interrupted run leaves no server or process behind
        try:
            self._postgres = embedded._start_postgres(self.root)
            self._redis = embedded._start_redis(self.root)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def postgres_url(self) -> str:
        assert self._postgres is not None
        return self._postgres["url"]

    @property
    def redis_url(self) -> str:
        assert self._redis is not None
        return self._redis["url"]

    def postgres_running(self) -> bool:
        return self._postgres is not None and embedded.port_answers("127.0.0.1", self._postgres["port"])

    def stop_postgres(self) -> None:
        """`pg_ctl stop -m fast`: every connection is closed and new ones are refused."""
        assert self._postgres is not None
        embedded._stop_postgres(self._postgres)

    def start_postgres(self) -> None:
        assert self._postgres is not None
        self._postgres = embedded._start_postgres(self.root, port=self._postgres["port"])

    async def workspace(self, code: Path | None) -> Workspace:
        """A database with the scenarios' workspace (user, token, WhatsApp channel, flows), made once per
        checkout; each scenario's database is a copy of it (CREATE DATABASE ... TEMPLATE)."""
        key = str(code or stack_mod.ROOT)
        if key not in self._workspaces:
            self._workspaces[key] = await _make_workspace(
                self, code, f"chaos_template_{len(self._workspaces)}"
            )
        return self._workspaces[key]

    def close(self) -> None:
        for process in self.processes:  # a scenario interrupted before its own clean-up
            process.kill()
        if self._redis is not None:
            embedded._stop_redis(self._redis)
            self._redis = None
        if self._postgres is not None:
            embedded._stop_postgres(self._postgres)
            self._postgres = None
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)


# --- the WhatsApp Graph API ---------------------------------------------------------------------


class Send(msgspec.Struct, kw_only=True):
    """One message the Graph API accepted: what the customer receives."""

    to: str
    text: str
    tokens: list[str]
    biz: str | None  # biz_opaque_callback_data, echoed in the status callbacks
    wamid: str
    at: float


class FakeGraph:
    """The Graph API's /{phone-number-id}/messages on a real HTTP server, answering after `latency_s`.

    Every request it receives is a message sent (the customer gets it even when the sender
    hangs up before the answer, as with the real API). After answering, it posts a `sent`
    status callback to the channel's webhook, signed and carrying `biz_opaque_callback_data`
    as Meta's do, and delivers it again until the webhook answers 200.
    """

    def __init__(self, *, latency_s: float = 0.3, callbacks: bool = True) -> None:
        self.latency_s = latency_s
        self.callbacks = callbacks
        self.peer = HttpPeer()
        self.sends: list[Send] = []
        self.in_flight = 0
        self.callbacks_failed = 0
        self._counter = 0
        self._webhook: tuple[str, str] | None = None  # (url, phone number id)
        # Callbacks wait in a queue for a few raw keep-alive connections (tests.support.raw_http): a task
        # and an httpx request each would starve this process, and so the Graph API, in a burst.
        self._callbacks: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return self.peer.base_url

    async def start(self) -> FakeGraph:
        await self.peer.start()
        return self

    def serve(self, phone_number_id: str, webhook_url: str, *, callback_connections: int = 8) -> None:
        self._webhook = (webhook_url, phone_number_id)
        self.peer.route("POST", f"/{phone_number_id}/messages", self._send)
        if self.callbacks:
            for _ in range(callback_connections):
                task = asyncio.create_task(self._deliver_callbacks())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.peer.stop()

    async def _send(self, request: PeerRequest) -> PeerResponse:
        body = request.json()
        self._counter += 1
        wamid = f"wamid.chaos.{self._counter}"
        text = body.get("text", {}).get("body", "")
        self.sends.append(
            Send(
                to=body.get("to", ""),
                text=text,
                tokens=TOKEN.findall(text),
                biz=body.get("biz_opaque_callback_data"),
                wamid=wamid,
                at=time.monotonic(),
            )
        )
        self.in_flight += 1
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        if self.callbacks:
            self._callbacks.put_nowait(
                (self._callback(wamid, body.get("to", ""), body.get("biz_opaque_callback_data")), 0)
            )
        return PeerResponse.json(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": wamid}],
            }
        )

    def _callback(self, wamid: str, recipient: str, biz: str | None) -> bytes:
        """The `sent` status callback of one message, as Meta posts it (signed, echoing the opaque data)."""
        assert self._webhook is not None
        url, phone_number_id = self._webhook
        status: dict[str, Any] = {
            "id": wamid,
            "status": "sent",
            "timestamp": str(int(time.time())),
            "recipient_id": recipient,
        }
        if biz is not None:
            status["biz_opaque_callback_data"] = biz
        body = json.dumps(envelope(phone_number_id, {"statuses": [status]})).encode()
        parts = urlsplit(url)
        assert parts.port is not None
        return post_request(
            port=parts.port,
            path=parts.path,
            body=body,
            headers={"X-Hub-Signature-256": sign_sha256(APP_SECRET, body)},
        )

    async def _deliver_callbacks(self) -> None:
        """Post queued callbacks on one connection; one not answered 200 is posted again later (12 tries,
        backing off to 8 s: past every outage here; Meta keeps trying for much longer)."""
        assert self._webhook is not None
        port = urlsplit(self._webhook[0]).port
        assert port is not None
        client = RawClient(port)
        loop = asyncio.get_running_loop()
        try:
            while True:
                request, attempt = await self._callbacks.get()
                try:
                    status = await asyncio.wait_for(client.post(request), timeout=15)
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    await client.close()
                    status = 0
                if status == 200:
                    continue
                if attempt >= 11:
                    self.callbacks_failed += 1
                    continue
                loop.call_later(
                    min(0.2 * 2**attempt, 8.0), self._callbacks.put_nowait, (request, attempt + 1)
                )
        finally:
            await client.close()


# --- customers ----------------------------------------------------------------------------------


def phone(conversation: int) -> str:
    return f"1888{conversation:07d}"


class Driver:
    """Customers writing through the real inbound webhook; a message not answered 200 is delivered again.

    Each message goes out on its own task, so a slow or failing delivery holds up no other.
    `accepted` holds the tokens of messages the webhook took (answered 200).
    """

    def __init__(self, webhook_url: str, phone_number_id: str, *, redeliver_for_s: float = 90.0) -> None:
        self.webhook_url = webhook_url
        self.phone_number_id = phone_number_id
        self.redeliver_for_s = redeliver_for_s
        self.accepted: set[str] = set()
        self.given_up: set[str] = set()
        self.errors: collections.Counter[str] = collections.Counter()
        self.posted = 0
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=15.0, limits=httpx.Limits(max_connections=64))

    def next_token(self, conversation: int) -> str:
        self._seq += 1
        return f"tk{conversation}x{self._seq}"

    def send(self, conversation: int, text: str | None = None) -> str:
        """Start delivering one message; its token (the message's text carries it unless `text` is given)."""
        token = self.next_token(conversation)
        body_text = text if text is not None else f"order {token}"
        task = asyncio.create_task(self._deliver(conversation, token, body_text, counted=text is None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return token

    async def deliver(self, conversation: int, text: str) -> None:
        """Deliver one message now (until the webhook takes it)."""
        await self._deliver(conversation, self.next_token(conversation), text, counted=False)

    async def stream(self, *, rate: float, conversations: Iterable[int], duration_s: float) -> int:
        """Messages at `rate` per second, conversations in turn, for `duration_s`; how many were started."""
        pool = list(conversations)
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < duration_s:
            self.send(pool[count % len(pool)])
            count += 1
            next_at = started + count / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        return count

    async def burst(self, conversations: Iterable[int], *, senders: int = 32) -> None:
        """One message per conversation, `senders` connections at a time, as fast as the webhook answers.

        The requests are built (and signed) beforehand and written on raw keep-alive connections
        (tests.support.raw_http): the burst must outrun the service, not the load generator.
        """
        url = urlsplit(self.webhook_url)
        assert url.port is not None
        queue: list[tuple[str, bytes]] = []
        for conversation in conversations:
            token = self.next_token(conversation)
            body = self._body(conversation, token, f"order {token}")
            request = post_request(
                port=url.port, path=url.path, body=body, headers={"X-Hub-Signature-256": self._sign(body)}
            )
            queue.append((token, request))
        queue.reverse()
        deadline = time.monotonic() + self.redeliver_for_s

        async def sender() -> None:
            client = RawClient(url.port)
            try:
                while queue:
                    token, request = queue.pop()
                    try:
                        status = await client.post(request)
                    except (OSError, asyncio.IncompleteReadError) as exc:
                        self.errors[type(exc).__name__] += 1
                        await client.close()
                        status = 0
                    self.posted += 1
                    if status == 200:
                        self.accepted.add(token)
                    elif time.monotonic() > deadline:
                        self.given_up.add(token)
                    else:
                        self.errors[f"http {status}"] += 1
                        queue.insert(0, (token, request))  # delivered again after the others
            finally:
                await client.close()

        await asyncio.gather(*(sender() for _ in range(senders)))

    async def drain(self) -> None:
        """Wait until every started message was taken or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    def _body(self, conversation: int, token: str, text: str) -> bytes:
        message = text_message(
            sender=phone(conversation), text=text, wamid=f"wamid.in.{token}.{uuid.uuid4().hex[:6]}"
        )
        value = {
            "contacts": [{"profile": {"name": f"Customer {conversation}"}, "wa_id": phone(conversation)}],
            "messages": [message],
        }
        return json.dumps(envelope(self.phone_number_id, value)).encode()

    @staticmethod
    def _sign(body: bytes) -> str:
        return sign_sha256(APP_SECRET, body)

    async def _deliver(self, conversation: int, token: str, text: str, *, counted: bool) -> None:
        body = self._body(conversation, token, text or f"order {token}")
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": self._sign(body)}
        deadline = time.monotonic() + self.redeliver_for_s
        delay_s = 0.25
        while True:
            self.posted += 1
            try:
                response = await self._http.post(self.webhook_url, content=body, headers=headers)
                if response.status_code == 200:
                    if counted:
                        self.accepted.add(token)
                    return
                self.errors[f"http {response.status_code}"] += 1
            except httpx.TransportError as exc:
                self.errors[type(exc).__name__] += 1
            if time.monotonic() > deadline:
                self.given_up.add(token)
                return
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 4.0)


# --- the system under test ------------------------------------------------------------------


class Workspace(msgspec.Struct, frozen=True):
    """The scenarios' workspace in a template database: how to reach it."""

    database: str  # the template database's URL
    token: str
    channel_id: str
    phone_number_id: str


async def _make_workspace(services: PrivateServices, code: Path | None, name: str) -> Workspace:
    """Migrate a database with `code`'s web process, then add a user and token (CLI), a WhatsApp channel
    and the two flows (API) to it."""
    database = embedded.with_database(services.postgres_url, name)
    await stack_mod.create_database(database)
    maker = ChaosStack(services, name="template", code=code)
    stack = maker._stack(database, name="chaos-template", workers=1)  # its worker is never started
    stack.web.start()
    try:
        await stack.wait_healthy()
        email = "chaos@example.com"
        created = stack_mod.run_cli(
            stack,
            "admin",
            "create",
            "--email",
            email,
            "--password",
            "chaos horse battery",
            "--workspace",
            "chaos",
        )
        assert created.returncode == 0, created.stderr
        token = stack_mod.run_cli(stack, "token", "create", "--email", email)
        assert token.returncode == 0, token.stderr
        phone_number_id = str(uuid.uuid4().int)[:15]
        async with httpx.AsyncClient(
            base_url=stack.base_url, headers={"Authorization": f"Bearer {token.stdout.strip()}"}, timeout=30.0
        ) as http:
            response = await http.post(
                "/api/channels",
                json={
                    "kind": "whatsapp",
                    "name": "Chaos",
                    "phone_number_id": phone_number_id,
                    "access_token": "chaos-token",
                    "app_secret": APP_SECRET,
                    "verify_token": "chaos",
                },
            )
            assert response.status_code == 201, response.text
            channel_id = response.json()["id"]
            for flow in (_order_flow(), _handoff_flow()):
                response = await http.post("/api/flows", json=flow)
                assert response.status_code == 201, response.text
    finally:
        stack.stop()
        await maker.graph.aclose()
    return Workspace(
        database=database, token=token.stdout.strip(), channel_id=channel_id, phone_number_id=phone_number_id
    )


class ChaosStack:
    """Web + workers on a fresh database in the private PostgreSQL, the private Redis emptied first."""

    def __init__(
        self,
        services: PrivateServices,
        *,
        name: str,
        workers: int = 1,
        latency_s: float = 0.3,
        env: dict[str, str] | None = None,
        concurrency: int = 8,
        code: Path | None = None,
    ) -> None:
        self.services = services
        self.name = name
        self.database_url = embedded.with_database(services.postgres_url, f"chaos_{name}")
        self.graph = FakeGraph(latency_s=latency_s)
        self._env = {**BASE_ENV, **(env or {})}
        self._workers = workers
        self._concurrency = concurrency
        self._code = code  # another checkout's `app` (the baseline), else this one's
        self.stack: stack_mod.Stack | None = None
        self.driver: Driver | None = None
        self.http: httpx.AsyncClient | None = None
        self.channel_id = ""
        self.figures: dict[str, Any] = {}

    @property
    def workers(self) -> list[stack_mod.Process]:
        assert self.stack is not None
        return self.stack.workers

    async def __aenter__(self) -> ChaosStack:
        await self.graph.start()
        workspace = await self.services.workspace(self._code)
        await stack_mod.create_database(self.database_url, template=workspace.database)
        redis = aioredis.Redis.from_url(self.services.redis_url)
        await redis.flushall()  # our own Redis: the previous scenario's keys go
        await redis.aclose()
        self.stack = self._stack(self.database_url, name=f"chaos-{self.name}", workers=self._workers)
        self.stack.web.start()
        await self.stack.wait_healthy()
        self.http = httpx.AsyncClient(
            base_url=self.stack.base_url, headers={"Authorization": f"Bearer {workspace.token}"}, timeout=30.0
        )
        self.channel_id = workspace.channel_id
        webhook_url = f"{self.stack.base_url}/webhooks/whatsapp/{self.channel_id}"
        self.graph.serve(workspace.phone_number_id, webhook_url)
        self.driver = Driver(webhook_url, workspace.phone_number_id)
        for worker in self.stack.workers:
            await self.start_worker(worker)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self.driver is not None:
            await self.driver.aclose()
        if self.http is not None:
            await self.http.aclose()
        if self.stack is not None:
            self.stack.stop()
        await self.graph.aclose()
        if self.services.postgres_running():
            await stack_mod.drop_database(self.database_url)

    def _stack(self, database_url: str, *, name: str, workers: int) -> stack_mod.Stack:
        stack = stack_mod.Stack(
            database_url=database_url,
            redis_url=self.services.redis_url,
            env={**self._env, "WHATSAPP_GRAPH_URL": self.graph.base_url},
            name=name,
            workers=workers,
        )
        for process in (stack.web, *stack.workers):
            process.cwd = self._code or stack_mod.ROOT
            self.services.processes.append(process)
        for worker in stack.workers:
            worker.args = ["worker", "--concurrency", str(self._concurrency)]
        return stack

    async def start_worker(self, worker: stack_mod.Process) -> None:
        """Start a worker and wait for its "worker started" line (its recovery pass has run)."""
        before = _started_lines(worker) if worker.proc is not None else 0  # a first start empties the log
        worker.start()
        await stack_mod.wait_until(
            lambda: _started_lines(worker) > before or not worker.alive(),
            timeout_s=60,
            interval_s=0.05,
            what=f"{worker.name} to start",
        )
        assert worker.alive(), f"{worker.name} exited; see {worker.log_path}"

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(dsn=self.database_url)

    async def hand_off_by_agent(self, conversation: int) -> None:
        """An agent takes the conversation over (PUT /api/conversations/{id}/ai {"ai_enabled": false})."""
        assert self.http is not None
        conn = await self.db()
        try:
            conversation_id = await conn.fetchval(
                "SELECT c.id FROM conversations c JOIN contacts p ON p.id = c.contact WHERE p.phone = $1",
                phone(conversation),
            )
        finally:
            await conn.close()
        assert conversation_id is not None, f"conversation {conversation} is not stored"
        response = await self.http.put(f"/api/conversations/{conversation_id}/ai", json={"ai_enabled": False})
        assert response.status_code == 200 and response.json()["ai_enabled"] is False, response.text

    async def swept_jobs(self) -> int:
        """SAQ jobs its sweep took from a worker (their error reads "swept"), as SAQ keeps them in Redis."""
        redis = aioredis.Redis.from_url(self.services.redis_url)
        try:
            keys = [k async for k in redis.scan_iter(match="saq:job:*", count=1000)]
            values = await redis.mget(keys) if keys else []
        finally:
            await redis.aclose()
        return sum(1 for v in values if v is not None and b'"swept"' in v)

    def sends_to(self, conversation: int) -> list[Send]:
        return [s for s in self.graph.sends if s.to == phone(conversation)]

    async def settle(self, *, timeout_s: float) -> bool:
        """Wait until every stored message is processed, no reply row is in flight and the Graph is idle.

        False when `timeout_s` passed first: what is left then is counted as stranded or stuck.
        """
        assert self.driver is not None
        await self.driver.drain()
        conn = await self.db()
        try:

            async def settled() -> bool:
                row = await conn.fetchrow(_SETTLED, list(FINAL_STATUSES))
                return row["unprocessed"] == 0 and row["unfinished"] == 0 and self.graph.in_flight == 0

            try:
                await stack_mod.wait_until(settled, timeout_s=timeout_s, interval_s=0.25, what="settled")
            except AssertionError:
                return False
            return True
        finally:
            await conn.close()

    async def collect(
        self, scenario: str, *, started: float, settled: bool, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The scenario's figures: computed, printed as one JSON line and written under artifacts/chaos/."""
        assert self.driver is not None
        conn = await self.db()
        try:
            self.figures = {
                "scenario": scenario,
                **await figures(conn, self.graph, self.driver),
                "settled": settled,
                "seconds": round(time.monotonic() - started, 1),
                **(extra or {}),
            }
        finally:
            await conn.close()
        report(self.figures)
        return self.figures


_SETTLED = """
SELECT (SELECT count(*) FROM messages
         WHERE direction = 'in' AND processed_at IS NULL AND type NOT IN ('edit', 'revoke')) AS unprocessed,
       (SELECT count(*) FROM messages WHERE direction = 'out' AND NOT status = ANY($1::text[])) AS unfinished
"""


def _started_lines(worker: stack_mod.Process) -> int:
    try:
        return worker.log_path.read_text(errors="replace").count('"worker started"')
    except FileNotFoundError:
        return 0


def _order_flow() -> dict[str, Any]:
    """Every message with "order" is answered with its batch's text (so each token's replies can be counted)."""
    return {
        "schema": "switchboard.flow/v1",
        "name": "Orders",
        "status": "active",
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["order"]}},
            },
            {"id": "s", "type": "action.send_message", "config": {"text": ORDER_REPLY}},
        ],
        "edges": [{"from": "t", "to": "s"}],
    }


def _handoff_flow() -> dict[str, Any]:
    """ "human" hands the conversation to a person: one reply, then the bot (AI) stays quiet."""
    return {
        "schema": "switchboard.flow/v1",
        "name": "Hand-off",
        "status": "active",
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["human"]}},
            },
            {"id": "s", "type": "action.send_message", "config": {"text": HANDOFF_REPLY}},
            {"id": "off", "type": "action.control_ai_response", "config": {"action": "disable"}},
        ],
        "edges": [{"from": "t", "to": "s"}, {"from": "s", "to": "off"}],
    }


# --- the figures ----------------------------------------------------------------------------------

_INBOUND = """
SELECT count(*) AS stored,
       count(*) FILTER (WHERE processed_at IS NULL) AS unprocessed,
       coalesce(max(extract(epoch FROM processed_at - created_at)), 0) AS max_delay_s,
       coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - created_at)), 0)
         AS p99_delay_s
  FROM messages WHERE direction = 'in' AND type NOT IN ('edit', 'revoke')
"""
_STORED_TEXTS = "SELECT text FROM messages WHERE direction = 'in'"
_OUTBOUND = "SELECT status, count(*) AS n FROM messages WHERE direction = 'out' GROUP BY status"
_UNDECIDED = (
    "SELECT id, status, text FROM messages WHERE direction = 'out' AND status IN ('unknown', 'failed')"
)
_RECORDED_WAMIDS = (
    "SELECT provider_message_id FROM messages WHERE direction = 'out' AND provider_message_id IS NOT NULL"
)
_RUNS = "SELECT status, count(*) AS n FROM runs GROUP BY status"


async def figures(conn: asyncpg.Connection, graph: FakeGraph, driver: Driver) -> dict[str, Any]:
    """sent / stored / answered / answered twice / stranded / stuck rows, from PostgreSQL and the Graph's log.

    A token answered twice is a re-batching duplicate when its replies answer different
    batches (different `biz_opaque_callback_data`, or, without it, different sets of tokens),
    and a resend when one batch's reply went out again (the provider-accepted-but-unrecorded
    window).
    """
    inbound = await conn.fetchrow(_INBOUND)
    stored_tokens = {t for r in await conn.fetch(_STORED_TEXTS) for t in TOKEN.findall(r["text"] or "")}
    replies: dict[str, list[str]] = collections.defaultdict(list)  # token -> the batch of each reply
    for send in graph.sends:
        batch = send.biz if send.biz is not None else ",".join(sorted(send.tokens))
        for token in send.tokens:
            replies[token].append(batch)
    sent = driver.accepted
    twice = {t for t in sent if len(replies.get(t, [])) > 1}
    rebatched = {t for t in twice if len(set(replies[t])) > 1}
    outbound = {r["status"]: r["n"] for r in await conn.fetch(_OUTBOUND)}
    # Replies that ended without a known send (unknown: maybe sent; failed: refused or unreachable).
    undecided = await conn.fetch(_UNDECIDED)
    undecided_tokens = {t for r in undecided for t in TOKEN.findall(r["text"] or "")}
    sent_biz = {send.biz for send in graph.sends if send.biz is not None}
    unanswered = {t for t in sent if not replies.get(t)}
    recorded = {r["provider_message_id"] for r in await conn.fetch(_RECORDED_WAMIDS)}
    return {
        "sent": len(sent),
        "not_accepted": len(driver.given_up),
        "webhook_errors": dict(driver.errors),
        "stored": inbound["stored"],
        "sent_not_stored": len(sent - stored_tokens),
        "answered": sum(1 for t in sent if replies.get(t)),
        "unanswered": len(unanswered),
        # Unanswered, and no reply row even says why: lost.
        "unanswered_lost": len(unanswered - undecided_tokens),
        "unknown_rows": outbound.get("unknown", 0),
        # Of those, how many the Graph API did take (its evidence never reached us) or never saw.
        "unknown_rows_sent": sum(
            1 for r in undecided if r["status"] == "unknown" and str(r["id"]) in sent_biz
        ),
        "answered_twice": len(twice),
        "duplicates_rebatched": len(rebatched),
        "duplicates_resent": len(twice - rebatched),
        "stranded": inbound["unprocessed"],
        "stuck_rows": sum(n for status, n in outbound.items() if status not in FINAL_STATUSES),
        "outbound_rows": outbound,
        "graph_sends": len(graph.sends),
        # Accepted by the Graph API, yet no reply row holds its wamid: a send the service lost track of.
        "sends_unrecorded": sum(1 for send in graph.sends if send.wamid not in recorded),
        "callbacks_failed": graph.callbacks_failed,
        "runs": {r["status"]: r["n"] for r in await conn.fetch(_RUNS)},
        "max_processing_delay_s": round(float(inbound["max_delay_s"]), 2),
        "p99_processing_delay_s": round(float(inbound["p99_delay_s"]), 2),
    }


def report(result: dict[str, Any]) -> None:
    """One JSON line on stdout, and artifacts/chaos/<scenario>.json for the evidence."""
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    (FIGURES_DIR / f"{result['scenario']}.json").write_text(line + "\n")


def failed_guarantees(result: dict[str, Any], *, resend_allowance: int = 0) -> list[str]:
    """The guarantees of issue 13 that these figures break, in words (empty when all hold).

    `resend_allowance`: replies sent again within the provider-accepted-but-unrecorded window
    that the outbox states as its residual (none unless the caller says so).
    """
    broken = []
    checks = {
        "stranded": "stored messages never processed",
        "stuck_rows": "reply rows not in a final state",
        "duplicates_rebatched": "messages answered again in another batch",
        "unanswered_lost": "accepted messages with no reply and no reply row saying why",
        "sent_not_stored": "messages the webhook took (200) but did not store",
    }
    for key, what in checks.items():
        if result.get(key):
            broken.append(f"{result[key]} {what} ({key})")
    if result.get("duplicates_resent", 0) > resend_allowance:
        broken.append(
            f"{result['duplicates_resent']} replies sent twice for one batch (duplicates_resent), "
            f"over the stated residual of {resend_allowance}"
        )
    if not result.get("settled"):
        broken.append("the system did not settle before the deadline")
    return broken


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))
