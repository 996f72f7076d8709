"""Process lifecycle: open the pool and Redis, build the shared services, start/stop the worker."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from dataclasses import dataclass, field

import msgspec
from saq import Queue

from app.db import engine
from app.services import buffer as buffer_mod
from app.services import flows_store, jobs, redis_conn, turns
from app.services import ingress as ingress_mod
from app.services.ai.understanding import Understanding
from app.services.ai_state import AIStateStore
from app.services.channels.whatsapp import WhatsAppSender
from app.services.outbound import Outbox
from app.services.webhook_actions import WebhookActions
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything a web or worker process shares; one instance per process."""

    settings: Settings
    buffer: buffer_mod.Buffer
    queue: Queue
    ai_store: AIStateStore
    outbox: Outbox
    understanding: Understanding
    webhooks: WebhookActions
    plans: flows_store.PlanCache
    ingress: ingress_mod.IngressWriter
    ledger: turns.RunLedger
    worker_tasks: list[asyncio.Task] = field(default_factory=list)
    worker_state: jobs.WorkerState | None = None

    @property
    def deps(self) -> turns.TurnDeps:
        return turns.TurnDeps(
            settings=self.settings,
            ledger=self.ledger,
            outbox=self.outbox,
            ai_store=self.ai_store,
            plans=self.plans,
            understanding=self.understanding,
            webhooks=self.webhooks,
        )


_services: Services | None = None


def services() -> Services:
    if _services is None:
        raise RuntimeError("services are not started: the app's on_startup calls lifecycle.start()")
    return _services


async def start(*, run_worker: bool = False, worker_concurrency: int = 20) -> Services:
    """Open connections (migrations are the CLI's job) and optionally run a worker in this loop."""
    global _services
    settings = get_settings()
    await engine.open_pool(max_size=settings.database.pool_max_size)
    redis = redis_conn.connect(settings.redis.url)
    queue = jobs.make_queue(settings.redis.url)
    await queue.connect()
    understanding = Understanding(ambiguity_margin=settings.ai.ambiguity_margin)
    outbox = Outbox(WhatsAppSender(settings.channels))
    ai_store = AIStateStore(redis, ttl_s=settings.ai.state_ttl_seconds, pipeliner=redis_conn.pipeliner())
    plans = flows_store.PlanCache()
    buffer = buffer_mod.Buffer(
        redis,
        quiet_s=settings.buffer.seconds,
        max_s=settings.buffer.max_seconds,
        lock_s=settings.buffer.lock_seconds,
    )
    svc = Services(
        settings=settings,
        buffer=buffer,
        ingress=ingress_mod.IngressWriter(buffer),
        ledger=turns.RunLedger(),
        queue=queue,
        ai_store=ai_store,
        outbox=outbox,
        understanding=understanding,
        webhooks=WebhookActions(settings, queue=queue, outbox=outbox),
        plans=plans,
    )
    _services = svc

    async def resume(execution_id: str, outcome) -> None:
        await turns.resume_after_webhook(svc.deps, execution_id, outcome)

    svc.webhooks.resume = resume
    if run_worker:
        state = jobs.WorkerState(
            queue=queue,
            buffer=svc.buffer,
            deps=svc.deps,
            poll_s=settings.buffer.poll_seconds,
            recovery_interval_s=settings.buffer.recovery_interval_seconds,
        )
        svc.worker_state = state
        worker = jobs.build_worker(
            state,
            concurrency=worker_concurrency,
            install_signals=False,
            extra_functions=svc.webhooks.job_functions(),
        )
        svc.worker_tasks.append(asyncio.create_task(worker.start(), name="sb-worker"))
        svc.worker_tasks.append(asyncio.create_task(_hold(worker), name="sb-worker-holder"))
    freeze_startup_heap()
    return svc


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


async def _hold(worker) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await worker.stop()


async def stop() -> None:
    global _services
    svc = _services
    if svc is None:
        return
    for task in reversed(svc.worker_tasks):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await svc.ingress.aclose()
    await svc.ledger.aclose()
    await svc.understanding.local_meter.flush()  # local-engine calls are counted in batches
    await svc.understanding.llm.aclose()
    await svc.webhooks.aclose()
    await svc.outbox.aclose()
    await svc.queue.disconnect()
    await redis_conn.close()
    await engine.close_pool()
    _services = None


_log_encoder = msgspec.json.Encoder(enc_hook=str)  # anything unusual in a record's context is logged as str


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the record's context fields (conversation_id, ...)."""

    _skip = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _log_encoder.encode(entry).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request access lines and SAQ's per-job chatter drown the structured records.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("saq").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
