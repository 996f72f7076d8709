"""The outbox against a fake Graph API in another process: CPU per reply, and the windows of doubt (prints JSON).

For every reply it measures, from the rows and the fake API's clock (one machine, one clock):
- `recorded_to_post_ms`: from the row recorded (`created_at`) to the request at the Graph API.
  A worker killed here leaves a reply recorded as sending that the provider never saw.
- `accepted_unrecorded_ms`: from the request at the Graph API (where the provider takes the
  message) to the mark that stores its wamid (`status_at`). A worker killed here leaves a reply
  the provider has but the row does not know: the residual window. Since 2026-12 such a reply
  is never sent again; the status callback settles it, or it ends `unknown`.
Each is given at Graph latency 0 and --latency (0.3 s, the chaos scenario), with
`in_doubt_share`: the share of a busy outbox's time during which some reply is in that window.

    python tests/bench/bench_outbox.py [--replies 4000] [--concurrency 40] [--latency 0.3]

Uses DATABASE_URL / REDIS_URL when set, else the local or embedded servers the tests use, in
a database of its own (created and dropped here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PHONE_NUMBER_ID = "5550001"


async def run_sink(latency_s: float) -> None:
    """The Graph API: each wamid carries the moment its request arrived."""
    from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse

    counter = iter(range(10**9))
    peer = HttpPeer()

    async def send(_request: PeerRequest) -> PeerResponse:
        body = b'{"messaging_product":"whatsapp","messages":[{"id":"wamid.%.6f.%d"}]}' % (
            time.time(),
            next(counter),
        )
        return PeerResponse(
            status=200, headers={"Content-Type": "application/json"}, body=body, delay_s=latency_s
        )

    peer.route("POST", f"/{PHONE_NUMBER_ID}/messages", send)
    await peer.start()
    print(peer.port, flush=True)
    parent_gone = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    while not parent_gone.done():
        peer.requests.clear()
        await asyncio.wait([parent_gone], timeout=1.0)
    await peer.stop()


def start_sink(latency_s: float) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--sink", str(latency_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def stop_sink(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def summary(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1], 2)}


async def measure(args: argparse.Namespace, latency_s: float) -> dict[str, object]:
    from app import roots
    from app.services import auth
    from app.services.channels import store as channel_store
    from app.settings import get_settings

    sink, port = start_sink(latency_s)
    os.environ["WHATSAPP_GRAPH_URL"] = f"http://127.0.0.1:{port}"
    get_settings.cache_clear()
    svc = await roots.open_services()
    try:
        principal = await auth.create_admin(
            email=f"bench-{uuid.uuid4().hex[:8]}@example.com",
            password="bench password",
            workspace=f"bench-{uuid.uuid4().hex[:8]}",
        )
        created = await channel_store.create_channel(
            principal.workspace_id,
            channel_store.ChannelCreate(
                kind=channel_store.ChannelKind.WHATSAPP,
                name="Bench",
                phone_number_id=PHONE_NUMBER_ID,
                access_token="bench-token",
                app_secret="s",
                verify_token="v",
            ),
        )
        channel = await channel_store.lookup(created.id)
        workspace = uuid.UUID(principal.workspace_id)
        conversations = []
        for i in range(args.concurrency):
            contact = await svc.db.fetchval(
                "INSERT INTO contacts (id, workspace, phone) VALUES (gen_random_uuid(), $1, $2) RETURNING id",
                workspace,
                f"+1555{i:07d}",
            )
            conversations.append(
                str(
                    await svc.db.fetchval(
                        "INSERT INTO conversations (id, workspace, channel, contact) "
                        "VALUES (gen_random_uuid(), $1, $2, $3) RETURNING id",
                        workspace,
                        uuid.UUID(created.id),
                        contact,
                    )
                )
            )

        async def sender(conversation_id: str, count: int) -> None:
            for _ in range(count):
                await svc.outbox.send(
                    channel,
                    conversation_id=conversation_id,
                    to="15550001111",
                    text="Your order is on its way.",
                    message_type="support",
                    dedupe_key=uuid.uuid4().hex,
                )

        per_sender = -(-args.replies // args.concurrency)
        await asyncio.gather(*(sender(c, 5) for c in conversations))  # warm-up: connections, statements
        warm = await svc.db.fetchval("SELECT max(status_at) FROM messages WHERE direction = 'out'")
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        await asyncio.gather(*(sender(c, per_sender) for c in conversations))
        wall_s = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        rows = await svc.db.fetch(
            "SELECT extract(epoch FROM created_at) AS recorded, extract(epoch FROM status_at) AS marked, "
            "provider_message_id, status FROM messages WHERE direction = 'out' AND created_at > $1",
            warm,
        )
    finally:
        await roots.close_services(svc)
        stop_sink(sink)
    received = [float(r["provider_message_id"].split(".", 1)[1].rsplit(".", 1)[0]) for r in rows]
    recorded_to_post = [(got - float(r["recorded"])) * 1000 for r, got in zip(rows, received)]
    accepted_unrecorded = [(float(r["marked"]) - got) * 1000 for r, got in zip(rows, received)]
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "graph_latency_s": latency_s,
        "replies": len(rows),
        "statuses": sorted({r["status"] for r in rows}),
        "replies_per_s": round(len(rows) / wall_s, 1),
        "cpu_us_per_reply": round(cpu_s / len(rows) * 1e6, 1),
        "recorded_to_post_ms": summary(recorded_to_post),
        "accepted_unrecorded_ms": summary(accepted_unrecorded),
        # Summed windows over elapsed time: how likely a kill at a random moment is to find a reply in them.
        "recorded_to_post_share": round(sum(recorded_to_post) / 1000 / wall_s / args.concurrency, 3),
        "accepted_unrecorded_share": round(sum(accepted_unrecorded) / 1000 / wall_s / args.concurrency, 3),
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    from tests.support import stack

    database_url, redis_url = stack.resolve_test_services()
    database_url = database_url.rsplit("/", 1)[0] + f"/switchboard_bench_outbox_{os.getpid()}"
    os.environ.update(
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    await stack.create_database(database_url)
    from app.db import engine

    await engine.migrate()
    results = []
    try:
        for latency_s in (0.0, args.latency):
            results.append(await measure(args, latency_s))
    finally:
        await stack.drop_database(database_url)
    return {
        "bench": "outbox",
        "cpus": os.cpu_count(),
        "concurrency": args.concurrency,
        "sink": "tests.support.http_peer in a separate process",
        "runs": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=40, help="conversations sending at once")
    parser.add_argument("--latency", type=float, default=0.3, help="the Graph API's answer time, s")
    parser.add_argument("--sink", type=float, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.sink is not None:
        asyncio.run(run_sink(options.sink))
    else:
        print(json.dumps(asyncio.run(main(options)), indent=2))
