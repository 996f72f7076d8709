"""Ingress and end-to-end throughput of the service (prints one JSON object; never asserts times).

Phase 1: signed WhatsApp text payloads from 64 concurrent senders, 20,000 messages over 2,000
conversations, against one web process: accepted messages/s, p50/p99 latency, every message
stored once, web RSS. Phase 2: the same load end to end with a 0 s buffer and one worker:
turns/s from ingress to the reply received by a fake Graph API, p50/p99 of that latency.

`--only anchor` is the anchors' scenario (../shared/bench/anchors, issue 15) in this harness:
every message from its own sender (a new contact, conversation and turn each), and the flow
POSTs `{"event": "new_order", "from", "text"}` to a sink (`call_webhook`) instead of replying;
paced at `--rate` messages/s, it reports the end-to-end latency from the webhook request to
the sink's receipt (p50/p99) and whether the worker kept up at that rate.

    python tests/bench/bench_ingress.py [--messages 20000] [--conversations 2000] [--senders 64] [--only e2e]
    python tests/bench/bench_ingress.py --only anchor --messages 6000 --rate 400
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from app.services.channels.signatures import sign_sha256  # noqa: E402
from tests.support import stack as stack_mod  # noqa: E402
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse  # noqa: E402
from tests.support.raw_http import RawClient  # noqa: E402
from tests.support.whatsapp import text_envelope  # noqa: E402

APP_SECRET = "bench-app-secret"
SETTLE_S = 1.0  # idle time before reading memory "after" the load


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else 0.0


def cpu_s(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS", 0.0), "peak_rss_mb": fields.get("VmHWM", 0.0)}


class BackendCPU:
    """CPU time of the PostgreSQL processes serving one database, sampled while the load runs.

    A local server only (its processes' /proc entries); the pool's connections stay open for the
    phase, so sampling every quarter second misses at most a connection's last moments.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn  # the phase's own connection: no extra client on a server that may be full
        self.start_s: dict[int, float] = {}
        self.last_s: dict[int, float] = {}
        self._task: asyncio.Task | None = None

    async def _sample(self, conn: asyncpg.Connection) -> dict[int, float]:
        pids = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        sampled = {}
        for row in pids:
            try:
                sampled[row["pid"]] = cpu_s(row["pid"])
            except (FileNotFoundError, ProcessLookupError):
                continue  # ended meanwhile
        return sampled

    async def start(self) -> None:
        self.start_s = await self._sample(self.conn)
        self.last_s = dict(self.start_s)

        async def loop() -> None:
            while True:
                await asyncio.sleep(0.25)
                self.last_s.update(await self._sample(self.conn))

        self._task = asyncio.create_task(loop())

    async def stop(self) -> float:
        """Seconds of CPU the database's server processes used since `start`; the connection is free again."""
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return sum(cpu - self.start_s.get(pid, 0.0) for pid, cpu in self.last_s.items())


def build_requests(
    channel_id: str, phone_number_id: str, *, messages: int, conversations: int, port: int
) -> list[tuple[str, bytes]]:
    requests = []
    for i in range(messages):
        sender = f"1999{i % conversations:07d}"
        token = f"m{i}-{uuid.uuid4().hex[:8]}"
        body = json.dumps(
            text_envelope(
                phone_number_id=phone_number_id,
                sender=sender,
                text=f"order {token}",
                wamid=f"wamid.bench.{token}",
                name=f"Bench {i % conversations}",
            )
        ).encode()
        head = (
            f"POST /webhooks/whatsapp/{channel_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nX-Hub-Signature-256: {sign_sha256(APP_SECRET, body)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append((token, head + body))
    return requests


async def drive(
    port: int,
    requests: list[tuple[str, bytes]],
    *,
    senders: int,
    sent_at: dict[str, float],
    rate: float | None = None,
) -> tuple[float, dict[str, float], int]:
    """Send every request over `senders` keep-alive connections; with `rate`, the i-th request
    leaves no earlier than i / rate seconds after the start (an open-loop pace)."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in enumerate(requests):
        queue.put_nowait(item)
    latencies: dict[str, float] = {}  # token -> ms
    errors = 0
    begin = time.monotonic()

    async def sender() -> None:
        nonlocal errors
        client = RawClient(port)
        try:
            while not queue.empty():
                index, (token, request) = queue.get_nowait()
                if rate:
                    await asyncio.sleep(max(0.0, begin + index / rate - time.monotonic()))
                started = time.perf_counter()
                sent_at[token] = time.monotonic()
                status = await client.post(request)
                latencies[token] = (time.perf_counter() - started) * 1000
                errors += status != 200
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return time.perf_counter() - started, latencies, errors


def anchor_flow(sink_url: str) -> dict:
    """The anchors' flow (../shared/bench/anchors/switchboard/anchor.flow.json): keyword "order",
    then a POST of the order to the sink."""
    return {
        "schema": "switchboard.flow/v1",
        "name": "Anchor order",
        "status": "active",
        "nodes": [
            {
                "id": "when",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["order"], "mode": "any"}},
            },
            {
                "id": "post",
                "type": "action.call_webhook",
                "config": {
                    "url": sink_url,
                    "method": "POST",
                    "payload_template": {
                        "event": "new_order",
                        "from": "{{ phone_number }}",
                        "text": "{{ message_text }}",
                    },
                    "timeout_seconds": 5.0,
                    "max_retries": 3,
                },
            },
        ],
        "edges": [{"from": "when", "to": "post"}],
    }


async def setup(stack: stack_mod.Stack, *, flow: dict | None = None) -> tuple[stack_mod.Tenant, dict, str]:
    tenant = await stack_mod.create_tenant(stack, name=f"bench-{uuid.uuid4().hex[:6]}")
    phone_number_id = "1234567890"
    channel = await tenant.create_channel(
        kind="whatsapp",
        name="Bench",
        phone_number_id=phone_number_id,
        access_token="bench-token",
        app_secret=APP_SECRET,
        verify_token="v",
    )
    await tenant.create_flow(
        flow
        or {
            "schema": "switchboard.flow/v1",
            "name": "Bench",
            "status": "active",
            "nodes": [
                {
                    "id": "t",
                    "type": "when.message_received",
                    "config": {"match": {"kind": "keywords", "keywords": ["order"]}},
                },
                {
                    "id": "c",
                    "type": "logic.condition",
                    "config": {"left": "{{ message_text }}", "op": "contains", "right": "order"},
                },
                {"id": "s", "type": "action.send_message", "config": {"text": "{{ message_text }}"}},
            ],
            "edges": [{"from": "t", "to": "c"}, {"from": "c", "to": "s", "port": "true"}],
        }
    )
    return tenant, channel, phone_number_id


async def phase(
    *, name: str, buffer_s: str, with_worker: bool, args: argparse.Namespace, anchor: bool = False
) -> dict:
    database_url, redis_url = stack_mod.resolve_test_services()
    database_url = database_url.rsplit("/", 1)[0] + f"/switchboard_bench_{os.getpid()}"
    await stack_mod.create_database(database_url)
    redis = stack_mod.redis_client(redis_url)
    await redis.flushdb()
    os.environ["DATABASE_URL"] = database_url
    from app.settings import get_settings

    get_settings.cache_clear()
    # The fake Graph API runs in a process of its own: in this one, the load generator
    # would starve it and the benchmark would measure the fake instead of the service.
    graph_port = stack_mod.free_port()
    graph = subprocess.Popen([sys.executable, __file__, "--graph-sink", str(graph_port)])
    peer_url = f"http://127.0.0.1:{graph_port}"
    await _wait_port(graph_port)
    replies: dict[str, float] = {}
    try:
        stack = stack_mod.Stack(
            database_url=database_url,
            redis_url=redis_url,
            env={
                "SWITCHBOARD_BUFFER_SECONDS": buffer_s,
                "SWITCHBOARD_BUFFER_MAX_SECONDS": "30",
                # Logging stays at the default level: its cost is part of what a user runs.
                "SWITCHBOARD_SCHEDULER_POLL_SECONDS": "0.005",
                "SWITCHBOARD_LOG_LEVEL": "INFO",
                "WHATSAPP_GRAPH_URL": peer_url,
                "SWITCHBOARD_SECRET_KEY": "bench",
                # The anchor's sink is on 127.0.0.1, and its rate is far above the default limit.
                "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE": "1",
                "SWITCHBOARD_WEBHOOK_RATE_LIMIT_PER_MINUTE": "100000000",
            },
        )
        stack.web.start()
        await stack.wait_healthy()
        try:
            tenant, channel, pnid = await setup(
                stack, flow=anchor_flow(f"{peer_url}/order") if anchor else None
            )
            conversations = args.messages if anchor else args.conversations  # anchor: every sender new
            requests = build_requests(
                channel["id"], pnid, messages=args.messages, conversations=conversations, port=stack.port
            )
            if with_worker:
                stack.worker.args = ["worker", "--concurrency", str(args.concurrency)]
                stack.worker.start()
                # Worker start-up (imports, pool) is not part of the measurement.
                await stack_mod.wait_until(
                    lambda: "worker started" in stack.worker.log_path.read_text(errors="replace"),
                    timeout_s=60,
                    what="the worker to start",
                )
            sent_at: dict[str, float] = {}
            conn = await asyncpg.connect(dsn=database_url)
            postgres_cpu = BackendCPU(conn)
            await postgres_cpu.start()
            web_cpu_before = cpu_s(stack.web.proc.pid)
            worker_cpu_before = cpu_s(stack.worker.proc.pid) if with_worker else 0.0
            elapsed_s, latencies, errors = await drive(
                stack.port,
                requests,
                senders=args.senders,
                sent_at=sent_at,
                rate=args.rate if anchor else None,
            )
            result = {
                "messages": len(requests),
                "conversations": conversations,
                "offered_per_s": args.rate if anchor else None,
                "senders": args.senders,
                "http_errors": errors,
                "accepted_per_s": round(len(requests) / elapsed_s, 1),
                "ingress_p50_ms": percentile(list(latencies.values()), 0.50),
                "ingress_p99_ms": percentile(list(latencies.values()), 0.99),
                # Without each sender's first message (which creates its contact and conversation).
                "ingress_p99_ms_known_senders": percentile(
                    [latencies[t] for t, _ in requests[conversations:] if t in latencies], 0.99
                ),
                "web_during": rss_mb(stack.web.proc.pid),
                # CPU per unit of work varies less than throughput on a shared machine.
                "web_cpu_us_per_message": round(
                    (cpu_s(stack.web.proc.pid) - web_cpu_before) / len(requests) * 1e6
                ),
            }
            try:
                if with_worker:
                    deadline = time.monotonic() + 300
                    while len(replies) < len(requests) and time.monotonic() < deadline:
                        await asyncio.sleep(0.5)
                        replies = await _fetch_replies(peer_url)
                    postgres_s = await postgres_cpu.stop()
                    done_at = max(replies.values()) if replies else time.monotonic()
                    first_sent = min(sent_at.values())
                    runs = await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'completed'")
                    e2e = [(replies[t] - sent_at[t]) * 1000 for t in sent_at if t in replies]
                    result.update(
                        {
                            "replied_messages": len(replies),
                            "turns": runs,
                            "turns_per_s": round(runs / (done_at - first_sent), 1),
                            "messages_replied_per_s": round(len(replies) / (done_at - first_sent), 1),
                            "e2e_p50_ms": percentile(e2e, 0.50),
                            "e2e_p99_ms": percentile(e2e, 0.99),
                            # Kept up: the last reply came within a second of the last request.
                            "drain_s": round(done_at - max(sent_at.values()), 2),
                            "worker_during": rss_mb(stack.worker.proc.pid),
                            "worker_cpu_us_per_turn": round(
                                (cpu_s(stack.worker.proc.pid) - worker_cpu_before) / runs * 1e6
                            ),
                            # The database's side of ingress and turns together (its server processes).
                            "postgres_cpu_us_per_turn": round(postgres_s / runs * 1e6),
                            "postgres_cpu_us_per_message": round(postgres_s / len(requests) * 1e6),
                        }
                    )
                else:
                    result["postgres_cpu_us_per_message"] = round(
                        await postgres_cpu.stop() / len(requests) * 1e6
                    )
                stored = await conn.fetchval("SELECT count(*) FROM messages WHERE direction = 'in'")
                distinct = await conn.fetchval(
                    "SELECT count(DISTINCT provider_message_id) FROM messages WHERE direction = 'in'"
                )
                result["stored_once"] = stored == distinct == len(requests)
                result["stored"] = stored
            finally:
                await conn.close()
            await asyncio.sleep(SETTLE_S)
            result["web_after"] = rss_mb(stack.web.proc.pid)
            if with_worker:
                result["worker_after"] = rss_mb(stack.worker.proc.pid)
            await tenant.aclose()
            return {name: result}
        finally:
            stack.stop()
    finally:
        graph.terminate()
        graph.wait(timeout=10)
        await redis.flushdb()
        await redis.aclose()
        await stack_mod.drop_database(database_url)


async def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while not stack_mod.embedded.port_answers("127.0.0.1", port, timeout_s=0.2):
        if time.monotonic() > deadline:
            raise RuntimeError("the fake Graph API did not start")
        await asyncio.sleep(0.05)


async def _fetch_replies(url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{url}/_replies", timeout=30)).json()


async def graph_sink(port: int) -> None:
    """The fake Graph API: answers sends with a wamid and remembers when each token arrived."""
    replies: dict[str, float] = {}
    counter = iter(range(10**9))

    async def send(request: PeerRequest) -> PeerResponse:
        received = time.monotonic()  # CLOCK_MONOTONIC is system-wide: comparable with the driver's
        for token in request.json()["text"]["body"].split():
            if token != "order":
                replies.setdefault(token, received)
        return PeerResponse(
            status=200,
            headers={"Content-Type": "application/json"},
            body=b'{"messaging_product":"whatsapp","messages":[{"id":"wamid.r%d"}]}' % next(counter),
        )

    async def order(request: PeerRequest) -> PeerResponse:
        """The anchors' counting sink: the order's text carries the message's token."""
        received = time.monotonic()
        for token in request.json()["text"].split():
            if token != "order":
                replies.setdefault(token, received)
        return PeerResponse.json({"ok": True})

    async def dump(_request: PeerRequest) -> PeerResponse:
        return PeerResponse.json(replies)

    async with HttpPeer(port=port) as peer:
        peer.route("POST", "/1234567890/messages", send)
        peer.route("POST", "/order", order)
        peer.route("GET", "/_replies", dump)
        await asyncio.Event().wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=2_000)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=50, help="flush jobs the worker runs at once")
    parser.add_argument("--only", choices=["ingress", "e2e", "anchor"], help="run one phase")
    parser.add_argument("--rate", type=float, default=400.0, help="anchor: messages/s offered")
    parser.add_argument("--graph-sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.graph_sink:
        await graph_sink(args.graph_sink)
        return
    report = {"bench": "ingress", "cpus": os.cpu_count()}
    if args.only == "anchor":
        name = f"anchor_new_senders_rate_{args.rate:g}"
        report.update(await phase(name=name, buffer_s="0", with_worker=True, args=args, anchor=True))
    else:
        if args.only != "e2e":
            report.update(await phase(name="ingress_only", buffer_s="8", with_worker=False, args=args))
        if args.only != "ingress":
            report.update(await phase(name="end_to_end_buffer_0", buffer_s="0", with_worker=True, args=args))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
