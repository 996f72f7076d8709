"""Benchmark WebhookClient.attempt() against a loopback sink in another process; prints one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.http.client import WebhookClient  # noqa: E402
from app.http.request import WebhookRequest  # noqa: E402
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse  # noqa: E402

SINK_BODY = json.dumps({"ok": True, "order_id": "A-1"}).encode()


async def run_sink() -> None:
    """The other side: answer every POST /hook with a small JSON body, forever."""
    response = PeerResponse(headers={"Content-Type": "application/json"}, body=SINK_BODY)
    peer = HttpPeer()

    async def handler(_request: PeerRequest) -> PeerResponse:
        return response

    peer.route("POST", "/hook", handler)
    await peer.start()
    print(peer.port, flush=True)
    # Stop when the parent closes our stdin (or dies), so no sink outlives its bench.
    parent_gone = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    while not parent_gone.done():
        # The log is only for tests; a long bench must not grow it without bound.
        peer.requests.clear()
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


def memory_kib() -> dict[str, int]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0])
    return {"rss_kib": fields.get("VmRSS", 0), "hwm_kib": fields.get("VmHWM", 0)}


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(
    url: str, *, allow_private: bool, total: int, concurrency: int, warmup: int
) -> dict[str, object]:
    allowed = () if allow_private else (ipaddress.ip_network("127.0.0.1/32"),)
    async with WebhookClient(allowed_networks=allowed) as client:
        latencies_ms: list[float] = []
        failures = 0

        async def worker(count: int, record: bool) -> None:
            nonlocal failures
            for i in range(count):
                request = WebhookRequest(
                    url=url,
                    idempotency_key=f"bench-{i}",
                    json_body={"order": {"sku": "X1", "qty": 2}, "phone": "+34600000000", "n": i},
                    headers={"Authorization": "Bearer sk_bench_secret"},
                    secret_values=["sk_bench_secret"],
                )
                started = time.perf_counter()
                result = await client.attempt(request, allow_private=allow_private)
                if record:
                    latencies_ms.append((time.perf_counter() - started) * 1000.0)
                    if not result.succeeded:
                        failures += 1

        await asyncio.gather(*(worker(warmup // concurrency, False) for _ in range(concurrency)))
        per_worker = -(-total // concurrency)
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        wall_started = time.perf_counter()
        await asyncio.gather(*(worker(per_worker, True) for _ in range(concurrency)))
        wall_s = time.perf_counter() - wall_started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)

    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    latencies_ms.sort()
    return {
        "guard": "connect-time guard (allow_private off, 127.0.0.1/32 allow-listed)"
        if not allow_private
        else "allow_private",
        "requests": len(latencies_ms),
        "failures": failures,
        "executions_per_s": round(len(latencies_ms) / wall_s, 1),
        "p50_ms": round(percentile(latencies_ms, 0.50), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
        "client_cpu_us_per_request": round(cpu_s / len(latencies_ms) * 1e6, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, object]:
    process, port = start_sink()
    try:
        url = f"http://127.0.0.1:{port}/hook"
        runs = []
        for allow_private in (False, True):
            runs.append(
                await measure(
                    url,
                    allow_private=allow_private,
                    total=args.requests,
                    concurrency=args.concurrency,
                    warmup=args.warmup,
                )
            )
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "bench": "webhooks.attempt",
        "concurrency": args.concurrency,
        "loop": "uvloop" if args.uvloop else "asyncio",
        "sink": "tests.support.http_peer in a separate process",
        "cpus": os.cpu_count(),
        "runs": runs,
        "client_memory": {**memory_kib(), "ru_maxrss_kib": usage.ru_maxrss},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.sink:
        try:
            import uvloop  # the sink must not be the bottleneck; it gets the faster loop when available
        except ImportError:
            asyncio.run(run_sink())
        else:
            uvloop.run(run_sink())
    else:
        if options.uvloop:
            import uvloop

            report = uvloop.run(main(options))
        else:
            report = asyncio.run(main(options))
        print(json.dumps(report))
