"""Step 8, the outbox: record a reply, send it through the conversation's channel, store the provider id.

Comes from: the turn's effects (app.pipeline.effects, `send_message`), and agents writing
from the conversation page (app.services.conversations).
Goes to: the channel (the WhatsApp Graph API through app.http, or the console); the
provider's delivery callbacks then come back through app.pipeline.statuses.

Each reply of a turn carries a dedupe key derived from the batch it answers, so a batch
that is processed again after a crash does not send a reply that already went out.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from app.services import events
from app.services.channels.store import ChannelKind, ChannelRecord
from app.services.channels.whatsapp import SendError, WhatsAppSender
from app.services.coalesce import Coalescer
from flows.runtime import Superseded

log = logging.getLogger(__name__)


class OutboundResult(msgspec.Struct, frozen=True):
    message_id: str
    status: str  # sent | failed | skipped (already sent by an earlier attempt)
    provider_message_id: str | None = None
    error: str | None = None


# processed_at is set at once: a reply is never a turn's input, and a NULL there would put it
# in the index scan with which every turn claims its unprocessed inbound messages.
# Replies of concurrent turns are recorded in one statement (app.services.coalesce).
# A turn's reply carries its fencing token (epoch): refused unless the turn still holds its conversation
# (app.pipeline.ledger); an agent's reply has none.
_INSERT_MANY = """
INSERT INTO messages (id, workspace, conversation, channel, direction, type, text, message_type, status,
                      dedupe_key, created_at, processed_at)
SELECT u.id, u.workspace, u.conversation, u.channel, 'out', 'text', u.text, u.message_type, 'queued', u.dedupe_key,
       clock_timestamp(), clock_timestamp()
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::bigint[])
       AS u(id, workspace, conversation, channel, text, message_type, dedupe_key, epoch)
 WHERE u.epoch IS NULL OR u.epoch = (SELECT c.lease_epoch FROM conversations c WHERE c.id = u.conversation)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id
"""
_EXISTING = "SELECT id, status, provider_message_id FROM messages WHERE dedupe_key = $1"
_MARK_SENT_MANY = """
UPDATE messages m SET status = CASE WHEN m.status = 'queued' THEN u.status ELSE m.status END,
                      provider_message_id = u.provider_message_id, status_at = clock_timestamp()
  FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, status, provider_message_id)
 WHERE m.id = u.id
"""
_MARK_FAILED = (
    "UPDATE messages SET status = 'failed', error = $2::jsonb, status_at = clock_timestamp() WHERE id = $1"
)


SentHook = Callable[[ChannelRecord, str], Awaitable[None]]
"""Called with the channel and the provider's message id once a send recorded it."""


class Outbox:
    """Sends replies; one per process.

    Replies of concurrent turns are recorded in one statement and marked sent in another
    (group commit, app.services.coalesce): `_record` and `_mark_sent` below are what a
    reader follows; the batching is in `__init__`.
    """

    def __init__(
        self, db: asyncpg.Pool, whatsapp: WhatsAppSender, publisher: events.LiveEvents, *, on_sent: SentHook
    ) -> None:
        self.db = db
        self.whatsapp = whatsapp
        self.publisher = publisher
        self.on_sent = on_sent  # statuses that arrived before the provider id was stored
        self._records: Coalescer[tuple, bool] = Coalescer(self._record_many, name="outbound-record")
        self._marks: Coalescer[tuple, None] = Coalescer(self._mark_sent_many, name="outbound-sent")

    async def _record(self, row: tuple) -> bool:
        """Insert a queued reply; False when its dedupe key was recorded before."""
        return await self._records.submit(row)

    async def _mark_sent(self, message_id: uuid.UUID, status: str, provider_message_id: str | None) -> None:
        await self._marks.submit((message_id, status, provider_message_id))

    async def _record_many(self, rows: list[tuple]) -> list[bool]:
        inserted = {r["id"] for r in await self.db.fetch(_INSERT_MANY, *map(list, zip(*rows)))}
        return [row[0] in inserted for row in rows]

    async def _mark_sent_many(self, rows: list[tuple]) -> list[None]:
        await self.db.execute(_MARK_SENT_MANY, *map(list, zip(*rows)))
        return [None] * len(rows)

    async def aclose(self) -> None:
        await self._records.aclose()
        await self._marks.aclose()

    async def send(
        self,
        channel: ChannelRecord,
        *,
        conversation_id: str,
        to: str,
        text: str,
        message_type: str,
        dedupe_key: str | None,
        live: events.LiveBatch | None = None,
        epoch: int | None = None,
    ) -> OutboundResult:
        """Record, send and mark one reply; its live event is held in `live` when given.

        With `epoch` (a turn's fencing token), raises `Superseded` and sends nothing once another
        turn holds the conversation.
        """
        message_id = uuid.uuid4()
        inserted = await self._record(
            (
                message_id,
                channel.workspace_id,
                conversation_id,
                channel.id,
                text,
                message_type,
                dedupe_key,
                epoch,
            )
        )
        if not inserted:
            row = await self.db.fetchrow(_EXISTING, dedupe_key)
            if row is None:
                raise Superseded(
                    f"reply refused: conversation {conversation_id} has a newer turn than epoch {epoch}"
                )
            if row["status"] != "queued":
                return OutboundResult(
                    message_id=str(row["id"]),
                    status="skipped",
                    provider_message_id=row["provider_message_id"],
                )
            message_id = row["id"]  # a crash came between recording and sending: send now
        result = await self._dispatch(channel, message_id=message_id, to=to, text=text)
        await self.publisher.publish_or_hold(
            channel.workspace_id,
            events.LiveEvent(
                kind="message",
                conversation_id=conversation_id,
                data={"message_id": str(message_id), "direction": "out", "status": result.status},
            ),
            live,
        )
        return result

    async def _dispatch(
        self, channel: ChannelRecord, *, message_id: uuid.UUID, to: str, text: str
    ) -> OutboundResult:
        if channel.kind is ChannelKind.WHATSAPP:
            try:
                wamid = await self.whatsapp.send_text(channel, to=to, text=text)
            except SendError as exc:
                error = {"message": str(exc), "status_code": exc.status_code, "body": exc.body}
                await self.db.execute(_MARK_FAILED, message_id, error)
                log.warning("reply not sent", extra={"message_id": str(message_id), "error": str(exc)})
                return OutboundResult(message_id=str(message_id), status="failed", error=str(exc))
            await self._mark_sent(message_id, "sent", wamid)
            await self.on_sent(channel, wamid)
            return OutboundResult(message_id=str(message_id), status="sent", provider_message_id=wamid)
        if channel.kind is ChannelKind.CONSOLE:
            sys.stdout.write(f"[console {channel.name}] -> {to}: {text}\n")
            sys.stdout.flush()
        # Generic and console channels have no delivery receipts: stored is delivered.
        await self._mark_sent(message_id, "delivered", None)
        return OutboundResult(message_id=str(message_id), status="sent")
