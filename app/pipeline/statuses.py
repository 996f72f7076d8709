"""Delivery statuses: the provider's sent/delivered/read/failed callbacks move our replies forward.

Comes from: the inbound controller (app.api.inbound), for status items of a WhatsApp
delivery; and from the outbox (app.pipeline.outbox), which replays callbacks that arrived
before the send recorded its provider id.
Goes to: the `messages` row of the reply, and a live event for the conversation's views.
This is where one message's path ends.
"""

from __future__ import annotations

import logging
import time
import uuid

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.services import events
from app.services.cache import BoundedCache
from app.services.channels.store import ChannelRecord
from app.services.redis_conn import Pipeliner
from app.services.replies import DELIVERY_ORDER
from app.services.values import parse_uuid

log = logging.getLogger(__name__)
_json = msgspec.json.Encoder()

PARKED_TTL_S = 3600

# A status only replaces one that comes before it in DELIVERY_ORDER: callbacks arrive out of order.
# Matched by the provider id, or, while we do not have it yet (the send's answer was lost), by
# the row id the send carried as `biz_opaque_callback_data` ($7), which stores the provider id.
_UPDATE_STATUS = """
UPDATE messages
   SET status = $3, status_at = to_timestamp($4), error = $5::jsonb, provider_message_id = $2
 WHERE channel = $1 AND direction = 'out'
   AND (provider_message_id = $2 OR (id = $7 AND provider_message_id IS NULL))
   AND coalesce(array_position($6::text[], status), 0) < array_position($6::text[], $3)
RETURNING id, conversation
"""
_EXISTS = "SELECT 1 FROM messages WHERE channel = $1 AND direction = 'out' AND provider_message_id = $2"


def parked_key(channel_id: str, provider_message_id: str) -> str:
    return f"sb:status:{channel_id}:{provider_message_id}"


def callbacks_key(channel_id: str) -> str:
    """When the provider's status callbacks last reached us for this channel (a hint, as epoch seconds)."""
    return f"sb:callbacks:{channel_id}"


def failed_callbacks_key(channel_id: str) -> str:
    """When a status callback for this channel last failed to be applied (the provider sends it again)."""
    return f"sb:callbacks:failed:{channel_id}"


class CallbackTimes(msgspec.Struct, frozen=True):
    applied: float | None
    failed: float | None


CALLBACKS_SEEN_TTL_S = 86400
# Each process writes a channel's key at most this often: the outbox needs "callbacks flow", not each one.
_NOTE_EVERY_S = 1.0


class Statuses:
    """Applies status callbacks; one per process."""

    def __init__(
        self, db: asyncpg.Pool, redis: Redis, pipeliner: Pipeliner, publisher: events.LiveEvents
    ) -> None:
        self.db = db
        self.redis = redis
        self.pipeliner = pipeliner
        self.publisher = publisher
        self._noted: BoundedCache[str, float] = BoundedCache(max_entries=10_000)

    async def apply(
        self,
        channel: ChannelRecord,
        *,
        provider_message_id: str,
        status: str,
        timestamp: float,
        errors: list[dict],
        callback_data: str | None = None,
    ) -> bool:
        """Move an outbound message forward (never back); whether it moved.

        `callback_data` is the `biz_opaque_callback_data` the callback echoes: the row id our
        send carried. A callback that matches no row (the send has not stored its provider id,
        and named no row) is parked in Redis and applied by `replay_parked` when the id is stored.
        """
        if status not in DELIVERY_ORDER:
            await self._note_callback(channel.id)
            log.info("status ignored", extra={"status": status, "provider_message_id": provider_message_id})
            return False
        try:
            row = await self.db.fetchrow(
                _UPDATE_STATUS,
                uuid.UUID(channel.id),
                provider_message_id,
                status,
                timestamp,
                {"errors": errors} if errors else {},
                list(DELIVERY_ORDER),
                parse_uuid(callback_data) if callback_data else None,
            )
            if row is None and not await self.db.fetchval(
                _EXISTS, uuid.UUID(channel.id), provider_message_id
            ):
                await self._park(channel.id, provider_message_id, status, timestamp, errors)
        except BaseException:
            # This callback may be the one a reply in doubt waits for: until the provider delivers it
            # again, the channel's other callbacks prove nothing about replies attempted before now.
            await self._note_failed_callback(channel.id)
            raise
        # Noted once applied: "callbacks reach us" must mean they were applied, not only received.
        await self._note_callback(channel.id)
        if row is None:
            return False
        await self.publisher.publish(
            channel.workspace_id,
            events.LiveEvent(
                kind="status",
                conversation_id=str(row["conversation"]),
                data={"message_id": str(row["id"]), "status": status},
            ),
        )
        return True

    async def _note_callback(self, channel_id: str) -> None:
        """Remember that the channel's callbacks reach us: a send with none for itself then never arrived."""
        now = time.time()
        last = self._noted.get(channel_id)
        if last is not None and now - last < _NOTE_EVERY_S:
            return
        self._noted.put(channel_id, now)
        await self.pipeliner.execute(
            ("SET", callbacks_key(channel_id), repr(now), "EX", CALLBACKS_SEEN_TTL_S)
        )

    async def _note_failed_callback(self, channel_id: str) -> None:
        try:
            await self.pipeliner.execute(
                ("SET", failed_callbacks_key(channel_id), repr(time.time()), "EX", CALLBACKS_SEEN_TTL_S)
            )
        except Exception:  # the callback's own error is what the caller raises
            log.exception("noting a failed status callback failed", extra={"channel_id": channel_id})

    async def callbacks_seen(self, channel_ids: list[str]) -> list[CallbackTimes]:
        """For each channel, when status callbacks were last applied and when one last failed to be
        (epoch seconds; None when not in the last day)."""
        if not channel_ids:
            return []
        [values] = await self.pipeliner.execute(
            ("MGET", *[k for c in channel_ids for k in (callbacks_key(c), failed_callbacks_key(c))])
        )
        floats = [float(v) if v is not None else None for v in values]
        return [CallbackTimes(applied=floats[i], failed=floats[i + 1]) for i in range(0, len(floats), 2)]

    async def _park(
        self, channel_id: str, provider_message_id: str, status: str, timestamp: float, errors: list[dict]
    ) -> None:
        key = parked_key(channel_id, provider_message_id)
        payload = _json.encode({"status": status, "timestamp": timestamp, "errors": errors})
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, payload)
        pipe.expire(key, PARKED_TTL_S)
        await pipe.execute()

    async def replay_parked(self, channel: ChannelRecord, provider_message_id: str) -> None:
        """Apply the callbacks that arrived before this reply's provider id was stored."""
        key = parked_key(channel.id, provider_message_id)
        # Asked after every send, and nearly always empty: it shares the round trip of other turns.
        [parked] = await self.pipeliner.execute(("LRANGE", key, 0, -1))
        if not parked:
            return
        await self.redis.delete(key)
        for raw in parked:
            item = msgspec.json.decode(raw)
            await self.apply(
                channel,
                provider_message_id=provider_message_id,
                status=item["status"],
                timestamp=item["timestamp"],
                errors=item["errors"],
            )
