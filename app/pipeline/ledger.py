"""Step 5, the ledger: a turn's run in PostgreSQL, started, finished, failed or given back.

Comes from: the turn (app.pipeline.turn), which starts its run here, and at its end
finishes it (or fails it, or gives its batch back).
Goes to: the `runs` and `messages` rows; `start` hands the turn its claimed messages and
its conversation's context.

The turns running at the same moment share statements (group commit,
app.services.coalesce): one statement starts twenty turns, one ends them. The batching is
set up in `RunLedger.__init__`; everything else reads one turn at a time.
"""

from __future__ import annotations

import enum
import logging
import uuid
from typing import Any

import asyncpg
import msgspec

from app.services.coalesce import Coalescer
from flows.runtime import Superseded

log = logging.getLogger(__name__)

_json = msgspec.json.Encoder()


class RunStatus(enum.StrEnum):
    """Statuses of a `runs` row, and of a flush's outcome."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"  # its worker died; its messages went back to the queue
    SKIPPED = "skipped"
    SUPERSEDED = (
        "superseded"  # a flush's outcome: another turn took the conversation over; nothing more was done
    )


# One statement starts the turns of many conversations: claim each one's batch, open its run (only when
# something was claimed) under a new lease epoch of its conversation, expire its stale pending actions,
# and read its context (with its AI state, whose truth is this row). Concurrent turns share it (RunLedger).
#
# A batch's members are fixed when it is first claimed (`messages.batch_id`, the id of that first run).
# A run given back (abandoned) leaves them: the next claim of the conversation takes that batch again,
# exactly those members (so the same batch key and reply dedupe keys), and messages that arrived since
# wait for the batch after it. Otherwise every waiting message joins a new batch.
#
# The lease epoch is the turn's fencing token: every effect a turn records checks it in its own
# statement, so a turn that another turn took over (its worker froze, its lock expired) acts no more.
_START_MANY = """
WITH given_back AS MATERIALIZED (
  -- Read once (not once per message): usually empty, as nothing was given back.
  SELECT DISTINCT ON (m.conversation) m.conversation, m.batch_id
    FROM messages m
   WHERE m.conversation = ANY($1::uuid[]) AND m.direction = 'in' AND m.processed_at IS NULL AND m.run_id IS NULL
     AND m.batch_id IS NOT NULL
   ORDER BY m.conversation, m.seq
), claimed AS (
  -- `= ANY` rather than a join on unnest: the claim must be an index lookup per conversation
  -- whatever the planner believes about the table's size.
  UPDATE messages m SET run_id = ($2::uuid[])[array_position($1::uuid[], m.conversation)],
                        batch_id = coalesce(m.batch_id, ($2::uuid[])[array_position($1::uuid[], m.conversation)])
   WHERE m.conversation = ANY($1::uuid[]) AND m.direction = 'in' AND m.processed_at IS NULL AND m.run_id IS NULL
     AND m.type NOT IN ('edit', 'revoke')
     AND m.batch_id IS NOT DISTINCT FROM (SELECT g.batch_id FROM given_back g WHERE g.conversation = m.conversation)
  RETURNING m.conversation, m.id, m.text, m.type, m.seq, m.events, m.created_at, m.batch_id <> m.run_id AS rerun
), claimed_by AS (
  SELECT conversation, json_agg(json_build_object('id', id, 'text', text, 'type', type, 'seq', seq,
                                                  'events', events) ORDER BY seq, created_at) AS rows,
         jsonb_agg(id::text ORDER BY seq, created_at) AS ids, bool_or(rerun) AS rerun
    FROM claimed GROUP BY conversation
), lease AS (
  -- The conversation's one write per turn: its lease, and the time of its latest messages' turn.
  UPDATE conversations c SET lease_epoch = c.lease_epoch + 1, last_message_at = now()
   WHERE c.id IN (SELECT conversation FROM claimed_by)
  RETURNING c.id, c.lease_epoch
), ctx AS (
  SELECT c.id AS conversation, ($2::uuid[])[array_position($1::uuid[], c.id)] AS run_id,
         ($3::text[])[array_position($1::uuid[], c.id)] AS job_id, c.workspace, c.channel, c.status, c.tags,
         c.ai_enabled, c.custom_prompt, c.ai_context, c.ai_control_at,
         p.id AS contact_id, p.phone, p.first_name, p.last_name, p.tags AS contact_tags, p.attributes
    FROM conversations c
    -- An index lookup per conversation: as a plain join, a plan made while the table was small
    -- (a new database filling up, before its first ANALYZE) read every contact for each statement.
   CROSS JOIN LATERAL (SELECT * FROM contacts WHERE contacts.id = c.contact LIMIT 1) p
   WHERE c.id = ANY($1::uuid[])
), run AS (
  INSERT INTO runs (id, workspace, conversation, kind, status, job_id, epoch, message_ids, started_at, heartbeat_at)
  SELECT ctx.run_id, ctx.workspace, ctx.conversation, 'turn', 'running', ctx.job_id, lease.lease_epoch,
         claimed_by.ids, now(), now()
    FROM ctx JOIN claimed_by ON claimed_by.conversation = ctx.conversation JOIN lease ON lease.id = ctx.conversation
), expired AS (
  UPDATE action_executions SET status = 'expired', updated_at = now()
   WHERE conversation = ANY($1::uuid[]) AND status IN ('pending', 'awaiting_confirmation') AND expires_at <= now()
)
SELECT ctx.*, coalesce(claimed_by.rows, '[]')::text AS claimed, lease.lease_epoch AS epoch,
       coalesce(claimed_by.rerun, false) AS rerun,
       (SELECT row_to_json(a) FROM (
          SELECT id, flow_id, node_id, kind, vars, missing, asked_count, confidence, state->>'language' AS language
            FROM action_executions
           WHERE conversation = ctx.conversation AND status IN ('pending', 'awaiting_confirmation')
             AND expires_at > now()
           ORDER BY created_at DESC LIMIT 1) a)::text AS pending
  FROM ctx LEFT JOIN claimed_by ON claimed_by.conversation = ctx.conversation
       LEFT JOIN lease ON lease.id = ctx.conversation
"""
# And one ends many: complete each run unless recovery abandoned it or another turn holds its conversation
# now (its lease epoch moved on), mark its messages and its flows. (The conversation's last_message_at
# moved with its lease, in the start's one update of the row.)
_FINISH_MANY = """
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[], $5::jsonb[], $6::jsonb[], $7::jsonb[])
    AS i(run_id, layer, flows, trace, warnings, result, message_ids)
), run AS (
  UPDATE runs r SET status = 'completed', layer = i.layer, flows = i.flows, trace = i.trace, warnings = i.warnings,
                    result = i.result, message_ids = i.message_ids, finished_at = now()
    FROM input i
   WHERE r.id = ANY($1::uuid[]) AND r.id = i.run_id AND r.status = 'running'
     AND r.epoch = (SELECT c.lease_epoch FROM conversations c WHERE c.id = r.conversation)
  RETURNING r.id, r.conversation, r.workspace
), done AS (
  -- A message's run_id is the run that claimed it: among the runs just completed is enough.
  UPDATE messages SET processed_at = now() WHERE id = ANY($8::uuid[]) AND run_id IN (SELECT id FROM run)
), flows AS (
  -- At most once a second per flow, and never waiting: every turn of a busy flow would
  -- otherwise queue on its row lock.
  UPDATE flows SET last_run_at = now()
   WHERE id IN (
     SELECT f.id FROM flows f
       JOIN unnest($9::uuid[], $10::uuid[]) AS t(run_id, flow) ON f.id = t.flow
       JOIN run ON run.id = t.run_id AND f.workspace = run.workspace
      WHERE f.last_run_at IS NULL OR f.last_run_at < now() - interval '1 second'
        FOR UPDATE OF f SKIP LOCKED)
)
SELECT id FROM run
"""
# The run stops; its messages go back, keeping their batch. With $4 (recovery declaring its worker dead),
# its lease is fenced too, unless a later turn holds the conversation already.
_GIVE_BACK = """
WITH run AS (
  UPDATE runs SET status = 'abandoned', finished_at = now(), error = $3 WHERE id = $1 AND status = 'running'
  RETURNING id, epoch
), fenced AS (
  UPDATE conversations SET lease_epoch = lease_epoch + 1
   WHERE $4 AND id = $2 AND lease_epoch = (SELECT epoch FROM run)
)
UPDATE messages SET run_id = NULL
 WHERE conversation = $2 AND run_id = (SELECT id FROM run) AND direction = 'in' AND processed_at IS NULL
"""
_FAIL = """
WITH run AS (
  UPDATE runs SET status = 'failed', error = $2, finished_at = now(), message_ids = $3::jsonb WHERE id = $1
  RETURNING id
)
UPDATE messages SET processed_at = now() WHERE id = ANY($4::uuid[]) AND run_id = (SELECT id FROM run)
"""
_HEARTBEAT = "UPDATE runs SET heartbeat_at = now() WHERE id = ANY($1::uuid[]) AND status = 'running'"
_INSERT_CONTINUATION = """
INSERT INTO runs (id, workspace, conversation, kind, status, layer, flows, trace, warnings, result, message_ids,
                  job_id, started_at, heartbeat_at, finished_at)
VALUES ($1, $2, $3, 'webhook_retry', 'completed', $4, $5::jsonb, $6::jsonb, $7::jsonb, $8::jsonb, '[]'::jsonb, $9,
        now(), now(), now())
"""


_LEASE = "SELECT lease_epoch FROM conversations WHERE id = $1"


async def refuse_unless_held(db: asyncpg.Pool, conversation_id: str, epoch: int | None, effect: str) -> None:
    """After an effect's fenced statement changed nothing: raise `Superseded` when the fence was why.

    Epochs only grow, so a token that no longer matches never will again; None (no turn) is never fenced.
    """
    if epoch is None:
        return
    current = await db.fetchval(_LEASE, uuid.UUID(conversation_id))
    if current != epoch:
        log.warning(
            "effect refused: another turn holds the conversation",
            extra={
                "conversation_id": conversation_id,
                "effect": effect,
                "epoch": epoch,
                "current_epoch": current,
            },
        )
        raise Superseded(
            f"{effect} refused: conversation {conversation_id} is at epoch {current}, the turn's is {epoch}"
        )


class RunLedger:
    """Starts and ends turns in PostgreSQL; the turns running at the same moment share statements."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db
        # The group commit: `start` and `finish` submit one turn each; `_start_many` and
        # `_finish_many` run whatever was submitted meanwhile as one statement.
        self._starts: Coalescer[tuple[uuid.UUID, uuid.UUID, str], Any] = Coalescer(
            self._start_many, name="turn-start"
        )
        # One end in flight at a time: the turns that end meanwhile make the next group (groups of ~15
        # instead of ~9 in the anchors scenario). Starts keep two lanes: a flush job's turns start together.
        self._finishes: Coalescer[tuple, bool] = Coalescer(self._finish_many, name="turn-finish", lanes=1)

    async def start(self, conversation: uuid.UUID, run_id: uuid.UUID, job_id: str) -> Any:
        """Claim the conversation's next batch under `run_id`; its context row, None if it is gone.

        The row has the conversation's context (workspace, channel, contact, tags, AI state), `claimed`
        (the messages, as JSON text; empty when there was nothing to claim), `epoch` (the turn's
        fencing token, None when nothing was claimed), `rerun` (the batch ran before and was given
        back: later messages may be waiting) and `pending` (the action waiting for this
        conversation's reply, as JSON text, or None).
        """
        return await self._starts.submit((conversation, run_id, job_id))

    async def finish(self, run_id: uuid.UUID, result: dict[str, Any], message_ids: list[str]) -> bool:
        """Complete the run; False when recovery had abandoned it or another turn holds its conversation."""
        return await self._finishes.submit((run_id, result, message_ids))

    async def fail(self, run_id: uuid.UUID, error: str, message_ids: list[str]) -> None:
        """Record a turn that raised: the run failed, its messages are processed (never retried)."""
        await self.db.execute(_FAIL, run_id, error, _json.encode(message_ids).decode(), message_ids)

    async def give_back(
        self, run_id: uuid.UUID, conversation: uuid.UUID, *, error: str, fence: bool = False
    ) -> None:
        """Abandon a running turn and release its batch, members unchanged, to the next turn.

        `fence`: the run's worker is taken for dead (recovery), so whatever it still does is refused.
        """
        await self.db.execute(_GIVE_BACK, run_id, conversation, error, fence)

    async def heartbeat(self, run_ids: list[uuid.UUID]) -> None:
        """Tell recovery that these running turns are alive."""
        await self.db.execute(_HEARTBEAT, run_ids)

    async def record_continuation(
        self, run_id: uuid.UUID, *, workspace: uuid.UUID, conversation: uuid.UUID, summary: dict, job_id: str
    ) -> None:
        """A finished run of kind `webhook_retry`: the nodes after a retried webhook's port."""
        await self.db.execute(
            _INSERT_CONTINUATION,
            run_id,
            workspace,
            conversation,
            summary["layer"],
            summary["flows"],
            summary["trace"],
            summary["warnings"],
            summary["summary"],
            job_id,
        )

    async def aclose(self) -> None:
        await self._starts.aclose()
        await self._finishes.aclose()

    async def _start_many(self, items: list[tuple[uuid.UUID, uuid.UUID, str]]) -> list[Any]:
        conversations, run_ids, job_ids = map(list, zip(*items))
        rows = {
            r["conversation"]: r for r in await self.db.fetch(_START_MANY, conversations, run_ids, job_ids)
        }
        return [rows.get(conversation) for conversation in conversations]

    async def _finish_many(self, items: list[tuple[uuid.UUID, dict[str, Any], list[str]]]) -> list[bool]:
        columns: list[list[Any]] = [[] for _ in range(10)]
        for run_id, result, message_ids in items:
            for column, value in zip(
                columns,
                (
                    run_id,
                    result["layer"],
                    _json.encode(result["flows"]).decode(),
                    _json.encode(result["trace"]).decode(),
                    _json.encode(result["warnings"]).decode(),
                    _json.encode(result["summary"]).decode(),
                    _json.encode(message_ids).decode(),
                ),
            ):
                column.append(value)
            columns[7].extend(message_ids)
            columns[8].extend([run_id] * len(result["flows"]))
            columns[9].extend(f["flow_id"] for f in result["flows"])
        finished = {r["id"] for r in await self.db.fetch(_FINISH_MANY, *columns)}
        return [run_id in finished for run_id, _, _ in items]
