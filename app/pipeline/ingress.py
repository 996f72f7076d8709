"""Step 1, ingress: store inbound messages once and signal the conversation's buffer.

Comes from: the inbound controller (app.api.inbound), with a channel's parsed items.
Goes to: the buffer (app.pipeline.buffer), one `push_many` per committed batch.

Nothing here calls an AI or the network beyond PostgreSQL and Redis, so a webhook is
answered in milliseconds. The database's unique (channel, direction, provider id) is
what makes a duplicate delivery harmless; the buffer's `SET NX` keeps it from being
signalled twice. Concurrent webhook requests share one transaction (group commit,
app.services.coalesce): `Ingress.accept` is all a caller sees.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import OrderedDict

import asyncpg
import msgspec

from app.pipeline.buffer import Buffer, Push
from app.services import events
from app.services.channels.items import AMENDMENT_TYPES, InboundItem, InvalidItem, split_name
from app.services.channels.store import ChannelRecord
from app.services.coalesce import Coalescer

log = logging.getLogger(__name__)

CONVERSATION_CACHE_SIZE = 50_000
_json = msgspec.json.Encoder()


class Accepted(msgspec.Struct, frozen=True):
    message_id: str
    conversation_id: str
    duplicate: bool


# First contacts of a batch, created together. Rows go in (workspace, phone) and (channel,
# contact) order, so concurrent batches that share senders wait for each other instead of
# deadlocking; a sender another batch created meanwhile is read back.
_INSERT_CONTACTS = """
INSERT INTO contacts (id, workspace, phone, first_name, last_name, tags, attributes, created_at)
SELECT gen_random_uuid(), u.workspace, u.phone, u.first_name, u.last_name, '[]'::jsonb, '{}'::jsonb, now()
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(workspace, phone, first_name, last_name)
 ORDER BY u.workspace, u.phone
ON CONFLICT (workspace, phone) DO NOTHING
RETURNING id, workspace, phone
"""
_SELECT_CONTACTS = """
SELECT c.id, c.workspace, c.phone FROM contacts c
  JOIN unnest($1::uuid[], $2::text[]) AS u(workspace, phone) ON c.workspace = u.workspace AND c.phone = u.phone
"""
_INSERT_CONVERSATIONS = """
INSERT INTO conversations (id, workspace, channel, contact, status, tags, created_at, last_message_at)
SELECT gen_random_uuid(), u.workspace, u.channel, u.contact, 'open', '[]'::jsonb, now(), now()
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS u(workspace, channel, contact)
 ORDER BY u.channel, u.contact
ON CONFLICT (channel, contact) DO NOTHING
RETURNING id, channel, contact
"""
_SELECT_CONVERSATIONS = """
SELECT c.id, c.channel, c.contact FROM conversations c
  JOIN unnest($1::uuid[], $2::uuid[]) AS u(channel, contact) ON c.channel = u.channel AND c.contact = u.contact
"""


class _Resolved(msgspec.Struct):
    conversation_id: str
    contact_id: str
    raised: list[str]  # events of the first contact, for the first message of this sender


async def _resolve_new_senders(
    conn, senders: dict[tuple[str, str], tuple[ChannelRecord, InboundItem]]
) -> dict[tuple[str, str], _Resolved]:
    """Contacts and conversations for senders the cache does not know, created where missing.

    `senders` maps (channel id, phone) to the channel and the sender's first item in the batch.
    """
    contacts: dict[tuple[str, str], tuple[str, list[str]]] = {}  # (workspace, phone) -> (id, raised)
    wanted = {(channel.workspace_id, item.from_phone): item for channel, item in senders.values()}
    names = [_names(item) for item in wanted.values()]
    created = await conn.fetch(
        _INSERT_CONTACTS,
        [w for w, _ in wanted],
        [p for _, p in wanted],
        [n[0] for n in names],
        [n[1] for n in names],
    )
    for row in created:
        contacts[(str(row["workspace"]), row["phone"])] = (str(row["id"]), ["contact_created"])
    missing = [key for key in wanted if key not in contacts]
    if missing:
        for row in await conn.fetch(_SELECT_CONTACTS, [w for w, _ in missing], [p for _, p in missing]):
            contacts[(str(row["workspace"]), row["phone"])] = (str(row["id"]), [])

    pairs = {
        key: (channel, contacts[(channel.workspace_id, item.from_phone)])
        for key, (channel, item) in senders.items()
    }
    conversations: dict[tuple[str, str], tuple[str, bool]] = {}  # (channel, contact) -> (id, created)
    created = await conn.fetch(
        _INSERT_CONVERSATIONS,
        [c.workspace_id for c, _ in pairs.values()],
        [c.id for c, _ in pairs.values()],
        [contact[0] for _, contact in pairs.values()],
    )
    for row in created:
        conversations[(str(row["channel"]), str(row["contact"]))] = (str(row["id"]), True)
    missing = [(c.id, contact[0]) for c, contact in pairs.values() if (c.id, contact[0]) not in conversations]
    if missing:
        for row in await conn.fetch(_SELECT_CONVERSATIONS, [c for c, _ in missing], [p for _, p in missing]):
            conversations[(str(row["channel"]), str(row["contact"]))] = (str(row["id"]), False)

    resolved = {}
    for key, (channel, (contact_id, contact_raised)) in pairs.items():
        conversation_id, created_now = conversations[(channel.id, contact_id)]
        raised = [*contact_raised, *(["conversation_created"] if created_now else [])]
        resolved[key] = _Resolved(conversation_id=conversation_id, contact_id=contact_id, raised=raised)
    return resolved


def _names(item: InboundItem) -> tuple[str | None, str | None]:
    first, last = item.contact_first_name, item.contact_last_name
    if not first and item.contact_name:
        first, last = split_name(item.contact_name)
    return first, last


def _no_nul(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL, which JSON allows ("\u0000"): drop it.
    return text.replace("\x00", "")


def _jsonb_text(value: object) -> str:
    """JSON for a jsonb column, NUL characters dropped from every string (keys included).

    Dropped before encoding: removing the escape from the encoded text also cut a message whose
    text holds a backslash followed by "u0000" into invalid JSON, and its delivery failed forever.
    """
    return _json.encode(_without_nul(value)).decode()


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {_no_nul(str(k)): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


_INSERT_MESSAGES = """
INSERT INTO messages (id, workspace, conversation, channel, direction, seq, provider_message_id, type, text,
                      media_id, payload, events, status, created_at)
SELECT u.id, u.workspace, u.conversation, u.channel, 'in', u.seq, u.provider_message_id, u.type, u.text, u.media_id,
       u.payload, u.events, 'received', clock_timestamp()
  FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::jsonb[], $11::jsonb[])
       AS u(id, workspace, conversation, channel, seq, provider_message_id, type, text, media_id, payload, events)
ON CONFLICT (channel, direction, provider_message_id) DO NOTHING
RETURNING id
"""


_INSERT_INVALID = """
INSERT INTO invalid_messages (id, workspace, channel, provider_message_id, sender, status, reason, payload, created_at)
SELECT gen_random_uuid(), $1, $2, u.provider_message_id, u.sender, 'invalid', u.reason, u.payload, now()
  FROM unnest($3::text[], $4::text[], $5::text[], $6::jsonb[]) AS u(provider_message_id, sender, reason, payload)
"""
MAX_INVALID_PAYLOAD_CHARS = 64 * 1024


def _invalid_payload(item: InvalidItem) -> str:
    """The message as received for the record, NUL characters dropped, cut when it is very large."""
    encoded = _jsonb_text(item.raw)
    if len(encoded) <= MAX_INVALID_PAYLOAD_CHARS:
        return encoded
    return _json.encode(
        {"cut_to_chars": MAX_INVALID_PAYLOAD_CHARS, "start": encoded[:MAX_INVALID_PAYLOAD_CHARS]}
    ).decode()


class IngressError(Exception):
    """Inbound messages could not be stored; the webhook answers 5xx so the provider redelivers."""


class _Request(msgspec.Struct):
    channel: ChannelRecord
    items: list[InboundItem]


class Ingress:
    """Stores what concurrent webhook requests bring in shared transactions (group commit).

    Each request still gets its answer only after its rows are committed, so a 200 always
    means "stored"; many requests share one commit instead of paying one each. A batch that
    fails is written again request by request (app.services.coalesce), so one bad request
    fails alone.
    """

    def __init__(self, db: asyncpg.Pool, buffer: Buffer, *, writers: int = 4, max_batch: int = 256) -> None:
        self.db = db
        self.buffer = buffer
        # (channel id, phone) -> (contact id, conversation id) of senders seen before, LRU.
        self._conversations: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        # The group commit: `accept` submits one request; `_store_batch` writes many at once.
        self._batches: Coalescer[_Request, list[Accepted]] = Coalescer(
            self._store_batch, name="ingress", lanes=writers, max_batch=max_batch
        )

    async def accept(self, channel: ChannelRecord, items: list[InboundItem]) -> list[Accepted]:
        """Store the items (once each) and signal their conversations; an `Accepted` per item."""
        try:
            return await self._batches.submit(_Request(channel=channel, items=items))
        except Exception as exc:  # the request answers 5xx, so the provider redelivers later
            log.exception("storing inbound messages failed", extra={"count": len(items)})
            raise IngressError("storing the message failed; the sender will redeliver") from exc

    async def record_invalid(self, channel: ChannelRecord, items: list[InvalidItem]) -> None:
        """Keep messages that cannot be stored as `invalid`, with their reason: the provider gets its
        200 and stops retrying, and the rest of the delivery is stored as usual."""
        for item in items:
            log.warning(
                "inbound message invalid; recorded, not processed",
                extra={
                    "channel_id": channel.id,
                    "provider_message_id": item.provider_message_id,
                    "reason": item.reason,
                },
            )
        try:
            await self.db.execute(
                _INSERT_INVALID,
                uuid.UUID(channel.workspace_id),
                uuid.UUID(channel.id),
                [item.provider_message_id for item in items],
                [item.from_phone for item in items],
                [item.reason.replace("\x00", "") for item in items],
                [_invalid_payload(item) for item in items],
            )
        except Exception as exc:  # the provider retries (5xx) and the record is written then
            log.exception("recording invalid inbound messages failed", extra={"count": len(items)})
            raise IngressError("recording an invalid message failed; the sender will redeliver") from exc

    async def aclose(self) -> None:
        await self._batches.aclose()

    def _remember(self, key: tuple[str, str], value: tuple[str, str]) -> None:
        self._conversations[key] = value
        if len(self._conversations) > CONVERSATION_CACHE_SIZE:
            self._conversations.popitem(last=False)

    async def _store_batch(self, batch: list[_Request]) -> list[list[Accepted]]:
        try:
            return await self._write(batch)
        except asyncpg.ForeignKeyViolationError:
            # A conversation in the cache was deleted (its channel went away): forget and retry.
            for request in batch:
                for item in request.items:
                    self._conversations.pop((request.channel.id, item.from_phone), None)
            return await self._write(batch)

    async def _write(self, batch: list[_Request]) -> list[list[Accepted]]:
        rows: list[
            tuple[int, int, InboundItem, str, str, list[str]]
        ] = []  # (request, index, item, conv, id, events)
        new_mappings: list[tuple[tuple[str, str], tuple[str, str]]] = []
        async with self.db.acquire() as conn:
            # When every sender's conversation is cached, the batch is a single INSERT, atomic and
            # committed on its own: BEGIN and COMMIT would only add two round trips. (Checked after
            # the acquire: nothing awaits between here and that INSERT, so the cache cannot change.)
            known = all(
                (request.channel.id, item.from_phone) in self._conversations
                for request in batch
                for item in request.items
            )
            async with contextlib.nullcontext() if known else conn.transaction():
                senders: dict[tuple[str, str], tuple[ChannelRecord, InboundItem]] = {}
                cached: dict[tuple[str, str], str] = {}  # read now: the cache may evict while we wait below
                for request in batch:
                    for item in request.items:
                        key = (request.channel.id, item.from_phone)
                        hit = self._conversations.get(key)
                        if hit is None:
                            senders.setdefault(key, (request.channel, item))
                        else:
                            self._conversations.move_to_end(key)
                            cached[key] = hit[1]
                resolved = await _resolve_new_senders(conn, senders) if senders else {}
                for key, fresh in resolved.items():
                    new_mappings.append((key, (fresh.contact_id, fresh.conversation_id)))
                for r, request in enumerate(batch):
                    for i, item in enumerate(request.items):
                        key = (request.channel.id, item.from_phone)
                        new = resolved.get(key)
                        if new is not None:
                            conversation_id, raised = new.conversation_id, new.raised
                            new.raised = []  # a sender's first message raises its events, not the next ones
                        else:
                            conversation_id, raised = cached[key], []
                        rows.append((r, i, item, conversation_id, str(uuid.uuid4()), raised))
                columns: list[list] = [[] for _ in range(11)]
                for r, _, item, conversation_id, message_id, raised in rows:
                    channel = batch[r].channel
                    values = (
                        message_id,
                        channel.workspace_id,
                        conversation_id,
                        channel.id,
                        int(item.timestamp * 1000),
                        item.provider_message_id,
                        item.type,
                        _no_nul(item.text),
                        item.media_id,
                        _jsonb_text(item.raw),
                        _json.encode(raised).decode(),
                    )
                    for column, value in zip(columns, values):
                        column.append(value)
                inserted = (
                    {str(r[0]) for r in await conn.fetch(_INSERT_MESSAGES, *columns)} if rows else set()
                )
        # Cache new conversations only once their rows are committed.
        for key, mapping in new_mappings:
            self._remember(key, mapping)
        results: list[list[Accepted]] = [[] for _ in batch]
        pushes: list[Push] = []
        accepted_log: list[dict[str, str]] = []
        for r, _, item, conversation_id, message_id, _raised in rows:
            channel = batch[r].channel
            stored = message_id in inserted
            results[r].append(
                Accepted(
                    message_id=message_id if stored else "",
                    conversation_id=conversation_id,
                    duplicate=not stored,
                )
            )
            if not stored:
                log.info(
                    "duplicate delivery dropped",
                    extra={
                        "conversation_id": conversation_id,
                        "provider_message_id": item.provider_message_id,
                    },
                )
                continue
            accepted_log.append(
                {
                    "conversation_id": conversation_id,
                    "message_id": message_id,
                    "provider_message_id": item.provider_message_id,
                    "type": item.type,
                }
            )
            live = events.wire(
                channel.workspace_id,
                events.LiveEvent(
                    kind="message", conversation_id=conversation_id, data={"message_id": message_id}
                ),
            )
            # An edit or a deletion is kept for the record; it does not start a turn.
            pushes.append(
                Push(
                    conversation_id=conversation_id,
                    channel_id=channel.id,
                    provider_message_id=item.provider_message_id,
                    message_id=message_id,
                    live=live,
                    signal=item.type not in AMENDMENT_TYPES,
                )
            )
        await self.buffer.push_many(pushes)
        if accepted_log:
            # One line per committed batch (with every id): a line per message costs more than the insert.
            log.info("messages accepted", extra={"count": len(accepted_log), "messages": accepted_log})
        return results
