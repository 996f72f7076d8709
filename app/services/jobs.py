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
from collections import Counter
from typing import Any

from saq import Queue, Worker

from app.services import buffer as buffer_mod
from app.services import events, redis_conn, turns

log = logging.getLogger(__name__)

QUEUE_NAME = "switchboard"
FLUSH_JOB = "flush_conversation"
FLUSH_BATCH_JOB = "flush_conversations"
# Conversations per flush job: SAQ's own bookkeeping (enqueue, dequeue, status updates,
# finish: about seven Redis round trips and three log lines) is paid once per job.
FLUSH_BATCH_MAX = 64


def flush_job_key(conversation_id: str) -> str:
    # Unique per due time: the due set's atomic pop already makes one job per window, and a
    # job stuck "active" in SAQ after its worker died must not block the next one; the
    # conversation lock keeps batches of one conversation one at a time.
    return f"flush:{conversation_id}:{time.time_ns()}"


def make_queue(redis_url: str) -> Queue:
    return Queue.from_url(redis_url, name=QUEUE_NAME)


async def flush_conversation(ctx: dict[str, Any], *, conversation_id: str) -> dict[str, Any]:
    """Process one conversation's due batch under its lock; idempotent."""
    job = ctx.get("job")
    return (await _flush(ctx["state"], [conversation_id], job_id=job.key if job else ""))[0]


async def flush_conversations(ctx: dict[str, Any], *, conversation_ids: list[str]) -> dict[str, Any]:
    """Process several conversations' due batches concurrently, each under its own lock; idempotent."""
    job = ctx.get("job")
    results = await _flush(ctx["state"], conversation_ids, job_id=job.key if job else "")
    return {"conversations": len(results), "statuses": dict(Counter(str(r.get("status")) for r in results))}


async def _flush(state: WorkerState, conversation_ids: list[str], *, job_id: str) -> list[dict[str, Any]]:
    buffer = state.buffer
    conversation_ids = list(dict.fromkeys(conversation_ids))
    tokens = await buffer.acquire_many(conversation_ids)
    held = {c: t for c, t in zip(conversation_ids, tokens) if t is not None}
    # Another worker is on these conversations: come back right after it.
    await buffer.mark_due_many([c for c, t in zip(conversation_ids, tokens) if t is None], delay_s=0.2)
    beat = asyncio.create_task(_keep_alive(state, held))
    try:
        outcomes = await asyncio.gather(
            *(_flush_one(state, c, t, held, job_id=job_id) for c, t in list(held.items()))
        )
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    results = iter(outcomes)
    return [next(results) if t is not None else {"status": "locked"} for t in tokens]


async def _flush_one(
    state: WorkerState, conversation_id: str, token: str, held: dict[str, str], *, job_id: str
) -> dict[str, Any]:
    state.active_turns += 1
    live = events.LiveBatch()
    try:
        return await turns.process_conversation(state.deps, conversation_id, job_id=job_id, live=live)
    except Exception as exc:  # one conversation's failure must not fail the others of the job
        log.exception(
            "flush failed; conversation signalled again",
            extra={"conversation_id": conversation_id, "job_id": job_id},
        )
        await state.buffer.mark_due(conversation_id, delay_s=1.0)
        return {"status": "error", "error": repr(exc)}
    finally:
        held.pop(conversation_id, None)
        state.active_turns -= 1
        # The turn's live events and the lock's release, in the round trip other turns share.
        await state.buffer.release_with(redis_conn.pipeliner(), conversation_id, token, live.take_commands())


async def _keep_alive(state: WorkerState, held: dict[str, str]) -> None:
    """Extend the locks and the runs' heartbeats while long turns run (webhooks, LLM calls)."""
    interval_s = max(state.buffer.lock_s / 3, 0.05)
    while held:
        await asyncio.sleep(interval_s)
        tokens = dict(held)
        still_held = await state.buffer.extend_many(tokens)
        for conversation_id, ok in zip(tokens, still_held):
            if not ok:
                log.warning("conversation lock lost", extra={"conversation_id": conversation_id})
                held.pop(conversation_id, None)
        if held:
            await turns.heartbeat(list(held))


class WorkerState:
    """Per-process worker state: dependencies plus the scheduler and recovery loops."""

    def __init__(
        self,
        *,
        queue: Queue,
        buffer: buffer_mod.Buffer,
        deps: turns.TurnDeps,
        poll_s: float,
        recovery_interval_s: float,
        max_active_turns: int = 128,
    ) -> None:
        self.queue = queue
        self.buffer = buffer
        self.deps = deps
        self.poll_s = poll_s
        self.recovery_interval_s = recovery_interval_s
        self.max_active_turns = max_active_turns
        self.active_turns = 0  # turns this process is running now (all flush jobs)
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

    async def enqueue_flush(self, conversation_ids: list[str]) -> bool:
        job = await self.queue.enqueue(
            FLUSH_BATCH_JOB,
            conversation_ids=conversation_ids,
            key=flush_job_key(conversation_ids[0]),
            timeout=int(max(self.buffer.lock_s * 2, 30)),
            retries=3,
            ttl=60,
        )
        return job is not None

    async def schedule_once(self) -> int:
        """Pop due conversations into flush jobs; returns how many conversations were scheduled.

        Nothing is popped while flush jobs wait in the queue or this process runs its fill of
        turns: the workers are saturated, and conversations left in the due set gather their
        next messages into one batch instead of each adding a job that finds nothing to do.
        """
        room = self.max_active_turns - self.active_turns
        if room <= 0:
            return 0
        due = await self.buffer.pop_due(limit=room, unless_queued=self.queue.namespace("queued"))
        for chunk in _chunks(due, FLUSH_BATCH_MAX):
            if not await self.enqueue_flush(chunk):
                # Refused by the queue (a key clash): signal them again shortly.
                await self.buffer.mark_due_many(chunk, delay_s=0.2)
        return len(due)

    async def _scheduler(self) -> None:
        while not _cancel_requested():
            try:
                if not await self.schedule_once():
                    await asyncio.sleep(self.poll_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler iteration failed; retrying")
                await asyncio.sleep(1.0)

    async def _recovery(self) -> None:
        while not _cancel_requested():
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
        forgotten = [
            c for c, in_flight in zip(candidates, await self.buffer.in_flight(candidates)) if not in_flight
        ]
        for conversation_id in forgotten:
            await self.buffer.mark_due(conversation_id, only_if_absent=True)
        if forgotten:
            log.info("recovered unprocessed conversations", extra={"count": len(forgotten)})
        return len(forgotten)


def _cancel_requested() -> bool:
    """A cancel of this task that a library swallowed still ends the loop at its next turn.

    On Python 3.11 a cancel arriving while redis-py waits for a pooled connection can be lost
    (asyncio.Condition.wait); the loop then ran forever and a stopping worker waited on it forever.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _chunks(items: list[str], size: int) -> list[list[str]]:
    """Split into the fewest chunks of at most `size`, as even as possible."""
    if not items:
        return []
    count = -(-len(items) // size)
    step = -(-len(items) // count)
    return [items[i : i + step] for i in range(0, len(items), step)]


class _Worker(Worker):
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
        while self.job_task_contexts and time.monotonic() < deadline:
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


def build_worker(
    state: WorkerState, *, concurrency: int, install_signals: bool, extra_functions: list | None = None
) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["state"] = state
        await state.recover_once()
        state.start_loops()
        log.info("worker started", extra={"pid": os.getpid(), "concurrency": concurrency})

    async def shutdown(ctx: dict[str, Any]) -> None:
        await state.stop_loops()

    worker = _Worker(
        state.queue,
        functions=[flush_conversation, flush_conversations, *(extra_functions or [])],
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
