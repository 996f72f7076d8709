"""One batch of one conversation: claim its messages, build the turn, interpret, record the run."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from redis import exceptions as redis_exceptions

from app.db import engine
from app.services import events, flows_store
from app.services.ai_state import AIStateStore
from app.services.channels import store as channel_store
from app.services.coalesce import Coalescer
from app.services.outbound import Outbox
from app.services.runtime import ServiceRuntime, TurnScope
from app.settings import Settings
from flows.interpreter import continue_from, run_turn
from flows.runtime import WebhookOutcome, WebhookStatus
from flows.turn import (
    AIState,
    ContactInfo,
    ConversationInfo,
    EventKind,
    PendingAction,
    PendingKind,
    Turn,
    TurnEvent,
    TurnMessage,
)

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


# Failures of the connections to Redis or PostgreSQL, not of the turn: worth another try.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis_exceptions.ConnectionError,
    redis_exceptions.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.TransactionRollbackError,
    ConnectionError,
)


class RunStatus(enum.StrEnum):
    """Statuses of a `runs` row, and of a flush's outcome."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"  # its worker died; its messages went back to the queue
    SKIPPED = "skipped"


class RunLedger:
    """Starts and ends turns in PostgreSQL; the turns running at the same moment share statements."""

    def __init__(self) -> None:
        self._starts: Coalescer[tuple[uuid.UUID, uuid.UUID, str], Any] = Coalescer(
            _start_many, name="turn-start"
        )
        self._finishes: Coalescer[tuple, bool] = Coalescer(_finish_many, name="turn-finish")

    async def start(self, conversation: uuid.UUID, run_id: uuid.UUID, job_id: str) -> Any:
        """Claim the conversation's unprocessed messages under `run_id`; its context row, None if it is gone."""
        return await self._starts.submit((conversation, run_id, job_id))

    async def finish(self, run_id: uuid.UUID, result: dict[str, Any], message_ids: list[str]) -> bool:
        """Complete the run; False when recovery had abandoned it meanwhile."""
        return await self._finishes.submit((run_id, result, message_ids))

    async def aclose(self) -> None:
        await self._starts.aclose()
        await self._finishes.aclose()


async def _start_many(items: list[tuple[uuid.UUID, uuid.UUID, str]]) -> list[Any]:
    conversations, run_ids, job_ids = map(list, zip(*items))
    rows = {
        r["conversation"]: r for r in await engine.pool().fetch(_START_MANY, conversations, run_ids, job_ids)
    }
    return [rows.get(conversation) for conversation in conversations]


async def _finish_many(items: list[tuple[uuid.UUID, dict[str, Any], list[str]]]) -> list[bool]:
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
    finished = {r["id"] for r in await engine.pool().fetch(_FINISH_MANY, *columns)}
    return [run_id in finished for run_id, _, _ in items]


@dataclass
class TurnDeps:
    """What processing a batch needs; built once per worker process."""

    settings: Settings
    ledger: RunLedger
    outbox: Outbox
    ai_store: AIStateStore
    plans: flows_store.PlanCache
    understanding: Any
    webhooks: Any


# One statement starts the turns of many conversations: claim each one's unprocessed
# messages, open its run (only when something was claimed), expire its stale pending
# actions, and read its context. Concurrent turns share it (RunLedger).
_START_MANY = """
WITH claimed AS (
  -- `= ANY` rather than a join on unnest: the claim must be an index lookup per conversation
  -- whatever the planner believes about the table's size.
  UPDATE messages m SET run_id = ($2::uuid[])[array_position($1::uuid[], m.conversation)]
   WHERE m.conversation = ANY($1::uuid[]) AND m.direction = 'in' AND m.processed_at IS NULL AND m.run_id IS NULL
     AND m.type NOT IN ('edit', 'revoke')
  RETURNING m.conversation, m.id, m.text, m.type, m.seq, m.events, m.created_at
), claimed_by AS (
  SELECT conversation, json_agg(json_build_object('id', id, 'text', text, 'type', type, 'seq', seq,
                                                  'events', events) ORDER BY seq, created_at) AS rows
    FROM claimed GROUP BY conversation
), ctx AS (
  SELECT c.id AS conversation, ($2::uuid[])[array_position($1::uuid[], c.id)] AS run_id,
         ($3::text[])[array_position($1::uuid[], c.id)] AS job_id, c.workspace, c.channel, c.status, c.tags,
         p.id AS contact_id, p.phone, p.first_name, p.last_name, p.tags AS contact_tags, p.attributes
    FROM conversations c JOIN contacts p ON p.id = c.contact
   WHERE c.id = ANY($1::uuid[])
), run AS (
  INSERT INTO runs (id, workspace, conversation, kind, status, job_id, started_at, heartbeat_at)
  SELECT ctx.run_id, ctx.workspace, ctx.conversation, 'turn', 'running', ctx.job_id, now(), now() FROM ctx
   WHERE ctx.conversation IN (SELECT conversation FROM claimed_by)
), expired AS (
  UPDATE action_executions SET status = 'expired', updated_at = now()
   WHERE conversation = ANY($1::uuid[]) AND status IN ('pending', 'awaiting_confirmation') AND expires_at <= now()
)
SELECT ctx.*, coalesce(claimed_by.rows, '[]')::text AS claimed,
       (SELECT row_to_json(a) FROM (
          SELECT id, flow_id, node_id, kind, vars, missing, asked_count, confidence FROM action_executions
           WHERE conversation = ctx.conversation AND status IN ('pending', 'awaiting_confirmation')
             AND expires_at > now()
           ORDER BY created_at DESC LIMIT 1) a)::text AS pending
  FROM ctx LEFT JOIN claimed_by ON claimed_by.conversation = ctx.conversation
"""
# And one ends many: complete each run unless recovery abandoned it, mark its messages,
# its conversation and its flows.
_FINISH_MANY = """
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[], $5::jsonb[], $6::jsonb[], $7::jsonb[])
    AS i(run_id, layer, flows, trace, warnings, result, message_ids)
), run AS (
  UPDATE runs r SET status = 'completed', layer = i.layer, flows = i.flows, trace = i.trace, warnings = i.warnings,
                    result = i.result, message_ids = i.message_ids, finished_at = now()
    FROM input i
   WHERE r.id = ANY($1::uuid[]) AND r.id = i.run_id AND r.status = 'running'
  RETURNING r.id, r.conversation, r.workspace
), done AS (
  -- A message's run_id is the run that claimed it: among the runs just completed is enough.
  UPDATE messages SET processed_at = now() WHERE id = ANY($8::uuid[]) AND run_id IN (SELECT id FROM run)
), conversation AS (
  UPDATE conversations SET last_message_at = now() WHERE id IN (SELECT conversation FROM run)
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
_GIVE_BACK = """
WITH run AS (
  UPDATE runs SET status = 'abandoned', finished_at = now(), error = $3 WHERE id = $1 AND status = 'running'
  RETURNING id
)
UPDATE messages SET run_id = NULL
 WHERE conversation = $2 AND run_id = (SELECT id FROM run) AND direction = 'in' AND processed_at IS NULL
"""
# Conversations with stored messages no turn has claimed (recovery re-signals them).
_UNPROCESSED = """
SELECT conversation, min(created_at) AS first FROM messages
 WHERE direction = 'in' AND processed_at IS NULL AND run_id IS NULL AND type NOT IN ('edit', 'revoke')
 GROUP BY conversation HAVING max(created_at) < now() - make_interval(secs => $1)
 ORDER BY first LIMIT $2
"""
_CONTEXT = """
SELECT c.workspace, c.channel, c.status, c.tags, p.id AS contact_id, p.phone, p.first_name, p.last_name,
       p.tags AS contact_tags, p.attributes
  FROM conversations c JOIN contacts p ON p.id = c.contact
 WHERE c.id = $1
"""


def _json_value(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, (str, bytes)) else value


async def process_conversation(
    deps: TurnDeps, conversation_id: str, *, job_id: str = "", live: events.LiveBatch | None = None
) -> dict[str, Any]:
    """Run one turn for everything unprocessed in the conversation; returns a short summary.

    With `live`, the turn's live events are left there for the caller to publish.
    """
    conv_uuid = uuid.UUID(conversation_id)
    run_id = uuid.uuid4()
    context = await deps.ledger.start(conv_uuid, run_id, job_id)
    if context is None:
        return {"status": RunStatus.SKIPPED, "reason": "conversation not found"}
    claimed = msgspec.json.decode(context["claimed"])
    if not claimed:
        return {"status": RunStatus.SKIPPED, "reason": "nothing to process"}
    workspace_id = str(context["workspace"])
    message_ids = [r["id"] for r in claimed]
    log_extra = {
        "conversation_id": conversation_id,
        "run_id": str(run_id),
        "job_id": job_id,
        "message_ids": message_ids,
    }
    started = time.perf_counter()
    try:
        result = await _interpret(deps, conversation_id, workspace_id, context, claimed, run_id, live)
    except asyncio.CancelledError:
        # The worker is stopping: give the batch back now, not when recovery finds the lock expired.
        log.warning("turn cancelled; its messages go back to the queue", extra=log_extra)
        with contextlib.suppress(Exception):
            await asyncio.shield(_give_back(run_id, conv_uuid, error="cancelled: the worker stopped"))
        raise
    except TRANSIENT_ERRORS as exc:
        # Redis or PostgreSQL failed for a moment: the batch goes back, and the caller signals
        # the conversation again. Replies already sent are not sent twice (their dedupe keys
        # come from the batch), and webhook executions, keyed by the batch too, are reused.
        log.warning(
            "turn interrupted; its messages go back to the queue",
            extra={**log_extra, "error": f"{type(exc).__name__}: {exc}"},
        )
        await _give_back(run_id, conv_uuid, error=f"interrupted: {type(exc).__name__}: {exc}")
        raise
    except Exception as exc:  # a bug must not lose the batch: record it, keep the worker alive
        log.exception("turn failed", extra=log_extra)
        pool = engine.pool()
        await pool.execute(
            "UPDATE runs SET status = 'failed', error = $2, finished_at = now(), message_ids = $3::jsonb "
            "WHERE id = $1",
            run_id,
            repr(exc),
            _json.encode(message_ids).decode(),
        )
        await pool.execute(
            "UPDATE messages SET processed_at = now() WHERE id = ANY($2::uuid[]) AND run_id = $1",
            run_id,
            message_ids,
        )
        return {"status": RunStatus.FAILED, "run_id": str(run_id), "error": repr(exc)}
    duration_ms = (time.perf_counter() - started) * 1000
    if not await deps.ledger.finish(run_id, result, message_ids):
        # Recovery declared this run dead while it was still working: its messages are
        # someone else's now, so leave them alone.
        log.warning("run finished after it was abandoned", extra=log_extra)
        return {"status": RunStatus.ABANDONED, "run_id": str(run_id)}
    await events.publish_or_hold(
        workspace_id,
        events.LiveEvent(
            kind="run",
            conversation_id=conversation_id,
            data={"run_id": str(run_id), "layer": result["layer"]},
        ),
        live,
    )
    log.info(
        "turn completed", extra={**log_extra, "layer": result["layer"], "duration_ms": round(duration_ms, 2)}
    )
    return {
        "status": RunStatus.COMPLETED,
        "run_id": str(run_id),
        "messages": len(message_ids),
        "layer": result["layer"],
    }


def _contact_and_conversation(conversation_id: str, context: Any) -> tuple[ContactInfo, ConversationInfo]:
    return (
        ContactInfo(
            id=str(context["contact_id"]),
            first_name=context["first_name"],
            last_name=context["last_name"],
            phone=context["phone"],
            tags=list(_json_value(context["contact_tags"]) or []),
            attributes=_json_value(context["attributes"]) or {},
        ),
        ConversationInfo(
            id=conversation_id, status=context["status"], tags=list(_json_value(context["tags"]) or [])
        ),
    )


def _runtime(
    deps: TurnDeps, scope: TurnScope, channel: Any, live: events.LiveBatch | None = None
) -> ServiceRuntime:
    return ServiceRuntime(
        scope,
        channel=channel,
        outbox=deps.outbox,
        ai_store=deps.ai_store,
        understanding=deps.understanding,
        webhooks=deps.webhooks,
        history_turns=deps.settings.ai.history_turns,
        confirmation_ttl_s=deps.settings.ai.confirmation_ttl_seconds,
        live=live,
    )


async def _channel_of(context: Any, conversation_id: str) -> Any:
    channel = await channel_store.lookup(str(context["channel"]))
    if channel is None:
        raise RuntimeError(f"channel {context['channel']} of conversation {conversation_id} no longer exists")
    return channel


async def _interpret(
    deps: TurnDeps,
    conversation_id: str,
    workspace_id: str,
    context: Any,
    claimed: list[Any],
    run_id: uuid.UUID,
    live: events.LiveBatch | None,
) -> dict[str, Any]:
    channel = await _channel_of(context, conversation_id)
    # The plans' revision comes with the AI state: one round trip.
    control, ai_context, (revision,) = await deps.ai_store.read_with(
        conversation_id, [flows_store.revision_key(workspace_id)]
    )
    raised: list[TurnEvent] = []
    for row in claimed:
        for kind in row["events"] or []:
            raised.append(TurnEvent(kind=EventKind(kind)))
    pending = None
    if context["pending"]:
        row = msgspec.json.decode(context["pending"])
        pending = PendingAction(
            id=row["id"],
            flow_id=row["flow_id"],
            node_id=row["node_id"],
            kind=PendingKind(row["kind"]),
            vars=row["vars"] or {},
            missing=row["missing"] or [],
            asked_count=row["asked_count"],
            confidence=row["confidence"] or 0.0,
        )
    contact, conversation = _contact_and_conversation(conversation_id, context)
    turn = Turn(
        workspace_id=workspace_id,
        conversation=conversation,
        contact=contact,
        messages=[
            TurnMessage(id=r["id"], text=r["text"], type=r["type"], timestamp=r["seq"] / 1000)
            for r in claimed
        ],
        events=raised,
        ai=AIState(ai_enabled=control.ai_enabled, custom_prompt=control.custom_prompt, context=ai_context),
        pending=pending,
        timestamp=time.time(),
        phone_number=context["phone"],
    )
    batch_key = hashlib.sha256(",".join(sorted(r["id"] for r in claimed)).encode()).hexdigest()[:32]
    plans = await deps.plans.active_plans(workspace_id, revision=int(revision or 0))
    scope = TurnScope(
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        contact_phone=context["phone"],
        run_id=str(run_id),
        batch_key=batch_key,
        original_message=turn.text,
        flow_versions={p.flow_id: p.version for p in plans},
    )
    runtime = _runtime(deps, scope, channel, live)
    result = await run_turn(
        plans,
        turn,
        runtime,
        strict=False,
        auto_execute_threshold=deps.settings.ai.auto_execute_threshold,
        ambiguity_margin=deps.settings.ai.ambiguity_margin,
    )
    return _summary(result, runtime)


def _summary(result: Any, runtime: ServiceRuntime) -> dict[str, Any]:
    return {
        "layer": result.layer.value if result.layer else None,
        "flows": [{"flow_id": f, "version": v} for f, v in result.flows_run],
        "trace": msgspec.to_builtins(result.trace),
        "warnings": list(result.warnings),
        "summary": {
            "sent": runtime.sent,
            "vars": msgspec.to_builtins(result.vars),
            "detection": msgspec.to_builtins(result.detection),
            "answer": msgspec.to_builtins(result.answer),
            "ai": msgspec.to_builtins(result.ai),
            "steps": result.steps,
        },
    }


async def resume_after_webhook(deps: TurnDeps, execution_id: str, outcome: WebhookOutcome) -> None:
    """A retried webhook ended: send its success/failure message and run the nodes after that port.

    Recorded as a run of kind `webhook_retry` on the conversation, like any turn.
    """
    pool = engine.pool()
    row = await pool.fetchrow(
        "SELECT workspace, flow_id, flow_version, webhook_node_id, conversation, vars, original_message, status, "
        "(SELECT count(*) FROM external_action_logs l WHERE l.execution = e.id) AS attempts_logged "
        "FROM action_executions e WHERE id = $1",
        uuid.UUID(execution_id),
    )
    if row is None or row["conversation"] is None:
        return
    workspace_id, conversation_id = str(row["workspace"]), str(row["conversation"])
    plan = await deps.plans.plan_for(workspace_id, str(row["flow_id"]), row["flow_version"])
    context = await pool.fetchrow(_CONTEXT, row["conversation"])
    if plan is None or context is None:
        log.warning(
            "webhook continuation skipped: flow version or conversation is gone",
            extra={"execution_id": execution_id, "conversation_id": conversation_id},
        )
        return
    channel = await _channel_of(context, conversation_id)
    control, ai_context = await deps.ai_store.read(conversation_id)
    contact, conversation = _contact_and_conversation(conversation_id, context)
    turn = Turn(
        workspace_id=workspace_id,
        conversation=conversation,
        contact=contact,
        messages=[TurnMessage(id=execution_id, text=row["original_message"], timestamp=time.time())],
        ai=AIState(ai_enabled=control.ai_enabled, custom_prompt=control.custom_prompt, context=ai_context),
        timestamp=time.time(),
        phone_number=context["phone"],
    )
    run_id = uuid.uuid4()
    # Keyed by the attempts so far: a replayed execution that ends again sends its message again.
    batch_key = f"webhook:{execution_id}:{row['attempts_logged']}"
    scope = TurnScope(
        workspace_id=workspace_id,
        conversation_id=conversation_id,
        contact_phone=context["phone"],
        run_id=str(run_id),
        batch_key=batch_key,
        original_message=turn.text,
        flow_versions={plan.flow_id: plan.version},
    )
    runtime = _runtime(deps, scope, channel)
    port = "success" if outcome.status is WebhookStatus.SUCCESS else "failure"
    result = await continue_from(
        plan,
        row["webhook_node_id"],
        port,
        turn,
        runtime,
        vars=_json_value(row["vars"]) or {},
        response=outcome.response,
        plans=await deps.plans.active_plans(workspace_id),
    )
    summary = _summary(result, runtime)
    await pool.execute(
        "INSERT INTO runs (id, workspace, conversation, kind, status, layer, flows, trace, warnings, result, "
        "message_ids, job_id, started_at, heartbeat_at, finished_at) VALUES ($1, $2, $3, 'webhook_retry', "
        "'completed', $4, $5::jsonb, $6::jsonb, $7::jsonb, $8::jsonb, '[]'::jsonb, $9, now(), now(), now())",
        run_id,
        row["workspace"],
        row["conversation"],
        summary["layer"],
        _json.encode(summary["flows"]).decode(),
        _json.encode(summary["trace"]).decode(),
        _json.encode(summary["warnings"]).decode(),
        _json.encode(summary["summary"]).decode(),
        f"webhook:{execution_id}",
    )


async def release_abandoned_runs(*, stale_after_s: float) -> int:
    """Runs whose worker stopped heart-beating give their messages back (a crash mid-batch)."""
    pool = engine.pool()
    rows = await pool.fetch(
        "SELECT id, conversation FROM runs WHERE status = 'running' AND kind = 'turn' "
        "AND heartbeat_at < now() - make_interval(secs => $1)",
        stale_after_s,
    )
    for row in rows:
        await _give_back(row["id"], row["conversation"], error="worker stopped during the run")
        log.warning(
            "abandoned run released",
            extra={"run_id": str(row["id"]), "conversation_id": str(row["conversation"])},
        )
    return len(rows)


async def _give_back(run_id: uuid.UUID, conversation: uuid.UUID, *, error: str) -> None:
    """Abandon a running turn and release its messages to the next one."""
    await engine.pool().execute(_GIVE_BACK, run_id, conversation, error)


async def heartbeat(conversation_ids: list[str]) -> None:
    """Tell recovery that the conversations' running turns are alive."""
    await engine.pool().execute(
        "UPDATE runs SET heartbeat_at = now() WHERE conversation = ANY($1::uuid[]) AND status = 'running'",
        [uuid.UUID(c) for c in conversation_ids],
    )


async def unprocessed_conversations(*, older_than_s: float, limit: int = 1000) -> list[str]:
    rows = await engine.pool().fetch(_UNPROCESSED, older_than_s, limit)
    return [str(r["conversation"]) for r in rows]
