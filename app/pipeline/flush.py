"""Step 4, the flush job: lock due conversations and run their turns, a few dozen per SAQ job.

Comes from: the scheduler (app.pipeline.schedule), which enqueues `flush_conversations`
jobs of conversation ids; the worker root (app.roots) hands them to `Flusher.flush`.
Goes to: the turn (app.pipeline.turn), one per conversation whose lock was taken; the
locks are kept alive while the turns run and released with their live events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from app.pipeline.buffer import Buffer
from app.pipeline.ledger import RunLedger, RunStatus
from app.pipeline.turn import TRANSIENT_ERRORS, TurnRunner
from app.services.events import LiveBatch
from app.services.redis_conn import Pipeliner

log = logging.getLogger(__name__)

FLUSH_BATCH_JOB = "flush_conversations"
# Conversations per flush job: SAQ's own bookkeeping (enqueue, dequeue, status updates,
# finish: about seven Redis round trips and three log lines) is paid once per job.
FLUSH_BATCH_MAX = 64


class Flusher:
    """Runs flush jobs in a worker process; counts the turns it runs so the scheduler can hold back."""

    def __init__(self, buffer: Buffer, turns: TurnRunner, ledger: RunLedger, *, pipeliner: Pipeliner) -> None:
        self.buffer = buffer
        self.turns = turns
        self.ledger = ledger
        self.pipeliner = pipeliner
        self.active_turns = 0  # turns this process is running now (all flush jobs)

    async def flush(self, conversation_ids: list[str], *, job_id: str) -> list[dict[str, Any]]:
        """Process several conversations' due batches concurrently, each under its own lock; idempotent."""
        conversation_ids = list(dict.fromkeys(conversation_ids))
        tokens = await self.buffer.acquire_many(conversation_ids)
        held = {c: t for c, t in zip(conversation_ids, tokens) if t is not None}
        # The run each turn opens if it claims a batch: its heartbeat is beaten while the lock is held.
        runs = {c: uuid.uuid4() for c in held}
        # Another worker is on these conversations: come back right after it.
        await self.buffer.mark_due_many(
            [c for c, t in zip(conversation_ids, tokens) if t is None], delay_s=0.2
        )
        beat = asyncio.create_task(self._keep_alive(held, runs))
        try:
            outcomes = await asyncio.gather(
                *(self._flush_one(c, t, held, runs[c], job_id=job_id) for c, t in list(held.items()))
            )
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        results = iter(outcomes)
        return [next(results) if t is not None else {"status": "locked"} for t in tokens]

    async def _flush_one(
        self, conversation_id: str, token: str, held: dict[str, str], run_id: uuid.UUID, *, job_id: str
    ) -> dict[str, Any]:
        self.active_turns += 1
        live = LiveBatch(self.pipeliner)  # the turn's live events, sent with the lock's release
        try:
            outcome = await self.turns.run(conversation_id, job_id=job_id, live=live, run_id=run_id)
            if outcome.get("rerun") or outcome["status"] == RunStatus.SUPERSEDED:
                # A batch that ran again left the later messages waiting; a superseded turn gave its
                # batch back. Either way the conversation has more to do as soon as its lock is free.
                await self.buffer.mark_due(conversation_id)
            return outcome
        except Exception as exc:  # one conversation's failure must not fail the others of the job
            log.exception(
                "flush failed; conversation signalled again",
                extra={"conversation_id": conversation_id, "job_id": job_id},
            )
            await self.buffer.mark_due(conversation_id, delay_s=1.0)
            return {"status": "error", "error": repr(exc)}
        finally:
            held.pop(conversation_id, None)
            self.active_turns -= 1
            # The turn's live events and the lock's release, in the round trip other turns share.
            await self.buffer.release_with(self.pipeliner, conversation_id, token, live.take_commands())

    async def _keep_alive(self, held: dict[str, str], runs: dict[str, uuid.UUID]) -> None:
        """Extend the locks and the runs' heartbeats while long turns run (webhooks, LLM calls).

        A run whose lock was lost beats no more: recovery then gives its batch back and fences it.
        """
        interval_s = max(self.buffer.lock_s / 3, 0.05)
        while held:
            await asyncio.sleep(interval_s)
            try:
                tokens = dict(held)
                still_held = await self.buffer.extend_many(tokens)
                for conversation_id, ok in zip(tokens, still_held):
                    if not ok:
                        log.warning("conversation lock lost", extra={"conversation_id": conversation_id})
                        held.pop(conversation_id, None)
                if held:
                    await self.ledger.heartbeat([runs[c] for c in held])
            except TRANSIENT_ERRORS as exc:
                # Redis or PostgreSQL is away for a moment: beat again at the next interval. Should it
                # last longer than a lock, recovery takes the runs for dead and the fence stops them.
                log.warning(
                    "keeping the locks and heartbeats alive failed; trying again",
                    extra={"conversations": len(held), "error": f"{type(exc).__name__}: {exc}"},
                )
