"""Step 6, the turn: one batch of one conversation, interpreted.

Comes from: the flush job (app.pipeline.flush), holding the conversation's lock.
Goes to: the ledger (app.pipeline.ledger) to claim the batch and record the run, and the
interpreter (flows.interpreter) with a `TurnEffects` (app.pipeline.effects) for
everything it does. A webhook retried later continues here too
(`continue_after_webhook`), once app.pipeline.webhook_calls says how it ended.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from typing import Any

import asyncpg
import msgspec
from redis import exceptions as redis_exceptions

from app.pipeline.effects import TurnEffects, TurnScope
from app.pipeline.ledger import RunLedger, RunStatus
from app.pipeline.outbox import Outbox
from app.pipeline.webhook_calls import WebhookCalls
from app.services import ai_state, events, flows_store
from app.services.ai.understanding import Understanding
from app.services.ai_state import AIStateStore
from app.services.channels import store as channel_store
from app.settings import Settings
from flows.interpreter import continue_from, run_turn
from flows.runtime import Superseded, WebhookOutcome, WebhookStatus
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

_CONTEXT = """
SELECT c.workspace, c.channel, c.status, c.tags, c.ai_enabled, c.custom_prompt, c.ai_context, c.ai_control_at,
       p.id AS contact_id, p.phone, p.first_name, p.last_name, p.tags AS contact_tags, p.attributes
  FROM conversations c JOIN contacts p ON p.id = c.contact
 WHERE c.id = $1
"""
_EXECUTION = """
SELECT workspace, flow_id, flow_version, webhook_node_id, conversation, vars, original_message, status,
       (SELECT count(*) FROM external_action_logs l WHERE l.execution = e.id) AS attempts_logged
  FROM action_executions e WHERE id = $1
"""


class TurnRunner:
    """Runs turns and webhook continuations; built once per process with what they need."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: asyncpg.Pool,
        ledger: RunLedger,
        outbox: Outbox,
        ai_store: AIStateStore,
        plans: flows_store.PlanCache,
        understanding: Understanding,
        webhooks: WebhookCalls,
        publisher: events.LiveEvents,
    ) -> None:
        self.settings = settings
        self.db = db
        self.ledger = ledger
        self.outbox = outbox
        self.ai_store = ai_store
        self.plans = plans
        self.understanding = understanding
        self.webhooks = webhooks
        self.publisher = publisher

    async def run(
        self,
        conversation_id: str,
        *,
        job_id: str = "",
        live: events.LiveBatch | None = None,
        run_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """Run one turn for the conversation's next batch; returns a short summary.

        The batch is the one given back by an abandoned run if there is one (its members as first
        claimed: `rerun` in the summary, later messages wait), else every waiting message.
        With `live`, the turn's live events are left there for the caller to publish; `run_id`
        names the run the turn opens (the caller beats its heartbeat).
        """
        conv_uuid = uuid.UUID(conversation_id)
        run_id = run_id or uuid.uuid4()
        context = await self.ledger.start(conv_uuid, run_id, job_id)
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
            "epoch": context["epoch"],
        }
        started = time.perf_counter()
        try:
            result = await self._interpret(conversation_id, workspace_id, context, claimed, run_id, live)
        except Superseded as exc:
            # Another turn holds the conversation now (this one stalled past its lock): the effect was
            # refused, and the turn does nothing more. Its batch goes back, members unchanged.
            log.warning(
                "turn superseded; its effect was refused and it stops",
                extra={**log_extra, "refused": str(exc)},
            )
            await self.ledger.give_back(run_id, conv_uuid, error=f"superseded: {exc}")
            return {"status": RunStatus.SUPERSEDED, "run_id": str(run_id), "error": str(exc)}
        except asyncio.CancelledError:
            # The worker is stopping: give the batch back now, not when recovery finds the lock expired.
            log.warning("turn cancelled; its messages go back to the queue", extra=log_extra)
            try:
                await asyncio.shield(
                    self.ledger.give_back(run_id, conv_uuid, error="cancelled: the worker stopped")
                )
            except Exception:
                # The run keeps its messages until recovery sees its heartbeat stop: late, not lost.
                log.exception("giving the batch back failed; recovery will", extra=log_extra)
            raise
        except TRANSIENT_ERRORS as exc:
            # Redis or PostgreSQL failed for a moment: the batch goes back, and the caller signals
            # the conversation again. Replies already sent are not sent twice (their dedupe keys
            # come from the batch), and webhook executions, keyed by the batch too, are reused.
            log.warning(
                "turn interrupted; its messages go back to the queue",
                extra={**log_extra, "error": f"{type(exc).__name__}: {exc}"},
            )
            await self.ledger.give_back(run_id, conv_uuid, error=f"interrupted: {type(exc).__name__}: {exc}")
            raise
        except Exception as exc:  # a bug must not lose the batch: record it, keep the worker alive
            log.exception("turn failed", extra=log_extra)
            await self.ledger.fail(run_id, repr(exc), message_ids)
            return {"status": RunStatus.FAILED, "run_id": str(run_id), "error": repr(exc)}
        duration_ms = (time.perf_counter() - started) * 1000
        if not await self.ledger.finish(run_id, result, message_ids):
            # Recovery declared this run dead while it was still working, or another turn holds the
            # conversation: nothing is recorded, and the batch (if still this run's) goes back.
            log.warning("turn superseded at its end; its run is not completed", extra=log_extra)
            await self.ledger.give_back(
                run_id, conv_uuid, error="superseded: another turn holds the conversation"
            )
            return {"status": RunStatus.SUPERSEDED, "run_id": str(run_id)}
        await self.publisher.publish_or_hold(
            workspace_id,
            events.LiveEvent(
                kind="run",
                conversation_id=conversation_id,
                data={"run_id": str(run_id), "layer": result["layer"]},
            ),
            live,
        )
        log.info(
            "turn completed",
            extra={**log_extra, "layer": result["layer"], "duration_ms": round(duration_ms, 2)},
        )
        return {
            "status": RunStatus.COMPLETED,
            "run_id": str(run_id),
            "messages": len(message_ids),
            "layer": result["layer"],
            "rerun": context["rerun"],
        }

    async def _interpret(
        self,
        conversation_id: str,
        workspace_id: str,
        context: Any,
        claimed: list[Any],
        run_id: uuid.UUID,
        live: events.LiveBatch | None,
    ) -> dict[str, Any]:
        channel = await _channel_of(context, conversation_id)
        # The AI state came from PostgreSQL with the claim; the plans' revision is read in the
        # round trip that checks its published copy (written again if Redis lost it).
        ai = ai_state.state_of(context)
        (revision,) = await self.ai_store.read_with(
            conversation_id, ai, [flows_store.revision_key(workspace_id)]
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
                language=row.get("language") or "",
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
            ai=_turn_ai(ai),
            pending=pending,
            timestamp=time.time(),
            phone_number=context["phone"],
        )
        batch_key = hashlib.sha256(",".join(sorted(r["id"] for r in claimed)).encode()).hexdigest()[:32]
        plans = await self.plans.active_plans(workspace_id, revision=int(revision or 0))
        scope = TurnScope(
            workspace_id=workspace_id,
            conversation_id=conversation_id,
            contact_phone=context["phone"],
            run_id=str(run_id),
            batch_key=batch_key,
            original_message=turn.text,
            flow_versions={p.flow_id: p.version for p in plans},
            epoch=context["epoch"],
        )
        effects = self._effects(scope, channel, live)
        result = await run_turn(
            plans,
            turn,
            effects,
            strict=False,
            auto_execute_threshold=self.settings.ai.auto_execute_threshold,
            ambiguity_margin=self.settings.ai.ambiguity_margin,
        )
        return _summary(result, effects)

    async def retry_webhook(self, execution_id: str, attempt: int) -> WebhookOutcome | None:
        """The scheduled retry of a webhook execution; when it ends, the flow continues."""
        outcome = await self.webhooks.retry(execution_id, attempt)
        if outcome is not None and outcome.status is not WebhookStatus.SCHEDULED:
            await self.continue_after_webhook(execution_id, outcome)
        return outcome

    async def replay_webhook(self, workspace_id: str, execution_id: str) -> WebhookOutcome | None:
        """Send a dead-lettered execution again; when it ends, the flow continues."""
        outcome = await self.webhooks.replay(workspace_id, execution_id)
        if outcome is not None and outcome.status is not WebhookStatus.SCHEDULED:
            await self.continue_after_webhook(execution_id, outcome)
        return outcome

    async def continue_after_webhook(self, execution_id: str, outcome: WebhookOutcome) -> None:
        """A retried webhook ended: send its success/failure message and run the nodes after that port.

        Recorded as a run of kind `webhook_retry` on the conversation, like any turn.
        """
        row = await self.db.fetchrow(_EXECUTION, uuid.UUID(execution_id))
        if row is None or row["conversation"] is None:
            return
        workspace_id, conversation_id = str(row["workspace"]), str(row["conversation"])
        plan = await self.plans.plan_for(workspace_id, str(row["flow_id"]), row["flow_version"])
        context = await self.db.fetchrow(_CONTEXT, row["conversation"])
        if plan is None or context is None:
            log.warning(
                "webhook continuation skipped: flow version or conversation is gone",
                extra={"execution_id": execution_id, "conversation_id": conversation_id},
            )
            return
        channel = await _channel_of(context, conversation_id)
        ai = ai_state.state_of(context)
        await self.ai_store.read_with(conversation_id, ai, [])
        contact, conversation = _contact_and_conversation(conversation_id, context)
        turn = Turn(
            workspace_id=workspace_id,
            conversation=conversation,
            contact=contact,
            messages=[TurnMessage(id=execution_id, text=row["original_message"], timestamp=time.time())],
            ai=_turn_ai(ai),
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
        effects = self._effects(scope, channel)
        port = "success" if outcome.status is WebhookStatus.SUCCESS else "failure"
        result = await continue_from(
            plan,
            row["webhook_node_id"],
            port,
            turn,
            effects,
            vars=row["vars"] or {},
            response=outcome.response,
            outcome=outcome,
            plans=await self.plans.active_plans(workspace_id),
        )
        await self.ledger.record_continuation(
            run_id,
            workspace=row["workspace"],
            conversation=row["conversation"],
            summary=_summary(result, effects),
            job_id=f"webhook:{execution_id}",
        )

    def _effects(self, scope: TurnScope, channel: Any, live: events.LiveBatch | None = None) -> TurnEffects:
        return TurnEffects(
            scope,
            db=self.db,
            channel=channel,
            outbox=self.outbox,
            ai_store=self.ai_store,
            understanding=self.understanding,
            webhooks=self.webhooks,
            publisher=self.publisher,
            history_turns=self.settings.ai.history_turns,
            confirmation_ttl_s=self.settings.ai.confirmation_ttl_seconds,
            live=live,
        )


def _turn_ai(stored: ai_state.StoredAIState) -> AIState:
    return AIState(
        ai_enabled=stored.control.ai_enabled,
        custom_prompt=stored.control.custom_prompt,
        context=dict(stored.context),
    )


def _contact_and_conversation(conversation_id: str, context: Any) -> tuple[ContactInfo, ConversationInfo]:
    return (
        ContactInfo(
            id=str(context["contact_id"]),
            first_name=context["first_name"],
            last_name=context["last_name"],
            phone=context["phone"],
            tags=list(context["contact_tags"] or []),
            attributes=context["attributes"] or {},
        ),
        ConversationInfo(id=conversation_id, status=context["status"], tags=list(context["tags"] or [])),
    )


async def _channel_of(context: Any, conversation_id: str) -> Any:
    channel = await channel_store.lookup(str(context["channel"]))
    if channel is None:
        raise RuntimeError(f"channel {context['channel']} of conversation {conversation_id} no longer exists")
    return channel


def _summary(result: Any, effects: TurnEffects) -> dict[str, Any]:
    return {
        "layer": result.layer.value if result.layer else None,
        "flows": [{"flow_id": f, "version": v} for f, v in result.flows_run],
        "trace": msgspec.to_builtins(result.trace),
        "warnings": list(result.warnings),
        "summary": {
            "sent": effects.sent,
            "vars": msgspec.to_builtins(result.vars),
            "detection": msgspec.to_builtins(result.detection),
            "answer": msgspec.to_builtins(result.answer),
            "ai": msgspec.to_builtins(result.ai),
            "steps": result.steps,
        },
    }
