"""Outbound messages: record, send through the conversation's channel, store the provider id.

Each reply of a turn carries a dedupe key derived from the batch it answers, so a batch
that is processed again after a crash does not send a reply that already went out.
"""

from __future__ import annotations

import logging
import sys
import uuid

import msgspec

from app.db import engine
from app.services import events, ingress
from app.services.channels.store import ChannelKind, ChannelRecord
from app.services.channels.whatsapp import SendError, WhatsAppSender

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()


class OutboundResult(msgspec.Struct, frozen=True):
    message_id: str
    status: str  # sent | failed | skipped (already sent by an earlier attempt)
    provider_message_id: str | None = None
    error: str | None = None


# processed_at is set at once: a reply is never a turn's input, and a NULL there would put it
# in the index scan with which every turn claims its unprocessed inbound messages.
_INSERT = """
INSERT INTO messages (id, workspace, conversation, channel, direction, type, text, message_type, status,
                      dedupe_key, created_at, processed_at)
VALUES ($1, $2, $3, $4, 'out', 'text', $5, $6, 'queued', $7, clock_timestamp(), clock_timestamp())
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id
"""
_EXISTING = "SELECT id, status, provider_message_id FROM messages WHERE dedupe_key = $1"
_MARK_SENT = """
UPDATE messages SET status = CASE WHEN status = 'queued' THEN $2 ELSE status END,
                    provider_message_id = $3, status_at = clock_timestamp()
 WHERE id = $1
"""
_MARK_FAILED = "UPDATE messages SET status = 'failed', error = $2::jsonb, status_at = clock_timestamp() WHERE id = $1"


class Outbox:
    """Sends replies; one per process, owning the WhatsApp HTTP client."""

    def __init__(self, whatsapp: WhatsAppSender) -> None:
        self.whatsapp = whatsapp

    async def send(self, channel: ChannelRecord, *, conversation_id: str, to: str, text: str,
                   message_type: str, dedupe_key: str | None,
                   live: events.LiveBatch | None = None) -> OutboundResult:
        """Record, send and mark one reply; its live event is held in `live` when given."""
        pool = engine.pool()
        message_id = uuid.uuid4()
        inserted = await pool.fetchval(_INSERT, message_id, channel.workspace_id, conversation_id, channel.id,
                                       text, message_type, dedupe_key)
        if inserted is None:
            row = await pool.fetchrow(_EXISTING, dedupe_key)
            if row["status"] != "queued":
                return OutboundResult(message_id=str(row["id"]), status="skipped",
                                      provider_message_id=row["provider_message_id"])
            message_id = row["id"]  # a crash came between recording and sending: send now
        result = await self._dispatch(channel, message_id=message_id, to=to, text=text)
        await events.publish_or_hold(channel.workspace_id, events.LiveEvent(
            kind="message", conversation_id=conversation_id,
            data={"message_id": str(message_id), "direction": "out", "status": result.status}), live)
        return result

    async def _dispatch(self, channel: ChannelRecord, *, message_id: uuid.UUID, to: str, text: str) -> OutboundResult:
        pool = engine.pool()
        if channel.kind is ChannelKind.WHATSAPP:
            try:
                wamid = await self.whatsapp.send_text(channel, to=to, text=text)
            except SendError as exc:
                error = {"message": str(exc), "status_code": exc.status_code, "body": exc.body}
                await pool.execute(_MARK_FAILED, message_id, _json.encode(error).decode())
                log.warning("reply not sent", extra={"message_id": str(message_id), "error": str(exc)})
                return OutboundResult(message_id=str(message_id), status="failed", error=str(exc))
            await pool.execute(_MARK_SENT, message_id, "sent", wamid)
            await ingress.replay_parked_statuses(channel, wamid)
            return OutboundResult(message_id=str(message_id), status="sent", provider_message_id=wamid)
        if channel.kind is ChannelKind.CONSOLE:
            sys.stdout.write(f"[console {channel.name}] -> {to}: {text}\n")
            sys.stdout.flush()
        # Generic and console channels have no delivery receipts: stored is delivered.
        await pool.execute(_MARK_SENT, message_id, "delivered", None)
        return OutboundResult(message_id=str(message_id), status="sent")
