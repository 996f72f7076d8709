"""Step 3, the scheduler: due conversations become flush jobs on the SAQ queue.

Comes from: the buffer (app.pipeline.buffer), whose due set says which conversations'
batches are due; each worker polls it every `SWITCHBOARD_SCHEDULER_POLL_SECONDS`.
Goes to: the queue, as `flush_conversations` jobs that app.pipeline.flush runs. The same
worker also runs recovery (app.pipeline.recovery) on its interval.

SAQ keeps its own keys under `saq:` (its fixed prefix); everything Switchboard writes is
under `sb:`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from saq import Queue
from saq.queue.redis import RedisQueue

from app.pipeline.buffer import Buffer
from app.pipeline.flush import FLUSH_BATCH_JOB, FLUSH_BATCH_MAX, Flusher
from app.pipeline.recovery import Recovery

log = logging.getLogger(__name__)

QUEUE_NAME = "switchboard"


def flush_job_key(conversation_id: str) -> str:
    # Unique per due time: the due set's atomic pop already makes one job per window, and a
    # job stuck "active" in SAQ after its worker died must not block the next one; the
    # conversation lock keeps batches of one conversation one at a time.
    return f"flush:{conversation_id}:{time.time_ns()}"


def make_queue(redis_url: str) -> RedisQueue:
    queue = Queue.from_url(redis_url, name=QUEUE_NAME)
    assert isinstance(queue, RedisQueue)  # a redis:// URL always makes one
    return queue


class Scheduler:
    """A worker's two loops: pop due conversations into flush jobs, and recover what was lost."""

    def __init__(
        self,
        *,
        queue: RedisQueue,
        buffer: Buffer,
        flusher: Flusher,
        recovery: Recovery,
        poll_s: float,
        recovery_interval_s: float,
        max_active_turns: int = 128,
    ) -> None:
        self.queue = queue
        self.buffer = buffer
        self.flusher = flusher
        self.recovery = recovery
        self.poll_s = poll_s
        self.recovery_interval_s = recovery_interval_s
        self.max_active_turns = max_active_turns
        self.tasks: list[asyncio.Task] = []

    def start_loops(self) -> None:
        self.tasks.append(asyncio.create_task(self._schedule_loop(), name="sb-scheduler"))
        self.tasks.append(asyncio.create_task(self._recovery_loop(), name="sb-recovery"))

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
        room = self.max_active_turns - self.flusher.active_turns
        if room <= 0:
            return 0
        due = await self.buffer.pop_due(limit=room, unless_queued=self.queue.namespace("queued"))
        for chunk in _chunks(due, FLUSH_BATCH_MAX):
            if not await self.enqueue_flush(chunk):
                # Refused by the queue (a key clash): signal them again shortly.
                await self.buffer.mark_due_many(chunk, delay_s=0.2)
        return len(due)

    async def _schedule_loop(self) -> None:
        while not _cancel_requested():
            try:
                if not await self.schedule_once():
                    await asyncio.sleep(self.poll_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler iteration failed; retrying")
                await asyncio.sleep(1.0)

    async def _recovery_loop(self) -> None:
        while not _cancel_requested():
            try:
                await self.recovery.recover_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recovery iteration failed; retrying")
            await asyncio.sleep(self.recovery_interval_s)


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
