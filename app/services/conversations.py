"""Conversations as people see them: list, detail with messages and AI state, agent actions."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Protocol

import asyncpg
import msgspec

from app.services import events
from app.services.ai_state import AIStateStore, StoredAIState, state_of
from app.services.channels import store as channel_store
from app.services.replies import delivery_reason
from app.services.values import iso, parse_uuid


class MessageRead(msgspec.Struct):
    id: str
    direction: str
    type: str
    text: str
    status: str
    message_type: str
    provider_message_id: str | None
    media_id: str | None
    error: dict[str, Any]
    created_at: str
    processed_at: str | None
    run_id: str | None
    reason: str | None = None  # why a reply failed, is in doubt or unknown, in a sentence


class AIStateRead(msgspec.Struct):
    ai_enabled: bool
    custom_prompt: str | None
    context: dict[str, Any]


class ConversationSummary(msgspec.Struct):
    id: str
    channel_id: str
    contact_id: str
    contact_phone: str
    contact_name: str
    status: str
    tags: list[str]
    created_at: str
    last_message_at: str
    last_message: str | None = None


class ConversationRead(ConversationSummary, kw_only=True):
    messages: list[MessageRead]
    ai: AIStateRead
    contact: dict[str, Any]


class AIStateUpdate(msgspec.Struct, forbid_unknown_fields=True):
    ai_enabled: bool | None = None
    custom_prompt: str | None = None
    clear_custom_prompt: bool = False
    context: dict[str, Any] | None = None
    reset_context: bool = False


class AgentMessage(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class ConversationUpdate(msgspec.Struct, forbid_unknown_fields=True):
    status: Annotated[str, msgspec.Meta(min_length=1, max_length=40)] | None = None  # the column's size
    add_tags: list[str] = []
    remove_tags: list[str] = []


# A conversation's status and tags, as agents (below) and flows (app.pipeline.effects) change them.
# $4 is a turn's fencing token (None for an agent): a turn that no longer holds the conversation
# changes nothing (app.pipeline.ledger).
_HELD = "($4::bigint IS NULL OR lease_epoch = $4)"
SET_STATUS = f"UPDATE conversations SET status = $3 WHERE id = $1 AND workspace = $2 AND {_HELD} RETURNING id"
ADD_TAG = (
    "UPDATE conversations SET tags = tags || to_jsonb($3::text) "
    f"WHERE id = $1 AND workspace = $2 AND NOT tags ? $3 AND {_HELD} RETURNING id"
)
REMOVE_TAG = (
    "UPDATE conversations SET tags = tags - $3 "
    f"WHERE id = $1 AND workspace = $2 AND tags ? $3 AND {_HELD} RETURNING id"
)

_SUMMARY = """
SELECT c.id, c.channel, c.contact, c.status, c.tags, c.created_at, c.last_message_at, p.phone, p.first_name,
       p.last_name, p.tags AS contact_tags, p.attributes, c.ai_enabled, c.custom_prompt,
       c.ai_context, c.ai_control_at,
       (SELECT m.text FROM messages m WHERE m.conversation = c.id ORDER BY m.created_at DESC LIMIT 1) AS last_message
  FROM conversations c JOIN contacts p ON p.id = c.contact
"""


def _summary(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "channel_id": str(row["channel"]),
        "contact_id": str(row["contact"]),
        "contact_phone": row["phone"],
        "contact_name": " ".join(x for x in (row["first_name"], row["last_name"]) if x),
        "status": row["status"],
        "tags": list(row["tags"] or []),
        "created_at": iso(row["created_at"]),
        "last_message_at": iso(row["last_message_at"]),
        "last_message": row["last_message"],
    }


def _ai_read(state: StoredAIState) -> AIStateRead:
    return AIStateRead(
        ai_enabled=state.control.ai_enabled,
        custom_prompt=state.control.custom_prompt,
        context=dict(state.context),
    )


class ReplySender(Protocol):
    """What an agent's message goes through: the outbox of the message path (app.pipeline.outbox)."""

    async def send(
        self,
        channel: channel_store.ChannelRecord,
        *,
        conversation_id: str,
        to: str,
        text: str,
        message_type: str,
        dedupe_key: str | None,
    ) -> Any: ...


class Conversations:
    """Reads and agent actions on conversations; one per process."""

    def __init__(
        self, db: asyncpg.Pool, *, ai_store: AIStateStore, outbox: ReplySender, publisher: events.LiveEvents
    ) -> None:
        self.db = db
        self.ai_store = ai_store
        self.outbox = outbox
        self.publisher = publisher

    async def list_conversations(
        self, workspace_id: str, *, limit: int = 50, offset: int = 0, status: str | None = None
    ) -> list[ConversationSummary]:
        args: list[Any] = [uuid.UUID(workspace_id), limit, offset]
        where = "c.workspace = $1"
        if status:
            args.append(status)
            where += " AND c.status = $4"
        rows = await self.db.fetch(
            f"{_SUMMARY} WHERE {where} ORDER BY c.last_message_at DESC LIMIT $2 OFFSET $3", *args
        )
        return [ConversationSummary(**_summary(r)) for r in rows]

    async def get_conversation(
        self, workspace_id: str, conversation_id: str, *, message_limit: int = 200
    ) -> ConversationRead | None:
        cid = parse_uuid(conversation_id)
        if cid is None:
            return None
        pool = self.db
        row = await pool.fetchrow(
            f"{_SUMMARY} WHERE c.id = $1 AND c.workspace = $2", cid, uuid.UUID(workspace_id)
        )
        if row is None:
            return None
        messages = await pool.fetch(
            "SELECT * FROM (SELECT id, direction, type, text, status, message_type, provider_message_id, media_id, "
            "error, created_at, processed_at, run_id FROM messages WHERE conversation = $1 AND workspace = $2 "
            "ORDER BY created_at DESC LIMIT $3) t ORDER BY created_at",
            cid,
            uuid.UUID(workspace_id),
            message_limit,
        )
        ai = state_of(row)
        await self.ai_store.read_with(conversation_id, ai, [])  # the published copy, if Redis lost it
        return ConversationRead(
            **_summary(row),
            messages=[
                MessageRead(
                    id=str(m["id"]),
                    direction=m["direction"],
                    type=m["type"],
                    text=m["text"],
                    status=m["status"],
                    message_type=m["message_type"],
                    provider_message_id=m["provider_message_id"],
                    media_id=m["media_id"],
                    error=m["error"] or {},
                    created_at=iso(m["created_at"]),
                    processed_at=iso(m["processed_at"]),
                    run_id=str(m["run_id"]) if m["run_id"] else None,
                    reason=delivery_reason(m["status"], m["error"] or {})
                    if m["direction"] == "out"
                    else None,
                )
                for m in messages
            ],
            ai=_ai_read(ai),
            contact={
                "id": str(row["contact"]),
                "phone": row["phone"],
                "first_name": row["first_name"],
                "last_name": row["last_name"],
                "tags": list(row["contact_tags"] or []),
                "attributes": row["attributes"] or {},
            },
        )

    async def _exists(self, workspace_id: str, conversation_id: str) -> bool:
        cid = parse_uuid(conversation_id)
        return cid is not None and bool(
            await self.db.fetchval(
                "SELECT 1 FROM conversations WHERE id = $1 AND workspace = $2", cid, uuid.UUID(workspace_id)
            )
        )

    async def update_ai_state(
        self, workspace_id: str, conversation_id: str, data: AIStateUpdate
    ) -> AIStateRead | None:
        """An agent edits the AI state by hand: PostgreSQL first, then the keys the flows write."""
        if parse_uuid(conversation_id) is None:
            return None
        set_prompt = data.clear_custom_prompt or data.custom_prompt is not None
        state = await self.ai_store.update(
            workspace_id,
            conversation_id,
            ai_enabled=data.ai_enabled,
            custom_prompt=None if data.clear_custom_prompt else (data.custom_prompt or None),
            set_prompt=set_prompt,
            reset_context=data.reset_context,
            patch=data.context or None,
        )
        if state is None:
            return None
        await self.publisher.publish(
            workspace_id, events.LiveEvent(kind="ai_state", conversation_id=conversation_id)
        )
        return _ai_read(state)

    async def update_conversation(
        self, workspace_id: str, conversation_id: str, data: ConversationUpdate
    ) -> bool:
        cid = parse_uuid(conversation_id)
        if cid is None or not await self._exists(workspace_id, conversation_id):
            return False
        ws = uuid.UUID(workspace_id)
        pool = self.db
        if data.status:
            await pool.execute(SET_STATUS, cid, ws, data.status, None)
        for tag in data.add_tags:
            await pool.execute(ADD_TAG, cid, ws, tag, None)
        for tag in data.remove_tags:
            await pool.execute(REMOVE_TAG, cid, ws, tag, None)
        await self.publisher.publish(
            workspace_id, events.LiveEvent(kind="conversation", conversation_id=conversation_id)
        )
        return True

    async def send_agent_message(
        self, workspace_id: str, conversation_id: str, text: str
    ) -> MessageRead | None:
        cid = parse_uuid(conversation_id)
        if cid is None or not text.strip():
            return None
        row = await self.db.fetchrow(
            "SELECT c.channel, p.phone FROM conversations c JOIN contacts p ON p.id = c.contact "
            "WHERE c.id = $1 AND c.workspace = $2",
            cid,
            uuid.UUID(workspace_id),
        )
        if row is None:
            return None
        channel = await channel_store.lookup_scoped(workspace_id, str(row["channel"]))
        if channel is None:
            return None
        result = await self.outbox.send(
            channel,
            conversation_id=conversation_id,
            to=row["phone"],
            text=text.strip(),
            message_type="agent",
            dedupe_key=None,
        )
        conversation = await self.get_conversation(workspace_id, conversation_id, message_limit=20)
        return (
            next((m for m in conversation.messages if m.id == result.message_id), None)
            if conversation
            else None
        )
