"""Ingress: store inbound items once, signal the buffer, and apply status callbacks.

Nothing here calls an AI or the network beyond PostgreSQL and Redis, so a webhook is
answered in milliseconds. The database's unique (channel, direction, provider id) is
what makes a duplicate delivery harmless; the buffer's `SET NX` keeps it from being
signalled twice.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict

import msgspec

from app.db import engine
from app.services import buffer as buffer_mod
from app.services import events
from app.services.channels.items import AMENDMENT_TYPES, InboundItem, split_name
from app.services.channels.store import ChannelRecord

log = logging.getLogger(__name__)

_CONVERSATION_CACHE_SIZE = 50_000
_conversations: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
_json = msgspec.json.Encoder()


class Accepted(msgspec.Struct, frozen=True):
    message_id: str
    conversation_id: str
    duplicate: bool


STATUS_RANK = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4, "played": 5, "failed": 6}


_INSERT_CONTACT = """
INSERT INTO contacts (id, workspace, phone, first_name, last_name, tags, attributes, created_at)
VALUES ($1, $2, $3, $4, $5, '[]'::jsonb, '{}'::jsonb, now())
ON CONFLICT (workspace, phone) DO NOTHING
RETURNING id
"""
_SELECT_CONTACT = "SELECT id FROM contacts WHERE workspace = $1 AND phone = $2"
_INSERT_CONVERSATION = """
INSERT INTO conversations (id, workspace, channel, contact, status, tags, created_at, last_message_at)
VALUES ($1, $2, $3, $4, 'open', '[]'::jsonb, now(), now())
ON CONFLICT (channel, contact) DO NOTHING
RETURNING id
"""
_SELECT_CONVERSATION = "SELECT id FROM conversations WHERE channel = $1 AND contact = $2"
_INSERT_MESSAGE = """
INSERT INTO messages (id, workspace, conversation, channel, direction, seq, provider_message_id, type, text,
                      media_id, payload, events, status, created_at)
VALUES ($1, $2, $3, $4, 'in', $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, 'received', clock_timestamp())
ON CONFLICT (channel, direction, provider_message_id) DO NOTHING
RETURNING id
"""
_UPDATE_STATUS = """
UPDATE messages
   SET status = $3, status_at = to_timestamp($4), error = $5::jsonb
 WHERE channel = $1 AND direction = 'out' AND provider_message_id = $2
   AND coalesce(array_position($6::text[], status), 0) < array_position($6::text[], $3)
RETURNING id, conversation
"""
_STATUS_ORDER = sorted(STATUS_RANK, key=STATUS_RANK.__getitem__)


async def _resolve_conversation(conn, channel: ChannelRecord, item: InboundItem) -> tuple[str, list[str]]:
    """The conversation for (channel, sender), creating contact and conversation on first contact."""
    key = (channel.id, item.from_phone)
    hit = _conversations.get(key)
    if hit is not None:
        _conversations.move_to_end(key)
        return hit[1], []
    raised: list[str] = []
    first, last = item.contact_first_name, item.contact_last_name
    if not first and item.contact_name:
        first, last = split_name(item.contact_name)
    contact_id = await conn.fetchval(_INSERT_CONTACT, uuid.uuid4(), channel.workspace_id, item.from_phone, first, last)
    if contact_id is None:
        contact_id = await conn.fetchval(_SELECT_CONTACT, channel.workspace_id, item.from_phone)
    else:
        raised.append("contact_created")
    conversation_id = await conn.fetchval(_INSERT_CONVERSATION, uuid.uuid4(), channel.workspace_id, channel.id, contact_id)
    if conversation_id is None:
        conversation_id = await conn.fetchval(_SELECT_CONVERSATION, channel.id, contact_id)
    else:
        raised.append("conversation_created")
    _conversations[key] = (str(contact_id), str(conversation_id))
    if len(_conversations) > _CONVERSATION_CACHE_SIZE:
        _conversations.popitem(last=False)
    return str(conversation_id), raised


def forget_conversation(channel_id: str, phone: str) -> None:
    """Drop a cached mapping (a conversation was deleted)."""
    _conversations.pop((channel_id, phone), None)


async def accept(channel: ChannelRecord, items: list[InboundItem], *, buffer: buffer_mod.Buffer) -> list[Accepted]:
    """Store each item once and signal its conversation's buffer."""
    accepted: list[Accepted] = []
    async with engine.pool().acquire() as conn:
        for item in items:
            conversation_id, raised = await _resolve_conversation(conn, channel, item)
            message_id = uuid.uuid4()
            stored = await conn.fetchval(
                _INSERT_MESSAGE,
                message_id, channel.workspace_id, conversation_id, channel.id,
                int(item.timestamp * 1000), item.provider_message_id, item.type, item.text,
                item.media_id, _json.encode(item.raw).decode(), _json.encode(raised).decode(),
            )
            if stored is None:
                log.info("duplicate delivery dropped",
                         extra={"conversation_id": conversation_id, "provider_message_id": item.provider_message_id})
                accepted.append(Accepted(message_id="", conversation_id=conversation_id, duplicate=True))
                continue
            if item.type in AMENDMENT_TYPES:
                # An edit or a deletion is kept for the record; it does not start a turn.
                accepted.append(Accepted(message_id=str(stored), conversation_id=conversation_id, duplicate=False))
                continue
            await buffer.push(conversation_id=conversation_id, channel_id=channel.id,
                              provider_message_id=item.provider_message_id, message_id=str(stored))
            log.info("message accepted", extra={"conversation_id": conversation_id, "message_id": str(stored),
                                                "provider_message_id": item.provider_message_id, "type": item.type})
            accepted.append(Accepted(message_id=str(stored), conversation_id=conversation_id, duplicate=False))
    for a in accepted:
        if not a.duplicate:
            await events.publish(channel.workspace_id, events.LiveEvent(
                kind="message", conversation_id=a.conversation_id, data={"message_id": a.message_id}))
    return accepted


async def apply_status(channel: ChannelRecord, *, provider_message_id: str, status: str, timestamp: float,
                       errors: list[dict]) -> bool:
    """Move an outbound message forward (never back: callbacks arrive out of order).

    A callback that arrives before the send recorded its wamid is parked in Redis and
    applied by `replay_parked_statuses` when the wamid is stored.
    """
    if status not in STATUS_RANK:
        log.info("status ignored", extra={"status": status, "provider_message_id": provider_message_id})
        return False
    error = {"errors": errors} if errors else {}
    row = await engine.pool().fetchrow(
        _UPDATE_STATUS, uuid.UUID(channel.id), provider_message_id, status, timestamp,
        _json.encode(error).decode(), _STATUS_ORDER,
    )
    if row is None:
        exists = await engine.pool().fetchval(
            "SELECT 1 FROM messages WHERE channel = $1 AND direction = 'out' AND provider_message_id = $2",
            uuid.UUID(channel.id), provider_message_id,
        )
        if not exists:
            await _park_status(channel.id, provider_message_id, status, timestamp, errors)
        return False
    await events.publish(channel.workspace_id, events.LiveEvent(
        kind="status", conversation_id=str(row["conversation"]),
        data={"message_id": str(row["id"]), "status": status}))
    return True


def _parked_key(channel_id: str, provider_message_id: str) -> str:
    return f"sb:status:{channel_id}:{provider_message_id}"


async def _park_status(channel_id: str, provider_message_id: str, status: str, timestamp: float,
                       errors: list[dict]) -> None:
    from app.services import redis_conn

    key = _parked_key(channel_id, provider_message_id)
    payload = _json.encode({"status": status, "timestamp": timestamp, "errors": errors})
    await redis_conn.client().pipeline(transaction=False).rpush(key, payload).expire(key, 3600).execute()


async def replay_parked_statuses(channel: ChannelRecord, provider_message_id: str) -> None:
    from app.services import redis_conn

    key = _parked_key(channel.id, provider_message_id)
    parked = await redis_conn.client().lrange(key, 0, -1)
    if not parked:
        return
    await redis_conn.client().delete(key)
    for raw in parked:
        item = msgspec.json.decode(raw)
        await apply_status(channel, provider_message_id=provider_message_id, status=item["status"],
                           timestamp=item["timestamp"], errors=item["errors"])
