"""Step 9, recovery: nothing is lost when a worker dies or Redis forgets.

Comes from: each worker's recovery loop (app.pipeline.schedule), every
`SWITCHBOARD_RECOVERY_INTERVAL_SECONDS`, and once at the worker's start.
Goes to: the ledger (runs of dead workers give their messages back) and the buffer
(conversations with stored, unprocessed messages that Redis no longer knows are marked
due again), and so back to step 3; the outbox, whose replies left without an outcome
(a send in doubt, a reply never attempted) are settled with their reason; and the AI state's
published keys, written again from PostgreSQL when Redis lost them.
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
# Conversations with stored messages no turn has claimed (recovery re-signals them).
_UNPROCESSED = """
SELECT conversation, min(created_at) AS first FROM messages
 WHERE direction = 'in' AND processed_at IS NULL AND run_id IS NULL AND type NOT IN ('edit', 'revoke')
 GROUP BY conversation HAVING max(created_at) < now() - make_interval(secs => $1)
 ORDER BY first LIMIT $2
"""


class Replies(Protocol):
    """The outbox (app.pipeline.outbox), passed in: recovery settles its replies left without an outcome."""

    async def settle(self) -> int: ...


class Recovery:
    """Gives back batches of dead workers, re-signals stored messages Redis forgot, settles replies in doubt."""

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
    ) -> None:
        self.db = db
        self.buffer = buffer
        self.ledger = ledger
        self.outbox = outbox
        self.ai_store = ai_store
        self.lock_s = lock_s
        self.quiet_s = quiet_s

    async def recover_once(self) -> int:
        """One pass; how many forgotten conversations were signalled again."""
        await self.release_abandoned_runs()
        await self.outbox.settle()
        await self.ai_store.restore_published()
        candidates = await self.unprocessed_conversations(older_than_s=self.quiet_s + 1.0)
        forgotten = [
            c for c, in_flight in zip(candidates, await self.buffer.in_flight(candidates)) if not in_flight
        ]
        for conversation_id in forgotten:
            await self.buffer.mark_due(conversation_id, only_if_absent=True)
        if forgotten:
            log.info("recovered unprocessed conversations", extra={"count": len(forgotten)})
        return len(forgotten)

    async def release_abandoned_runs(self) -> int:
        """Runs whose worker stopped heart-beating give their messages back (a crash mid-batch)."""
        rows = await self.db.fetch(_ABANDONED, self.lock_s)
        for row in rows:
            await self.ledger.give_back(row["id"], row["conversation"], error="worker stopped during the run")
            log.warning(
                "abandoned run released",
                extra={"run_id": str(row["id"]), "conversation_id": str(row["conversation"])},
            )
        return len(rows)

    async def unprocessed_conversations(self, *, older_than_s: float, limit: int = 1000) -> list[str]:
        rows = await self.db.fetch(_UNPROCESSED, older_than_s, limit)
        return [str(r["conversation"]) for r in rows]
