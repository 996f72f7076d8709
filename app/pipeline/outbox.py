"""Step 8, the outbox: record a reply, send it through the conversation's channel, store the provider id.

Comes from: the turn's effects (app.pipeline.effects, `send_message`), and agents writing
from the conversation page (app.services.conversations).
Goes to: the channel (the WhatsApp Graph API through app.http, or the console); the
provider's delivery callbacks then come back through app.pipeline.statuses.

Each reply of a turn carries a dedupe key derived from the batch it answers, so a batch
that is processed again after a crash does not send a reply that already went out. A reply
is recorded as `sending` (with the attempt's time) before it is posted, and the post carries
the row id as `biz_opaque_callback_data`: a re-run that finds a reply still `sending` does
not know whether the provider took it, so it never sends it blindly again. The provider's
status callback (which echoes that id) settles it as sent; without one within
`SWITCHBOARD_SEND_EVIDENCE_SECONDS`, recovery decides (`settle`): if callbacks for the
channel kept arriving and none named it, WhatsApp never took it and it is sent once more;
otherwise it is marked `unknown` with the reason.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

from app.pipeline.statuses import CallbackTimes
from app.services import events
from app.services.channels import store as channel_store
from app.services.channels.store import ChannelKind, ChannelRecord
from app.services.channels.whatsapp import SendError, SendInDoubt, WhatsAppSender
from app.services.coalesce import Coalescer
from app.services.replies import IN_DOUBT_STATUSES, ReplyStatus
from flows.runtime import Superseded

log = logging.getLogger(__name__)


class SendOutcome(enum.StrEnum):
    """What `Outbox.send` did with one reply."""

    SENT = "sent"
    FAILED = "failed"  # the provider refused it, or could not be reached: not sent
    SKIPPED = "skipped"  # an earlier attempt settled it (sent, delivered, failed...)
    IN_DOUBT = "in_doubt"  # this or an earlier attempt may have reached the provider: not sent (again)
    REFUSED = "refused"  # not recorded (the recording statement's conditions refused it): not sent


class OutboundResult(msgspec.Struct, frozen=True):
    message_id: str
    status: SendOutcome
    provider_message_id: str | None = None
    error: str | None = None


# processed_at is set at once: a reply is never a turn's input, and a NULL there would put it
# in the index scan with which every turn claims its unprocessed inbound messages.
# A new reply is recorded as `sending` at once: its attempt begins as soon as the row exists.
# Each input row comes back with whether it was inserted, or else the row its dedupe key
# already had (neither: the insert's conditions refused it). Replies of concurrent turns are
# recorded in one statement (app.services.coalesce). A turn's reply carries its fencing token
# (epoch): refused unless the turn still holds its conversation (app.pipeline.ledger); an agent's has none.
_RECORD_MANY = """
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[],
                       $8::bigint[])
    AS u(id, workspace, conversation, channel, text, message_type, dedupe_key, epoch)
), inserted AS (
  INSERT INTO messages (id, workspace, conversation, channel, direction, type, text, message_type, status,
                        dedupe_key, created_at, processed_at, status_at)
  SELECT i.id, i.workspace, i.conversation, i.channel, 'out', 'text', i.text, i.message_type, 'sending',
         i.dedupe_key, clock_timestamp(), clock_timestamp(), clock_timestamp()
    FROM input i
   WHERE i.epoch IS NULL OR i.epoch = (SELECT c.lease_epoch FROM conversations c WHERE c.id = i.conversation)
  ON CONFLICT (dedupe_key) DO NOTHING
  RETURNING id
)
SELECT i.id AS requested, ins.id IS NOT NULL AS inserted, m.id, m.status, m.provider_message_id
  FROM input i
  LEFT JOIN inserted ins ON ins.id = i.id
  LEFT JOIN messages m ON ins.id IS NULL AND m.dedupe_key = i.dedupe_key
"""
# A reply recorded before attempts were (`queued`) is taken for one attempt, by one caller.
_CLAIM_QUEUED = (
    "UPDATE messages SET status = 'sending', status_at = clock_timestamp() "
    "WHERE id = $1 AND status = 'queued' RETURNING id"
)
# A status callback may have settled the row first (matched by the row id it echoes): keep it.
_MARK_SENT_MANY = """
UPDATE messages m
   SET status = CASE WHEN m.status = ANY($4::text[]) THEN u.status ELSE m.status END,
       error = CASE WHEN m.status = ANY($4::text[]) THEN '{}'::jsonb ELSE m.error END,
       provider_message_id = u.provider_message_id, status_at = clock_timestamp()
  FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, status, provider_message_id)
 WHERE m.id = u.id
"""
_MARK_FAILED = """
UPDATE messages SET status = 'failed', error = $2::jsonb, status_at = clock_timestamp()
 WHERE id = $1 AND status = ANY($3::text[])
"""
# An attempt whose answer was lost stays `sending`; why is kept for whoever decides it.
_NOTE_DOUBT = "UPDATE messages SET error = error || $2::jsonb WHERE id = $1 AND status = 'sending'"
# Replies in doubt past the evidence window, to decide: send again, or unknown.
_IN_DOUBT = """
SELECT id, channel, extract(epoch FROM status_at)::float8 AS attempted_at, error ? 'resent' AS resent
  FROM messages
 WHERE direction = 'out' AND status = 'sending' AND status_at < clock_timestamp() - make_interval(secs => $1)
 ORDER BY status_at LIMIT $2
"""
# Decided: the replies in doubt named in $4 -> unknown; never attempted -> failed. Both served by
# the partial index messages_unsettled (migration 2026-12-01T20:00:00).
_SETTLE = """
WITH doubt AS (
  UPDATE messages SET status = 'unknown', status_at = clock_timestamp(),
         error = error || jsonb_build_object('reason', $2::text, 'attempted_at', status_at)
   WHERE id = ANY($4::uuid[]) AND status = 'sending'
  RETURNING id, workspace, conversation, status
), never AS (
  UPDATE messages SET status = 'failed', status_at = clock_timestamp(),
         error = error || jsonb_build_object('reason', $3::text)
   WHERE direction = 'out' AND status = 'queued'
     AND coalesce(status_at, created_at) < clock_timestamp() - make_interval(secs => $1)
  RETURNING id, workspace, conversation, status
)
SELECT * FROM doubt UNION ALL SELECT * FROM never
"""
# One recovery pass takes a reply for its second (and last) attempt: `resent` is set only once.
_CLAIM_RESEND = """
UPDATE messages m SET status_at = clock_timestamp(), error = m.error || '{"resent": true}'::jsonb
  FROM conversations c JOIN contacts p ON p.id = c.contact
 WHERE m.id = $1 AND m.status = 'sending' AND NOT m.error ? 'resent' AND c.id = m.conversation
RETURNING m.workspace, m.conversation, m.channel, m.text, p.phone
"""
_SETTLE_BATCH = 200

_SETTLED_FROM = [ReplyStatus.QUEUED.value, ReplyStatus.SENDING.value, ReplyStatus.UNKNOWN.value]
# A mark that fails after the provider took the message turns a known send into a doubt:
# it is tried again across a short database outage first.
_MARK_RETRY_DELAYS_S = (0.1, 0.3, 1.0, 3.0, 5.0)
_DB_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # the server is shutting down or starting
    OSError,
)


def unknown_reason(evidence_s: float) -> str:
    return (
        "In doubt: sending began but its result was never recorded (the worker stopped, or the answer "
        f"from WhatsApp was lost), and no delivery callback for it came within {evidence_s:g} s. It was not "
        "sent again, to avoid a duplicate: the customer may or may not have received it."
    )


NEVER_SENT_REASON = (
    "Never sent: the turn that recorded this reply stopped before sending it, and it was not sent later."
)


SentHook = Callable[[ChannelRecord, str], Awaitable[None]]
"""Called with the channel and the provider's message id once a send recorded it."""
CallbacksSeen = Callable[[list[str]], Awaitable[list[CallbackTimes]]]
"""When the provider's status callbacks last reached us for each channel id (epoch s), if lately."""


class Outbox:
    """Sends replies; one per process.

    Replies of concurrent turns are recorded in one statement and marked sent in another
    (group commit, app.services.coalesce): `_record` and `_mark_sent` below are what a
    reader follows; the batching is in `__init__`.
    """

    def __init__(
        self,
        db: asyncpg.Pool,
        whatsapp: WhatsAppSender,
        publisher: events.LiveEvents,
        *,
        on_sent: SentHook,
        callbacks_seen: CallbacksSeen | None = None,
        evidence_s: float = 60.0,
    ) -> None:
        self.db = db
        self.whatsapp = whatsapp
        self.publisher = publisher
        self.on_sent = on_sent  # statuses that arrived before the provider id was stored
        self.callbacks_seen = callbacks_seen  # without it, a reply in doubt is never sent again
        self.evidence_s = evidence_s  # how long a send in doubt waits for the provider's callback
        self._records: Coalescer[tuple, Any] = Coalescer(self._record_many, name="outbound-record")
        self._marks: Coalescer[tuple, None] = Coalescer(self._mark_sent_many, name="outbound-sent")

    async def _record(self, row: tuple) -> Any:
        """Insert a reply as `sending`; its result row says whether it was inserted, or what was there."""
        return await self._records.submit(row)

    async def _mark_sent(self, message_id: uuid.UUID, status: str, provider_message_id: str | None) -> None:
        await self._marks.submit((message_id, status, provider_message_id))

    async def _record_many(self, rows: list[tuple]) -> list[Any]:
        found = {r["requested"]: r for r in await self.db.fetch(_RECORD_MANY, *map(list, zip(*rows)))}
        return [found[row[0]] for row in rows]

    async def _mark_sent_many(self, rows: list[tuple]) -> list[None]:
        await self.db.execute(_MARK_SENT_MANY, *map(list, zip(*rows)), _SETTLED_FROM)
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

        A reply recorded before under the same dedupe key is not sent again unless no attempt
        was ever made (`queued`); one that may have reached the provider is left to the
        evidence (`settle`). With `epoch` (a turn's fencing token), raises `Superseded` and
        sends nothing once another turn holds the conversation.
        """
        record = await self._record(
            (
                uuid.uuid4(),
                channel.workspace_id,
                conversation_id,
                channel.id,
                text,
                message_type,
                dedupe_key,
                epoch,
            )
        )
        message_id = record["requested"]
        if not record["inserted"] and record["id"] is None and epoch is not None:
            raise Superseded(
                f"reply refused: conversation {conversation_id} has a newer turn than epoch {epoch}"
            )
        if not record["inserted"]:
            earlier = await self._earlier_attempt(record, conversation_id=conversation_id)
            if earlier is not None:
                return earlier
            message_id = record["id"]  # recorded before attempts were, and never attempted: send now
        result = await self._dispatch(channel, message_id=message_id, to=to, text=text)
        await self.publisher.publish_or_hold(
            channel.workspace_id,
            events.LiveEvent(
                kind="message",
                conversation_id=conversation_id,
                data={"message_id": str(message_id), "direction": "out", "status": result.status.value},
            ),
            live,
        )
        return result

    async def _earlier_attempt(self, record: Any, *, conversation_id: str) -> OutboundResult | None:
        """What to answer for a dedupe key recorded before; None when it is ours to send now."""
        if record["id"] is None:
            log.warning("reply not recorded, so not sent", extra={"conversation_id": conversation_id})
            return OutboundResult(
                message_id=str(record["requested"]), status=SendOutcome.REFUSED, error="not recorded"
            )
        status = record["status"]
        if status == ReplyStatus.QUEUED:
            if await self.db.fetchval(_CLAIM_QUEUED, record["id"]):
                return None
            status = ReplyStatus.SENDING  # another caller took it first: its attempt is under way
        if status in IN_DOUBT_STATUSES:
            log.warning(
                "reply in doubt is not sent again",
                extra={"conversation_id": conversation_id, "message_id": str(record["id"]), "status": status},
            )
            return OutboundResult(
                message_id=str(record["id"]),
                status=SendOutcome.IN_DOUBT,
                error="an earlier attempt may have reached the provider; waiting for its callback",
            )
        return OutboundResult(
            message_id=str(record["id"]),
            status=SendOutcome.SKIPPED,
            provider_message_id=record["provider_message_id"],
        )

    async def _dispatch(
        self, channel: ChannelRecord, *, message_id: uuid.UUID, to: str, text: str
    ) -> OutboundResult:
        if channel.kind is ChannelKind.WHATSAPP:
            extra = {"message_id": str(message_id), "channel_id": channel.id}
            try:
                wamid = await self.whatsapp.send_text(
                    channel, to=to, text=text, callback_data=str(message_id)
                )
            except SendInDoubt as exc:
                await self.db.execute(_NOTE_DOUBT, message_id, {"message": str(exc)})
                log.warning("reply in doubt: no answer from the provider", extra={**extra, "error": str(exc)})
                return OutboundResult(message_id=str(message_id), status=SendOutcome.IN_DOUBT, error=str(exc))
            except SendError as exc:
                error = {
                    "message": str(exc),
                    "status_code": exc.status_code,
                    "body": exc.body,
                    "reason": str(exc),
                }
                await self.db.execute(_MARK_FAILED, message_id, error, _SETTLED_FROM)
                log.warning("reply not sent", extra={**extra, "error": str(exc)})
                return OutboundResult(message_id=str(message_id), status=SendOutcome.FAILED, error=str(exc))
            await self._mark_sent_surely(message_id, ReplyStatus.SENT, wamid, extra=extra)
            await self.on_sent(channel, wamid)
            return OutboundResult(
                message_id=str(message_id), status=SendOutcome.SENT, provider_message_id=wamid
            )
        if channel.kind is ChannelKind.CONSOLE:
            sys.stdout.write(f"[console {channel.name}] -> {to}: {text}\n")
            sys.stdout.flush()
        # Generic and console channels have no delivery receipts: stored is delivered.
        await self._mark_sent(message_id, ReplyStatus.DELIVERED, None)
        return OutboundResult(message_id=str(message_id), status=SendOutcome.SENT)

    async def _mark_sent_surely(
        self, message_id: uuid.UUID, status: ReplyStatus, wamid: str, *, extra: dict[str, str]
    ) -> None:
        """Mark a send the provider accepted, across a short database outage."""
        for delay_s in (*_MARK_RETRY_DELAYS_S, None):
            try:
                await self._mark_sent(message_id, status, wamid)
                return
            except _DB_UNAVAILABLE as exc:
                # The wamid is in this log line: it is what the provider's callbacks will name.
                log.warning(
                    "sent, but marking it failed",
                    extra={**extra, "provider_message_id": wamid, "error": repr(exc)},
                )
                if delay_s is None:
                    raise
                await asyncio.sleep(delay_s)

    async def settle(self) -> int:
        """Give every reply left without an outcome past the evidence window one; returns how many.

        A reply in doubt whose channel's callbacks kept reaching us after its attempt began, none
        naming it, never reached WhatsApp: it is sent again, once, with the same row id. Any
        other reply in doubt becomes `unknown` with the reason (never sent again; a callback
        that comes later still moves it to sent). A reply never attempted becomes `failed`.
        """
        doubtful = await self.db.fetch(_IN_DOUBT, self.evidence_s, _SETTLE_BATCH)
        never_arrived = await self._never_arrived(doubtful)
        unknown = [row["id"] for row in doubtful if row["id"] not in never_arrived]
        rows = await self.db.fetch(
            _SETTLE, self.evidence_s, unknown_reason(self.evidence_s), NEVER_SENT_REASON, unknown
        )
        for row in rows:
            log.warning(
                "reply settled without an outcome",
                extra={
                    "message_id": str(row["id"]),
                    "conversation_id": str(row["conversation"]),
                    "status": row["status"],
                },
            )
            await self._publish_status(
                str(row["workspace"]), str(row["conversation"]), row["id"], row["status"]
            )
        await asyncio.gather(*(self._send_again(message_id) for message_id in never_arrived))
        return len(rows) + len(never_arrived)

    async def _never_arrived(self, doubtful: list[Any]) -> set[uuid.UUID]:
        """The replies in doubt that WhatsApp never took: callbacks for their channel came after, none for them."""
        candidates = [row for row in doubtful if not row["resent"]]
        if not candidates or self.callbacks_seen is None:
            return set()
        channels = sorted({str(row["channel"]) for row in candidates})
        seen = dict(zip(channels, await self.callbacks_seen(channels)))
        # Half the window after the attempt: by then the reply's own callback would have come first.
        # A callback that failed since the attempt (the database was away) may be this reply's own,
        # still to come again from the provider: then nothing is proven.
        margin_s = self.evidence_s / 2
        proven = set()
        for row in candidates:
            times = seen.get(str(row["channel"]))
            if times is None or times.applied is None or times.applied <= row["attempted_at"] + margin_s:
                continue
            if times.failed is not None and times.failed >= row["attempted_at"]:
                continue
            proven.add(row["id"])
        return proven

    async def _send_again(self, message_id: uuid.UUID) -> None:
        row = await self.db.fetchrow(_CLAIM_RESEND, message_id)
        if row is None:  # another pass took it, or its callback settled it meanwhile
            return
        channel = await channel_store.lookup(str(row["channel"]))
        extra = {"message_id": str(message_id), "conversation_id": str(row["conversation"])}
        if channel is None:
            log.warning("reply in doubt not sent again: its channel is gone", extra=extra)
            return  # still sending, resent: the next pass marks it unknown
        log.warning("reply never reached WhatsApp; sending it again", extra=extra)
        result = await self._dispatch(channel, message_id=message_id, to=row["phone"], text=row["text"])
        await self._publish_status(channel.workspace_id, str(row["conversation"]), message_id, result.status)

    async def _publish_status(
        self, workspace_id: str, conversation_id: str, message_id: Any, status: str
    ) -> None:
        await self.publisher.publish(
            workspace_id,
            events.LiveEvent(
                kind="status",
                conversation_id=conversation_id,
                data={"message_id": str(message_id), "status": str(status)},
            ),
        )
