"""SAQ jobs and the worker: the due-conversation scheduler, the flush job, and recovery.

SAQ keeps its own keys under `saq:` (its fixed prefix); everything Switchboard writes is
under `sb:`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from saq import Queue, Worker

from app.services import buffer as buffer_mod
from app.services import turns

log = logging.getLogger(__name__)

QUEUE_NAME = "switchboard"
FLUSH_JOB = "flush_conversation"


def flush_job_key(conversation_id: str) -> str:
    # Unique per due time: the due set's atomic pop already makes one job per window, and a
    # job stuck "active" in SAQ after its worker died must not block the next one; the
    # conversation lock keeps batches of one conversation one at a time.
    return f"flush:{conversation_id}:{time.time_ns()}"


def make_queue(redis_url: str) -> Queue:
    return Queue.from_url(redis_url, name=QUEUE_NAME)


async def flush_conversation(ctx: dict[str, Any], *, conversation_id: str) -> dict[str, Any]:
    """Process one conversation's due batch under its lock; idempotent."""
    state: WorkerState = ctx["state"]
    buffer = state.buffer
    token = await buffer.acquire(conversation_id)
    if token is None:
        # Another worker is on this conversation: come back right after it.
        await buffer.mark_due(conversation_id, delay_s=0.2)
        return {"status": "locked"}
    job = ctx.get("job")
    beat = asyncio.create_task(_keep_alive(state, conversation_id, token))
    try:
        return await turns.process_conversation(state.deps, conversation_id, job_id=job.key if job else "")
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await buffer.release(conversation_id, token)


async def _keep_alive(state: WorkerState, conversation_id: str, token: str) -> None:
    """Extend the lock and the run's heartbeat while a long turn runs (webhooks, LLM calls)."""
    interval_s = max(state.buffer.lock_s / 3, 0.05)
    while True:
        await asyncio.sleep(interval_s)
        if not await state.buffer.extend(conversation_id, token):
            log.warning("conversation lock lost", extra={"conversation_id": conversation_id})
            return
        await turns.heartbeat(conversation_id)


class WorkerState:
    """Per-process worker state: dependencies plus the scheduler and recovery loops."""

    def __init__(self, *, queue: Queue, buffer: buffer_mod.Buffer, deps: turns.TurnDeps,
                 poll_s: float, recovery_interval_s: float) -> None:
        self.queue = queue
        self.buffer = buffer
        self.deps = deps
        self.poll_s = poll_s
        self.recovery_interval_s = recovery_interval_s
        self.tasks: list[asyncio.Task] = []

    def start_loops(self) -> None:
        self.tasks.append(asyncio.create_task(self._scheduler(), name="sb-scheduler"))
        self.tasks.append(asyncio.create_task(self._recovery(), name="sb-recovery"))

    async def stop_loops(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()

    async def enqueue_flush(self, conversation_id: str) -> bool:
        job = await self.queue.enqueue(
            FLUSH_JOB, conversation_id=conversation_id, key=flush_job_key(conversation_id),
            timeout=int(max(self.buffer.lock_s * 2, 30)), retries=3, ttl=60,
        )
        return job is not None

    async def _scheduler(self) -> None:
        while True:
            try:
                due = await self.buffer.pop_due()
                for conversation_id in due:
                    if not await self.enqueue_flush(conversation_id):
                        # Refused by the queue (a key clash): signal it again shortly.
                        await self.buffer.mark_due(conversation_id, delay_s=0.2)
                if not due:
                    await asyncio.sleep(self.poll_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler iteration failed; retrying")
                await asyncio.sleep(1.0)

    async def _recovery(self) -> None:
        while True:
            try:
                await self.recover_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recovery iteration failed; retrying")
            await asyncio.sleep(self.recovery_interval_s)

    async def recover_once(self) -> int:
        """Give back batches of dead workers, and re-signal stored messages Redis forgot."""
        settings = self.deps.settings.buffer
        await turns.release_abandoned_runs(stale_after_s=settings.lock_seconds)
        candidates = await turns.unprocessed_conversations(older_than_s=settings.seconds + 1.0)
        forgotten = [c for c, in_flight in zip(candidates, await self.buffer.in_flight(candidates)) if not in_flight]
        for conversation_id in forgotten:
            await self.buffer.mark_due(conversation_id, only_if_absent=True)
        if forgotten:
            log.info("recovered unprocessed conversations", extra={"count": len(forgotten)})
        return len(forgotten)


def build_worker(state: WorkerState, *, concurrency: int, install_signals: bool,
                 extra_functions: list | None = None) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["state"] = state
        await state.recover_once()
        state.start_loops()
        log.info("worker started", extra={"pid": os.getpid(), "concurrency": concurrency})

    async def shutdown(ctx: dict[str, Any]) -> None:
        await state.stop_loops()

    worker = Worker(
        state.queue,
        functions=[flush_conversation, *(extra_functions or [])],
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
