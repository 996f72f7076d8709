"""The fault scenarios of issue 13, at any scale: the suite runs them small, tests/bench/bench_faults.py large.

Each runs against a fresh `ChaosStack` on the `PrivateServices`, injects its faults while
customers write, waits until the system has settled (or its deadline passed), and returns
its figures (tests.support.chaos.figures), already printed as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

from tests.support.chaos import BASE_ENV, HANDOFF_REPLY, ChaosStack, PrivateServices
from tests.support.stack import Process, wait_until


class Scale(msgspec.Struct, kw_only=True, frozen=True):
    """How big each scenario is."""

    kills: int = 5  # the bench kills 12 times; the suite keeps to what catches a regression
    kill_rate: float = 8.0  # messages per second during the kills
    kill_conversations: int = 20
    sends_per_life: int = 3  # replies a restarted worker sends before the next kill
    latency_s: float = 0.3  # the Graph API's answer time
    freeze_rate: float = 8.0
    freeze_max_s: float = 75.0  # a frozen worker is resumed once its jobs were swept, or after this
    flush_rate: float = 6.0
    flush_conversations: int = 12
    outages: int = 2
    outage_s: float = 6.0
    outage_rate: float = 6.0
    outage_conversations: int = 16
    burst: int = 300
    burst_senders: int = 32
    settle_s: float = 90.0  # the deadline for everything stored to be processed and every reply final


SUITE = Scale()
BENCH = Scale(
    kills=12,
    kill_rate=12.0,
    kill_conversations=40,
    freeze_rate=12.0,
    flush_rate=12.0,
    flush_conversations=40,
    outages=3,
    outage_rate=12.0,
    outage_conversations=40,
    burst=5000,
    burst_senders=64,
    settle_s=120.0,
)


@contextlib.asynccontextmanager
async def _streaming(chaos: ChaosStack, *, rate: float, conversations: range):
    """Customers write at `rate` while the body runs."""
    assert chaos.driver is not None
    stream = asyncio.create_task(chaos.driver.stream(rate=rate, conversations=conversations, duration_s=3600))
    try:
        yield
    finally:
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream


async def worker_kills(
    services: PrivateServices, scale: Scale, *, code: Path | None = None
) -> dict[str, Any]:
    """SIGKILL the worker `kills` times while a reply is in flight at the Graph API; restart it each time."""
    async with ChaosStack(services, name="kills", latency_s=scale.latency_s, code=code) as chaos:
        started = time.monotonic()
        worker = chaos.workers[0]
        async with _streaming(chaos, rate=scale.kill_rate, conversations=range(scale.kill_conversations)):
            for _ in range(scale.kills + 1):
                # Each life answers a few batches, then dies with a reply in flight at the Graph API:
                # between the provider's accept and the mark, where a crash makes a reply uncertain.
                await _replies(
                    chaos, more_than=scale.sends_per_life - 1, in_flight=True, what="a reply in flight"
                )
                if _ == scale.kills:
                    break  # the last life lives on
                worker.kill()
                await chaos.start_worker(worker)
        settled = await chaos.settle(timeout_s=scale.settle_s)
        return await chaos.collect(
            "worker_kills", started=started, settled=settled, extra={"kills": scale.kills}
        )


async def frozen_worker(
    services: PrivateServices, scale: Scale, *, code: Path | None = None
) -> dict[str, Any]:
    """SIGSTOP one of two workers while it holds turns, until its jobs are swept; then SIGCONT it."""
    lock_s = float(BASE_ENV["SWITCHBOARD_LOCK_SECONDS"])
    async with ChaosStack(services, name="freeze", workers=2, latency_s=scale.latency_s, code=code) as chaos:
        started = time.monotonic()
        frozen = chaos.workers[0]
        conn = await chaos.db()
        try:
            async with _streaming(chaos, rate=scale.freeze_rate, conversations=range(20)):
                held = False
                for _ in range(5):
                    await wait_until(lambda: chaos.graph.in_flight > 0, timeout_s=60, what="turns at work")
                    before = await conn.fetchval("SELECT count(*) FROM runs WHERE status = 'abandoned'")
                    frozen.freeze()
                    # It held turns if recovery takes them away from it (their heartbeats stopped).
                    try:
                        await wait_until(
                            lambda before=before: conn.fetchval(
                                "SELECT count(*) > $1 FROM runs WHERE status = 'abandoned'", before
                            ),
                            timeout_s=lock_s * 3 + 3,
                            interval_s=0.1,
                            what="the frozen worker's turns given back",
                        )
                    except AssertionError:
                        frozen.thaw()  # caught between turns: try again
                        continue
                    held = True
                    break
                assert held, "the frozen worker never held a turn in five tries"
                frozen_at = time.monotonic()
                try:
                    await wait_until(
                        chaos.swept_jobs,
                        timeout_s=scale.freeze_max_s,
                        interval_s=0.25,
                        what="the frozen worker's jobs swept",
                    )
                    swept = True
                except AssertionError:
                    swept = False
                frozen_s = time.monotonic() - frozen_at
                frozen.thaw()
                # It wakes while customers keep writing, for two lock periods: whatever it does with the
                # turns it lost (their Graph API answers arrive, their next statements run) happens now.
                assert chaos.driver is not None
                mark = chaos.driver.posted
                await wait_until(
                    lambda: chaos.driver.posted >= mark + scale.freeze_rate * lock_s * 2,
                    timeout_s=60,
                    what="more messages after the thaw",
                )
        finally:
            await conn.close()
        settled = await chaos.settle(timeout_s=scale.settle_s)
        return await chaos.collect(
            "frozen_worker",
            started=started,
            settled=settled,
            extra={
                "frozen_s": round(frozen_s, 1),
                "swept_while_frozen": swept,
                "thawed_alive": frozen.alive(),
                "thawed_noticed_lost_locks": _count(frozen, '"conversation lock lost"'),
            },
        )


async def redis_flushes(
    services: PrivateServices, scale: Scale, *, code: Path | None = None
) -> dict[str, Any]:
    """FLUSHALL twice while messages sit in their buffer windows, two conversations handed to a person."""
    env = {"SWITCHBOARD_BUFFER_SECONDS": "1.0", "SWITCHBOARD_BUFFER_MAX_SECONDS": "3"}
    async with ChaosStack(services, name="flush", latency_s=scale.latency_s, env=env, code=code) as chaos:
        assert chaos.driver is not None
        started = time.monotonic()
        by_flow, by_agent = 1000, 1001
        # One customer asks for a person (the flow turns the AI off), another is taken over by an agent.
        await chaos.driver.deliver(by_flow, "a human please")
        await wait_until(
            lambda: any(s.text == HANDOFF_REPLY for s in chaos.sends_to(by_flow)),
            timeout_s=30,
            what="hand-off",
        )
        await chaos.driver.deliver(by_agent, "hello there")
        await wait_until(lambda: chaos.sends_to(by_agent), timeout_s=30, what="the bot's first answer")
        await chaos.hand_off_by_agent(by_agent)
        before = {c: len(chaos.sends_to(c)) for c in (by_flow, by_agent)}
        redis = aioredis.Redis.from_url(services.redis_url)
        try:
            async with _streaming(
                chaos, rate=scale.flush_rate, conversations=range(scale.flush_conversations)
            ):
                for round_ in range(2):
                    await wait_until(lambda: chaos.graph.sends, timeout_s=30, what="replies flowing")
                    for customer in (by_flow, by_agent):
                        await chaos.driver.deliver(customer, f"are you there? ({round_})")
                    # Mid-buffer: those two (and the stream's latest) are stored, waiting out their window.
                    await redis.flushall()
                    await _replies(chaos, more_than=5, what="replies after the flush")
        finally:
            await redis.aclose()
        settled = await chaos.settle(timeout_s=scale.settle_s)
        answered_after_handoff = sum(len(chaos.sends_to(c)) - before[c] for c in (by_flow, by_agent))
        return await chaos.collect(
            "redis_flushes",
            started=started,
            settled=settled,
            extra={"flushes": 2, "bot_answered_handed_off": answered_after_handoff},
        )


async def postgres_outages(
    services: PrivateServices, scale: Scale, *, code: Path | None = None
) -> dict[str, Any]:
    """Stop PostgreSQL for `outage_s`, `outages` times, while customers write (they deliver again on 5xx)."""
    async with ChaosStack(services, name="postgres", latency_s=scale.latency_s, code=code) as chaos:
        started = time.monotonic()
        async with _streaming(chaos, rate=scale.outage_rate, conversations=range(scale.outage_conversations)):
            for _ in range(scale.outages):
                await wait_until(lambda: chaos.graph.in_flight > 0, timeout_s=60, what="replies in flight")
                await asyncio.to_thread(services.stop_postgres)
                await asyncio.sleep(scale.outage_s)  # the outage itself, not a wait for an outcome
                await asyncio.to_thread(services.start_postgres)
                await _replies(chaos, more_than=5, what="replies after the outage")
        settled = await chaos.settle(timeout_s=scale.settle_s)
        return await chaos.collect(
            "postgres_outages",
            started=started,
            settled=settled,
            extra={"outages": scale.outages, "outage_s": scale.outage_s},
        )


async def burst(services: PrivateServices, scale: Scale, *, code: Path | None = None) -> dict[str, Any]:
    """`burst` single-message conversations as fast as the webhook takes them, buffer 0, one worker."""
    env = {"SWITCHBOARD_BUFFER_SECONDS": "0", "SWITCHBOARD_BUFFER_MAX_SECONDS": "30"}
    async with ChaosStack(services, name="burst", latency_s=0.0, env=env, concurrency=20, code=code) as chaos:
        assert chaos.driver is not None
        started = time.monotonic()
        await chaos.driver.burst(range(10_000, 10_000 + scale.burst), senders=scale.burst_senders)
        accepted_s = time.monotonic() - started
        settled = await chaos.settle(timeout_s=scale.settle_s)
        return await chaos.collect(
            "burst", started=started, settled=settled, extra={"burst_accepted_s": round(accepted_s, 1)}
        )


async def _replies(chaos: ChaosStack, *, more_than: int, what: str, in_flight: bool = False) -> None:
    """Wait until the Graph API took more than `more_than` replies from now (and, with `in_flight`, one is
    being answered)."""
    mark = len(chaos.graph.sends)
    await wait_until(
        lambda: len(chaos.graph.sends) > mark + more_than and (not in_flight or chaos.graph.in_flight > 0),
        timeout_s=90,
        interval_s=0.01,
        what=what,
    )


def _count(process: Process, needle: str) -> int:
    try:
        return process.log_path.read_text(errors="replace").count(needle)
    except FileNotFoundError:
        return 0


SCENARIOS = {
    "worker_kills": worker_kills,
    "frozen_worker": frozen_worker,
    "redis_flushes": redis_flushes,
    "postgres_outages": postgres_outages,
    "burst": burst,
}
