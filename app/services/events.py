"""Live events for the browser (SSE): published on Redis pub/sub per workspace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.services.redis_conn import Pipeliner


def channel_name(workspace_id: str) -> str:
    return f"sb:events:{workspace_id}"


class LiveEvent(msgspec.Struct, frozen=True):
    """What a live view needs to update itself: a kind, the conversation, and a payload."""

    kind: str  # message | status | ai_state | conversation
    conversation_id: str
    data: dict[str, Any] = {}


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LiveEvent)


def wire(workspace_id: str, event: LiveEvent) -> tuple[str, bytes]:
    """The (channel, payload) a publish sends, for callers that publish from a Lua script."""
    return channel_name(workspace_id), _encoder.encode(event)


class LiveBatch:
    """Live events held back to go out together: at the end of a turn, or before a slow call."""

    def __init__(self, pipeliner: Pipeliner) -> None:
        self.pipeliner = pipeliner
        self.items: list[tuple[str, LiveEvent]] = []

    def add(self, workspace_id: str, event: LiveEvent) -> None:
        self.items.append((workspace_id, event))

    def take_commands(self) -> list[tuple]:
        """The held events as PUBLISH commands, for the caller to send with its own; the batch is emptied."""
        commands = [("PUBLISH", *wire(workspace_id, event)) for workspace_id, event in self.items]
        self.items.clear()
        return commands

    async def publish_held(self) -> None:
        """Send the held events now (before a slow call), in a round trip shared with other turns."""
        if self.items:
            await self.pipeliner.execute(*self.take_commands())


class LiveEvents:
    """Publishes and subscribes to the workspaces' live events; one per process."""

    def __init__(self, redis: Redis, pipeliner: Pipeliner) -> None:
        self.redis = redis
        self.pipeliner = pipeliner

    async def publish(self, workspace_id: str, event: LiveEvent) -> None:
        await self.redis.publish(channel_name(workspace_id), _encoder.encode(event))

    async def publish_or_hold(self, workspace_id: str, event: LiveEvent, held: LiveBatch | None) -> None:
        """Publish now, or hold the event in `held` when the caller sends a batch later."""
        if held is None:
            await self.publish(workspace_id, event)
        else:
            held.add(workspace_id, event)

    def batch(self) -> LiveBatch:
        return LiveBatch(self.pipeliner)

    def subscribe(self, workspace_id: str) -> Subscription:
        return Subscription(self.redis, workspace_id)


class Subscription:
    """The workspace's live events: `async with live.subscribe(ws) as events: async for event in events`.

    The subscription is active when the `async with` body starts, so a caller can render the
    current state there and miss nothing that changes after it.
    """

    def __init__(self, redis: Redis, workspace_id: str) -> None:
        self.redis = redis
        self.workspace_id = workspace_id
        self._pubsub: PubSub = redis.pubsub()  # no I/O until subscribe

    async def __aenter__(self) -> Subscription:
        await self._pubsub.subscribe(channel_name(self.workspace_id))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._pubsub.unsubscribe()
        await self._pubsub.aclose()

    async def __aiter__(self) -> AsyncIterator[LiveEvent]:
        async for message in self._pubsub.listen():
            if message.get("type") == "message":
                yield _decoder.decode(message["data"])
