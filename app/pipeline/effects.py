"""Step 7, effects: what the interpreter asks for during a turn, done for real (flows.runtime.Runtime).

Comes from: the turn (app.pipeline.turn), which hands a `TurnEffects` to the interpreter.
Goes to: replies to the outbox (app.pipeline.outbox), webhook calls to
app.pipeline.webhook_calls, the AI state to PostgreSQL and its published Redis keys
(app.services.ai_state), tags and statuses to PostgreSQL, understanding to app.services.ai.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from app.pipeline.ledger import refuse_unless_held
from app.pipeline.outbox import Outbox
from app.pipeline.webhook_calls import WebhookCalls
from app.services import conversations, events
from app.services.ai.understanding import Understanding
from app.services.ai_state import AIStateStore, StoredAIState
from app.services.channels.store import ChannelRecord
from flows.nodes.call_webhook import WebhookCall
from flows.runtime import (
    ActionRunStatus,
    AIAnswer,
    Detection,
    Extraction,
    IntentCandidate,
    WebhookOutcome,
)
from flows.schema import VariableSpec
from flows.turn import AIState, PendingAction, Turn

log = logging.getLogger(__name__)

_WAITING = [ActionRunStatus.PENDING.value, ActionRunStatus.AWAITING_CONFIRMATION.value]
# Each status an external action can move to, and the statuses it may come from.
_ALLOWED_FROM: dict[str, list[str]] = {
    ActionRunStatus.PROCESSING.value: _WAITING,
    ActionRunStatus.REJECTED.value: _WAITING,
    ActionRunStatus.EXPIRED.value: _WAITING,
    ActionRunStatus.COMPLETED.value: [ActionRunStatus.PROCESSING.value],
    ActionRunStatus.FAILED.value: [ActionRunStatus.PROCESSING.value],
}


class TurnScope(msgspec.Struct, frozen=True):
    """Who and what a runtime acts for."""

    workspace_id: str
    conversation_id: str
    contact_phone: str
    run_id: str
    batch_key: str  # stable for the same batch, so a retried batch does not send twice
    original_message: str = ""
    flow_versions: dict[str, int] = {}  # flow id -> the version this turn runs
    # The turn's fencing token (its conversation's lease epoch when it claimed its batch, app.pipeline.ledger):
    # each effect is recorded only while it is still the conversation's. None outside a turn (a continuation).
    epoch: int | None = None


class TurnEffects:
    """Effects go to Redis, PostgreSQL and the channel; understanding and webhooks to their services."""

    def __init__(
        self,
        scope: TurnScope,
        *,
        db: asyncpg.Pool,
        channel: ChannelRecord,
        outbox: Outbox,
        ai_store: AIStateStore,
        understanding: Understanding,
        webhooks: WebhookCalls,
        publisher: events.LiveEvents,
        history_turns: int,
        confirmation_ttl_s: int,
        live: events.LiveBatch | None = None,
    ) -> None:
        self.scope = scope
        self.db = db
        self.channel = channel
        self.outbox = outbox
        self.ai_store = ai_store
        self.understanding = understanding
        self.webhooks = webhooks
        self.publisher = publisher
        self.history_turns = history_turns
        self.confirmation_ttl_s = confirmation_ttl_s
        # Live events wait here and go out in one round trip with the turn's end (or before a
        # slow call, so a live view never waits on a webhook or the LLM to see a reply).
        self.live = live
        self.sent: list[dict[str, Any]] = []
        self._send_seq = 0

    # --- messages -----------------------------------------------------------------
    async def send_message(self, text: str, *, message_type: str) -> None:
        self._send_seq += 1
        result = await self.outbox.send(
            self.channel,
            conversation_id=self.scope.conversation_id,
            to=self.scope.contact_phone,
            text=text,
            message_type=message_type,
            dedupe_key=f"{self.scope.batch_key}:{self._send_seq}",
            live=self.live,
            epoch=self.scope.epoch,
        )
        self.sent.append(
            {
                "text": text,
                "message_type": message_type,
                "status": result.status,
                "message_id": result.message_id,
                "error": result.error,
            }
        )
        if message_type == "ai":
            await self.ai_store.append_history(
                self.scope.conversation_id, role="assistant", text=text, keep=self.history_turns
            )

    # --- AI state -----------------------------------------------------------------
    async def write_ai_control(self, *, ai_enabled: bool, custom_prompt: str | None) -> None:
        await self._update_ai_state(
            "AI control written", ai_enabled=ai_enabled, custom_prompt=custom_prompt, set_prompt=True
        )

    async def merge_ai_context(self, data: dict) -> dict:
        state = await self._update_ai_state("AI context merged", patch=data)
        return dict(state.context) if state is not None else {}

    async def reset_ai_context(self) -> None:
        await self._update_ai_state("AI context reset", reset_context=True)

    async def _update_ai_state(self, effect: str, **change: Any) -> StoredAIState | None:
        """The state's one statement (fenced by the turn's epoch), then its live event."""
        state = await self.ai_store.update(
            self.scope.workspace_id, self.scope.conversation_id, epoch=self.scope.epoch, **change
        )
        if state is None:
            await self._refused_unless_held(effect)  # else the conversation is gone: nothing to change
        await self._live("ai_state")
        return state

    # --- conversation ----------------------------------------------------------------
    async def set_conversation_status(self, status: str) -> None:
        changed = await self.db.fetchval(
            conversations.SET_STATUS,
            uuid.UUID(self.scope.conversation_id),
            uuid.UUID(self.scope.workspace_id),
            status,
            self.scope.epoch,
        )
        if changed is None:
            await self._refused_unless_held(f"status {status!r}")
        await self._live("conversation")

    async def add_tag(self, tag: str) -> bool:
        added = await self.db.fetchval(
            conversations.ADD_TAG,
            uuid.UUID(self.scope.conversation_id),
            uuid.UUID(self.scope.workspace_id),
            tag,
            self.scope.epoch,
        )
        if added is None:
            await self._refused_unless_held(f"tag {tag!r} added")  # or the tag was there already
            return False
        await self._live("conversation")
        return True

    async def remove_tag(self, tag: str) -> bool:
        removed = await self.db.fetchval(
            conversations.REMOVE_TAG,
            uuid.UUID(self.scope.conversation_id),
            uuid.UUID(self.scope.workspace_id),
            tag,
            self.scope.epoch,
        )
        if removed is None:
            await self._refused_unless_held(f"tag {tag!r} removed")  # or the tag was not there
            return False
        await self._live("conversation")
        return True

    # --- external actions ----------------------------------------------------------------
    async def call_webhook(self, call: WebhookCall) -> WebhookOutcome:
        await self._publish_held()
        return await self.webhooks.execute(call, scope=self.scope)

    async def detect_intent(self, text: str, candidates: list[IntentCandidate]) -> Detection:
        await self._publish_held()
        return await self.understanding.detect_intent(self.scope.workspace_id, text, candidates)

    async def extract_variables(self, text: str, variables: list[VariableSpec]) -> Extraction:
        await self._publish_held()
        return await self.understanding.extract_variables(self.scope.workspace_id, text, variables)

    async def classify_reply(self, text: str) -> str:
        await self._publish_held()
        return await self.understanding.classify_reply(self.scope.workspace_id, text)

    async def save_pending(self, pending: PendingAction, *, message: str) -> None:
        """Insert or update the pending action by id, then ask the customer."""
        status = (
            ActionRunStatus.AWAITING_CONFIRMATION
            if pending.kind.value == "confirmation"
            else ActionRunStatus.PENDING
        )
        expires_at = datetime.now(UTC) + timedelta(seconds=self.confirmation_ttl_s)
        saved = await self.db.fetchval(
            """
            INSERT INTO action_executions (id, workspace, flow_id, flow_version, node_id, webhook_node_id,
                conversation, run_id, status, kind, vars, missing, asked_count, confidence, original_message,
                phone, idempotency_key, attempts, state, dead_letter, created_at, updated_at, expires_at)
            SELECT $1, $2, $3, $4, $5, '', $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12, $13, $14, $15, $16, 0,
                   $18::jsonb, false, now(), now(), $17
             WHERE $19::bigint IS NULL OR $19 = (SELECT lease_epoch FROM conversations WHERE id = $6)
            ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, kind = EXCLUDED.kind, vars = EXCLUDED.vars,
                missing = EXCLUDED.missing, asked_count = EXCLUDED.asked_count, updated_at = now(),
                expires_at = EXCLUDED.expires_at, state = EXCLUDED.state
            RETURNING id
            """,
            uuid.UUID(pending.id),
            uuid.UUID(self.scope.workspace_id),
            uuid.UUID(pending.flow_id),
            self._flow_version(pending.flow_id),
            pending.node_id,
            uuid.UUID(self.scope.conversation_id),
            uuid.UUID(self.scope.run_id),
            status.value,
            pending.kind.value,
            pending.vars,
            pending.missing,
            pending.asked_count,
            pending.confidence,
            self.scope.original_message,
            self.scope.contact_phone,
            uuid.uuid4().hex,
            expires_at,
            # The customer's language travels with the question: the next turn runs no detection.
            {"language": pending.language},
            self.scope.epoch,
        )
        if saved is None:
            await self._refused_unless_held("pending action saved")
        if message:
            await self.send_message(message, message_type="support")

    async def resolve_pending(self, pending: PendingAction, status: str) -> bool:
        """Compare-and-set: a duplicate reply or a second worker finds the row already moved."""
        allowed_from = _ALLOWED_FROM.get(status)
        if allowed_from is None:
            raise ValueError(f"{status!r} is not a status an external action can move to")
        moved = await self.db.fetchval(
            "UPDATE action_executions SET status = $3, updated_at = now() "
            "WHERE id = $1 AND workspace = $2 AND status = ANY($4::text[]) "
            "AND ($5::bigint IS NULL OR $5 = (SELECT lease_epoch FROM conversations WHERE id = $6)) "
            "RETURNING id",
            uuid.UUID(pending.id),
            uuid.UUID(self.scope.workspace_id),
            status,
            allowed_from,
            self.scope.epoch,
            uuid.UUID(self.scope.conversation_id),
        )
        if moved is None:
            await self._refused_unless_held(f"pending action moved to {status}")  # or it had moved already
        return moved is not None

    async def answer_with_ai(self, turn: Turn, ai: AIState) -> AIAnswer:
        await self.ai_store.append_history(
            self.scope.conversation_id, role="user", text=turn.text, keep=self.history_turns
        )
        history = await self.ai_store.history(self.scope.conversation_id)
        await self._publish_held()
        return await self.understanding.answer(self.scope.workspace_id, turn, ai, history=history)

    # --- helpers ------------------------------------------------------------------------
    async def _refused_unless_held(self, effect: str) -> None:
        await refuse_unless_held(self.db, self.scope.conversation_id, self.scope.epoch, effect)

    def _flow_version(self, flow_id: str) -> int:
        return self.scope.flow_versions.get(flow_id, 0)

    async def _live(self, kind: str) -> None:
        await self.publisher.publish_or_hold(
            self.scope.workspace_id,
            events.LiveEvent(kind=kind, conversation_id=self.scope.conversation_id),
            self.live,
        )

    async def _publish_held(self) -> None:
        if self.live is not None:
            await self.live.publish_held()
