"""Composition roots: build each process's services once and pass them in (no service locator).

- web: `app.asgi.create_app` opens `AppServices` on start-up and keeps it in the Litestar
  app state; controllers receive it as the `services` dependency.
- worker: `build_worker` puts the same `AppServices` in SAQ's `ctx`, which the job
  functions below read.
- CLI: `cli_services()` opens them around one command.

Everything a service needs comes through its constructor, here, in the order a message
meets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpcore
from redis.asyncio import Redis
from saq import Worker
from saq.queue.redis import RedisQueue

from app.db import engine
from app.http.client import WebhookClient
from app.http.guard import GuardedBackend, host_port
from app.http.pool import KeepAlivePool
from app.http.stream import AsyncioBackend
from app.http.transport import httpx_client
from app.pipeline.buffer import Buffer
from app.pipeline.flush import Flusher
from app.pipeline.ingress import Ingress
from app.pipeline.ledger import RunLedger
from app.pipeline.outbox import Outbox
from app.pipeline.recovery import Recovery
from app.pipeline.schedule import Scheduler, make_queue
from app.pipeline.statuses import Statuses
from app.pipeline.turn import TurnRunner
from app.pipeline.webhook_calls import WebhookCalls
from app.services import flows_store, redis_conn
from app.services.ai.llm import LLMClient
from app.services.ai.understanding import Understanding
from app.services.ai_state import AIStateStore
from app.services.channels.checks import ChannelChecks
from app.services.channels.whatsapp import WhatsAppSender
from app.services.conversations import Conversations
from app.services.dry_run import Tester
from app.services.events import LiveEvents
from app.services.rate_limits import LoginThrottle
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class AppServices:
    """Everything a web, worker or CLI process shares; one instance per process."""

    settings: Settings
    db: asyncpg.Pool
    redis: Redis
    pipeliner: redis_conn.Pipeliner
    queue: RedisQueue
    publisher: LiveEvents
    outbound_http: KeepAlivePool  # the Graph API, the LLM, channel checks; address-guarded (outbound_backend)
    webhook_client: WebhookClient  # customers' endpoints, address-guarded
    # The message path, in the order a message meets it (app/pipeline).
    ingress: Ingress
    buffer: Buffer
    ledger: RunLedger
    turns: TurnRunner
    webhook_calls: WebhookCalls
    outbox: Outbox
    statuses: Statuses
    # The stores and the AI (app/services).
    ai_store: AIStateStore
    plans: flows_store.PlanCache
    understanding: Understanding
    conversations: Conversations
    tester: Tester
    channel_checks: ChannelChecks
    login_throttle: LoginThrottle
    _closers: list[Any] = field(default_factory=list)


async def open_services(settings: Settings | None = None) -> AppServices:
    """Open connections (migrations are the CLI's job) and build every service once."""
    settings = settings or get_settings()
    db = await engine.open_pool(max_size=settings.database.pool_max_size)
    redis = redis_conn.connect(settings.redis.url)
    pipeliner = redis_conn.Pipeliner(redis)
    queue = make_queue(settings.redis.url)
    await queue.connect()
    publisher = LiveEvents(redis, pipeliner)
    outbound_http = KeepAlivePool(max_connections=128, network_backend=outbound_backend(settings))
    webhook_client = WebhookClient(retry_after_cap_seconds=settings.webhooks.retry_after_cap_seconds)
    llm_http = httpx_client(outbound_http)
    understanding = Understanding(
        ambiguity_margin=settings.ai.ambiguity_margin,
        llm=LLMClient(timeout_s=settings.ai.llm_timeout_seconds, http_client=llm_http),
    )
    ai_store = AIStateStore(db, redis, ttl_s=settings.ai.state_ttl_seconds, pipeliner=pipeliner)
    revisions = flows_store.Revisions(redis)
    flows_store.use_revisions(revisions)
    plans = flows_store.PlanCache(revisions)
    buffer = Buffer(
        redis,
        quiet_s=settings.buffer.seconds,
        max_s=settings.buffer.max_seconds,
        lock_s=settings.buffer.lock_seconds,
    )
    statuses = Statuses(db, redis, pipeliner, publisher)
    outbox = Outbox(
        db,
        WhatsAppSender(settings.channels, pool=outbound_http),
        publisher,
        on_sent=statuses.replay_parked,
        callbacks_seen=statuses.callbacks_seen,
        evidence_s=settings.channels.send_evidence_seconds,
    )
    webhook_calls = WebhookCalls(settings, db=db, redis=redis, queue=queue, client=webhook_client)
    ledger = RunLedger(db)
    turns = TurnRunner(
        settings,
        db=db,
        ledger=ledger,
        outbox=outbox,
        ai_store=ai_store,
        plans=plans,
        understanding=understanding,
        webhooks=webhook_calls,
        publisher=publisher,
    )
    ingress = Ingress(db, buffer)
    svc = AppServices(
        settings=settings,
        db=db,
        redis=redis,
        pipeliner=pipeliner,
        queue=queue,
        publisher=publisher,
        outbound_http=outbound_http,
        webhook_client=webhook_client,
        ingress=ingress,
        buffer=buffer,
        ledger=ledger,
        turns=turns,
        webhook_calls=webhook_calls,
        outbox=outbox,
        statuses=statuses,
        ai_store=ai_store,
        plans=plans,
        understanding=understanding,
        conversations=Conversations(db, ai_store=ai_store, outbox=outbox, publisher=publisher),
        tester=Tester(
            settings,
            db=db,
            plans=plans,
            understanding=understanding,
            webhook_client=webhook_client,
            rate_limiter=webhook_calls.rate_limiter,
        ),
        login_throttle=LoginThrottle(
            redis,
            account_failures=settings.security.login_max_failures,
            address_failures=settings.security.login_max_failures_per_address,
        ),
        channel_checks=ChannelChecks(
            httpx_client(outbound_http, timeout=5.0), public_url=settings.public_url
        ),
    )
    # Closed in reverse order of need: what produces work first, connections last.
    svc._closers = [
        ingress.aclose,
        ledger.aclose,
        webhook_calls.aclose,
        understanding.local_meter.flush,  # local-engine calls are counted in batches
        understanding.llm.aclose,
        outbox.aclose,
        webhook_client.aclose,
        svc.channel_checks.aclose,
        llm_http.aclose,
        outbound_http.aclose,
        queue.disconnect,
        pipeliner.aclose,
        redis.aclose,
        engine.close_pool,
    ]
    return svc


def outbound_backend(settings: Settings) -> httpcore.AsyncNetworkBackend:
    """How the process's own requests connect: through the address guard, except to the hosts the
    operator configured (WHATSAPP_GRAPH_URL, OPENAI_BASE_URL, SWITCHBOARD_PUBLIC_URL). A workspace's
    own LLM base URL is a tenant's choice, so it is checked like a webhook's, at connect time.
    SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE turns the guard off, as it does for webhooks."""
    if settings.webhooks.allow_private:
        return AsyncioBackend()
    urls = (settings.channels.whatsapp_graph_url, settings.ai.openai_base_url, settings.public_url)
    return GuardedBackend(operator_hosts=[hp for hp in map(host_port, urls) if hp is not None])


async def close_services(svc: AppServices) -> None:
    for close in svc._closers:
        await close()


@contextlib.asynccontextmanager
async def cli_services() -> AsyncIterator[AppServices]:
    """The CLI's root: services for the length of one command."""
    svc = await open_services()
    try:
        yield svc
    finally:
        await close_services(svc)


# --- the worker's root: SAQ jobs read the services from ctx --------------------------------


async def flush_conversations(ctx: dict[str, Any], *, conversation_ids: list[str]) -> dict[str, Any]:
    """SAQ job: process several conversations' due batches (app.pipeline.flush); idempotent."""
    job = ctx.get("job")
    flusher: Flusher = ctx["flusher"]
    results = await flusher.flush(conversation_ids, job_id=job.key if job else "")
    statuses: dict[str, int] = {}
    for result in results:
        status = str(result.get("status"))
        statuses[status] = statuses.get(status, 0) + 1
    return {"conversations": len(results), "statuses": statuses}


async def retry_webhook(ctx: dict[str, Any], *, execution_id: str, attempt: int) -> dict[str, Any]:
    """SAQ job: one scheduled retry of a webhook execution; the flow continues when it ends."""
    svc: AppServices = ctx["services"]
    outcome = await svc.turns.retry_webhook(execution_id, attempt)
    if outcome is None:
        return {"status": "skipped"}
    return {"status": outcome.status.value, "attempts": outcome.attempts}


class WorkerRoot:
    """A worker's own parts over the process's services: the flusher, recovery and the scheduler."""

    def __init__(self, svc: AppServices) -> None:
        settings = svc.settings.buffer
        self.services = svc
        self.flusher = Flusher(svc.buffer, svc.turns, svc.ledger, pipeliner=svc.pipeliner)
        self.recovery = Recovery(
            svc.db,
            svc.buffer,
            svc.ledger,
            svc.outbox,
            ai_store=svc.ai_store,
            lock_s=settings.lock_seconds,
            quiet_s=settings.seconds,
            max_s=settings.max_seconds,
        )
        self.scheduler = Scheduler(
            queue=svc.queue,
            buffer=svc.buffer,
            flusher=self.flusher,
            recovery=self.recovery,
            poll_s=settings.poll_seconds,
            recovery_interval_s=settings.recovery_interval_seconds,
        )


class _QuickStopWorker(Worker):
    """SAQ's worker, except that stopping does not wait out the grace period when no job is running.

    SAQ's stop() waits up to shutdown_grace_period_s for every task, and its upkeep loops
    (sleeping up to 30 s) and idle dequeues never finish by themselves: each Ctrl-C, `kill` or
    `docker stop` took the full 10 s (and `docker stop` kills after 10 s). Running jobs still get
    the whole grace period; what is left once they are done is idle and is cancelled.
    """

    async def stop(self) -> None:
        self.event.set()
        deadline = time.monotonic() + (self._shutdown_grace_period_s or 0)
        if self.job_task_contexts:
            log.info(
                "worker stopping: waiting for running jobs",
                extra={"jobs": [f"{job.function}:{job.key}" for job in self.job_task_contexts]},
            )
        # SAQ signals nothing when a job's bookkeeping (its final status) is done: poll for it.
        while self.job_task_contexts and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if not self.job_task_contexts:
            await asyncio.sleep(0)  # a finished job's task runs its last hooks
            pending = {task for task in self.tasks if not task.done()}
            # redis-py (and asyncio itself on 3.11) can swallow a cancel and carry on into the next
            # blocking read or sleep: cancel again until every task has ended (at most 5 s).
            for _ in range(50):
                if not pending:
                    break
                for task in pending:
                    task.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.1)
        await super().stop()


def build_worker(root: WorkerRoot, *, concurrency: int, install_signals: bool) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["services"] = root.services
        ctx["flusher"] = root.flusher
        await root.recovery.recover_once()
        root.scheduler.start_loops()
        log.info("worker started", extra={"pid": os.getpid(), "concurrency": concurrency})

    async def shutdown(ctx: dict[str, Any]) -> None:
        await root.scheduler.stop_loops()

    # Our jobs keep the process's services in ctx, beside SAQ's own keys.
    worker = _QuickStopWorker(
        root.services.queue,
        functions=[flush_conversations, retry_webhook],
        concurrency=concurrency,
        startup=startup,
        shutdown=shutdown,
        # Sweeps re-queue jobs of workers that died; our own recovery covers the data.
        timers={"schedule": 1, "sweep": 30, "abort": 1, "worker_info": 10},
        shutdown_grace_period_s=10,
    )
    if not install_signals:
        worker.SIGNALS = []  # inside `switchboard run`, uvicorn owns the signals
    return worker


class InProcessWorker:
    """A worker in the web process's event loop (`switchboard run`)."""

    def __init__(self, svc: AppServices, *, concurrency: int) -> None:
        self.root = WorkerRoot(svc)
        self.worker = build_worker(self.root, concurrency=concurrency, install_signals=False)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.worker.start(), name="sb-worker")

    async def stop(self) -> None:
        try:
            await self.worker.stop()
        except Exception:  # shutting down: the services must still close
            log.exception("stopping the worker failed")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def run_worker(*, concurrency: int, stop_signals: Sequence[int]) -> int | None:
    """The worker process's root (`switchboard worker`): until one of `stop_signals`, which it returns.

    The loop's own handlers from the first moment: an exception raised by a plain signal
    handler inside uvloop is lost, and with it the stop.
    """
    loop = asyncio.get_running_loop()
    stopped_by: list[int] = []
    stop_requested = asyncio.Event()

    def request_stop(signum: int) -> None:
        stopped_by.append(signum)
        stop_requested.set()

    for sig in stop_signals:
        loop.add_signal_handler(sig, request_stop, sig)
    svc = await open_services()
    worker = build_worker(WorkerRoot(svc), concurrency=concurrency, install_signals=False)
    running = asyncio.Event()

    async def mark_running(_ctx: dict[str, Any]) -> None:
        running.set()

    async def stop_when_asked() -> None:
        await stop_requested.wait()
        await running.wait()  # SAQ makes the event it waits on when it starts
        worker.event.set()

    assert worker.startup is not None  # build_worker gives it one
    worker.startup.append(mark_running)
    watcher = asyncio.create_task(stop_when_asked())
    freeze_startup_heap()
    try:
        if not stop_requested.is_set():
            await worker.start()
    finally:
        watcher.cancel()
        await close_services(svc)
    return stopped_by[0] if stopped_by else None


def freeze_startup_heap() -> None:
    """Keep what start-up built (modules, the app, pools) out of the garbage collector's scans.

    Measured under bench_ingress: the web process paused 60-110 ms about once a second in
    full collections that walked every object it had ever imported, stalling every request
    in flight at once (its p99 latency). Frozen objects are never scanned again; what
    requests allocate is collected as before, in young collections every 10,000 allocations
    rather than 700: with the default, collecting took 10-13% of the web's and the worker's
    CPU under load (asyncio allocates on every await); with it, about half that.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
