"""Benchmark WebhookActions.execute (guard, HTTP, log row, counters) against a loopback sink; prints one JSON object.

Uses DATABASE_URL / REDIS_URL when set, else the local or embedded servers the tests use;
works in a database of its own (created and dropped here) and touches only its own
rate-limit key in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SINK_BODY = json.dumps({"ok": True, "order_id": "A-1"}).encode()


async def run_sink() -> None:
    """The other side: answer every POST /hook with a small JSON body until stdin closes."""
    from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse

    response = PeerResponse(headers={"Content-Type": "application/json"}, body=SINK_BODY)
    peer = HttpPeer()

    async def handler(_request: PeerRequest) -> PeerResponse:
        return response

    peer.route("POST", "/hook", handler)
    await peer.start()
    print(peer.port, flush=True)
    parent_gone = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    while not parent_gone.done():
        peer.requests.clear()  # the request log is for tests; keep the sink's memory flat
        await asyncio.wait([parent_gone], timeout=1.0)
    await peer.stop()


def start_sink() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--sink"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def rss_kib() -> dict[str, int]:
    fields: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0])
    return {"rss_kib": fields.get("VmRSS", 0), "hwm_kib": fields.get("VmHWM", 0)}


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))]


def prepare_environment() -> str:
    """Point this process at a private bench database; returns its URL."""
    from tests.support import stack

    database_url, redis_url = stack.resolve_test_services()
    database_url = database_url.rsplit("/", 1)[0] + f"/switchboard_bench_{os.getpid()}"
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE": "true",
            # The per-workspace limit is a safety valve for production; the bench measures the executor.
            "SWITCHBOARD_WEBHOOK_RATE_LIMIT_PER_MINUTE": str(10**9),
        }
    )
    return database_url


async def measure(args: argparse.Namespace, url: str) -> dict[str, object]:
    from app import roots
    from app.db import engine
    from app.http.client import WebhookClient
    from app.pipeline.effects import TurnScope
    from app.pipeline.schedule import make_queue
    from app.pipeline.webhook_calls import WebhookCalls
    from app.services import auth, flows_store, redis_conn
    from app.settings import get_settings
    from flows.nodes.call_webhook import CallWebhookConfig, WebhookCall
    from flows.runtime import WebhookStatus

    settings = get_settings()
    await engine.migrate()
    db = await engine.open_pool(max_size=settings.database.pool_max_size)
    redis = redis_conn.connect(settings.redis.url)
    flows_store.use_revisions(flows_store.Revisions(redis))
    queue = make_queue(settings.redis.url)
    client = WebhookClient(retry_after_cap_seconds=settings.webhooks.retry_after_cap_seconds)
    actions = WebhookCalls(settings, db=db, redis=redis, queue=queue, client=client)
    roots.freeze_startup_heap()  # as a worker's start-up does
    principal = await auth.create_admin(
        email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
        password="bench password",
        workspace=f"bench-{uuid.uuid4().hex[:8]}",
    )
    config = CallWebhookConfig(
        url=url,
        method="POST",
        headers={"X-Source": "switchboard-bench"},
        payload_template={
            "phone": "{{ phone_number }}",
            "product": "{{ vars.product }}",
            "quantity": "{{ vars.quantity }}",
            "text": "{{ message_text }}",
        },
        timeout_seconds=5.0,
        max_retries=3,
        success_message="Order {{ response.order_id }} created!",
    )
    flow_id = str(uuid.uuid4())

    def turn_scope() -> TurnScope:
        # Each execution belongs to its own turn, as in production: the execution id (and so the
        # Idempotency-Key) is derived from the batch, and one batch never calls an action twice.
        return TurnScope(
            workspace_id=principal.workspace_id,
            conversation_id="",
            contact_phone="+34600000000",
            run_id=str(uuid.uuid4()),
            batch_key=uuid.uuid4().hex,
            original_message="I want to buy 3 iPhones",
        )

    latencies_ms: list[float] = []
    failures = 0

    async def worker(count: int, record: bool) -> None:
        nonlocal failures
        for _ in range(count):
            variables = {"product": "iPhone", "quantity": 3}
            call = WebhookCall(
                flow_id=flow_id,
                node_id="create",
                config=config,
                vars=variables,
                confidence=0.97,
                names={
                    "phone_number": "+34600000000",
                    "message_text": "I want to buy 3 iPhones",
                    "vars": variables,
                    **variables,
                },
            )
            started = time.perf_counter()
            outcome = await actions.execute(call, scope=turn_scope())
            if record:
                latencies_ms.append((time.perf_counter() - started) * 1000.0)
                failures += outcome.status is not WebhookStatus.SUCCESS

    try:
        await asyncio.gather(
            *(worker(max(1, args.warmup // args.concurrency), False) for _ in range(args.concurrency))
        )
        per_worker = -(-args.executions // args.concurrency)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.gather(*(worker(per_worker, True) for _ in range(args.concurrency)))
        wall_s = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        stats = await db.fetchrow(
            "SELECT executions, successes FROM action_stats WHERE flow_id = $1 AND node_id = 'create'",
            uuid.UUID(flow_id),
        )
        logs = await db.fetchval(
            "SELECT count(*) FROM external_action_logs WHERE flow_id = $1", uuid.UUID(flow_id)
        )
        memory = rss_kib()
    finally:
        await actions.aclose()
        await client.aclose()
        await queue.disconnect()
        await redis.aclose()
        await engine.close_pool()
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    latencies_ms.sort()
    return {
        "executions": len(latencies_ms),
        "failures": failures,
        "executions_per_s": round(len(latencies_ms) / wall_s, 1),
        "p50_ms": round(percentile(latencies_ms, 0.50), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
        "cpu_us_per_execution": round(cpu_s / len(latencies_ms) * 1e6, 1),
        "counters_after": {
            "executions": stats["executions"],
            "successes": stats["successes"],
            "log_rows": logs,
        },
        "db_pool_max_size": settings.database.pool_max_size,
        "process_memory": memory,
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    from tests.support import stack

    database_url = prepare_environment()
    await stack.create_database(database_url)
    process, port = start_sink()
    try:
        result = await measure(args, f"http://127.0.0.1:{port}/hook")
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        await stack.drop_database(database_url)
    return {
        "bench": "webhook_actions.execute",
        "concurrency": args.concurrency,
        "loop": "uvloop" if args.uvloop else "asyncio",
        "sink": "tests.support.http_peer in a separate process",
        "cpus": os.cpu_count(),
        **result,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--uvloop", action="store_true", help="run the executor on uvloop")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.sink:
        try:
            import uvloop  # the sink must not be the bottleneck
        except ImportError:
            asyncio.run(run_sink())
        else:
            uvloop.run(run_sink())
    elif options.uvloop:
        import uvloop

        print(json.dumps(uvloop.run(main(options))))
    else:
        print(json.dumps(asyncio.run(main(options))))
