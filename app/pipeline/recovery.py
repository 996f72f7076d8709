"""Step 9, recovery: nothing is lost when a worker dies or freezes, a job is lost, or Redis forgets.

Comes from: each worker's recovery loop (app.pipeline.schedule), every
`SWITCHBOARD_RECOVERY_INTERVAL_SECONDS`, and once at the worker's start.
Goes to: the ledger (runs of dead workers give their batches back, and are fenced), the
buffer (conversations with stored messages no turn holds are marked due again), and so back
to step 3; the outbox, whose replies left without an outcome (a send in doubt, a reply
never attempted) are settled with their reason; and the AI state's published keys, written
again from PostgreSQL when Redis lost them.

PostgreSQL decides; Redis is only a hint. A stored message that no turn holds is signalled
again once it is overdue (older than `SWITCHBOARD_BUFFER_MAX_SECONDS` +
`SWITCHBOARD_LOCK_SECONDS`: its batch was due by then, and a flush job had a lock's time to
take it), whatever buffer keys Redis still has: its flush job may have been swept, aborted,
timed out or lost with Redis. Only a conversation still due or locked (both end by
themselves) is left alone. Sooner than that, a conversation Redis knows nothing of (a flushed
Redis) is signalled once its quiet time has passed.

So a stored message is claimed by a turn at most max + lock + recovery interval after it was
stored (plus the scheduler's poll, the queue's wait and a turn already running on its
conversation), and a turn whose worker dies or freezes gives its batch back at most lock +
recovery interval after its last heartbeat.
"""

from __future__ import annotations

import logging
from typing import Protocol

import asyncpg

from app.pipeline.buffer import Buffer
from app.pipeline.ledger import RunLedger
from app.services.ai_state import AIStateStore

log = logging.getLogger(__name__)

_ABANDONED = """
SELECT id, conversation FROM runs
 WHERE status = 'running' AND kind = 'turn' AND heartbeat_at < now() - make_interval(secs => $1)
"""
# Conversations with stored messages no turn holds: quiet for $1 s, or waiting for more than $3 s (overdue).
_UNPROCESSED = """
SELECT conversation, min(created_at) < now() - make_interval(secs => $3) AS overdue FROM messages
 WHERE direction = 'in' AND processed_at IS NULL AND run_id IS NULL AND type NOT IN ('edit', 'revoke')
 GROUP BY conversation
HAVING max(created_at) < now() - make_interval(secs => $1) OR min(created_at) < now() - make_interval(secs => $3)
 ORDER BY min(created_at) LIMIT $2
"""


class Replies(Protocol):
    """The outbox (app.pipeline.outbox), passed in: recovery settles its replies left without an outcome."""

    async def settle(self) -> int: ...


class Recovery:
    """Gives back batches of dead workers, re-signals stored messages no turn holds, settles replies in doubt."""

    def __init__(
        self,
        db: asyncpg.Pool,
        buffer: Buffer,
        ledger: RunLedger,
        outbox: Replies,
        *,
        ai_store: AIStateStore,
        lock_s: float,
        quiet_s: float,
        max_s: float,
    ) -> None:
        self.db = db
        self.buffer = buffer
        self.ledger = ledger
        self.outbox = outbox
        self.ai_store = ai_store
        self.lock_s = lock_s
        self.quiet_s = quiet_s
        self.overdue_s = max_s + lock_s

    async def recover_once(self) -> int:
        """One pass; how many conversations were signalled again."""
        await self.release_abandoned_runs()
        await self.outbox.settle()
        await self.ai_store.restore_published()
        candidates = await self.unprocessed_conversations(older_than_s=self.quiet_s + 1.0)
        hints = await self.buffer.hints([c for c, _ in candidates])
        forgotten, overdue = [], []
        for (conversation_id, is_overdue), hint in zip(candidates, hints):
            if hint.due or hint.locked:
                continue  # both end by themselves: the flush runs, or the lock expires
            if is_overdue:
                overdue.append(conversation_id)  # whatever the buffer keys say: its job is gone
            elif not hint.window:
                forgotten.append(conversation_id)  # Redis knows nothing of it
        await self.buffer.mark_due_many(forgotten + overdue, only_if_absent=True)
        if forgotten:
            log.info("recovered conversations Redis forgot", extra={"count": len(forgotten)})
        if overdue:
            log.warning(
                "recovered overdue conversations (their flush job was lost)",
                extra={"count": len(overdue), "overdue_s": self.overdue_s},
            )
        return len(forgotten) + len(overdue)

    async def release_abandoned_runs(self) -> int:
        """Runs whose worker stopped heart-beating give their batches back and are fenced (a crash or a freeze)."""
        rows = await self.db.fetch(_ABANDONED, self.lock_s)
        for row in rows:
            await self.ledger.give_back(
                row["id"], row["conversation"], error="worker stopped during the run", fence=True
            )
            log.warning(
                "abandoned run released",
                extra={"run_id": str(row["id"]), "conversation_id": str(row["conversation"])},
            )
        return len(rows)

    async def unprocessed_conversations(
        self, *, older_than_s: float, limit: int = 1000
    ) -> list[tuple[str, bool]]:
        """Conversations with messages no turn holds, oldest first, and whether each is overdue."""
        rows = await self.db.fetch(_UNPROCESSED, older_than_s, limit, self.overdue_s)
        return [(str(r["conversation"]), r["overdue"]) for r in rows]
