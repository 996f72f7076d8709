"""Live events for the browser (SSE): published on Redis pub/sub per workspace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec

from app.services import redis_conn


def channel_name(workspace_id: str) -> str:
    return f"sb:events:{workspace_id}"


class LiveEvent(msgspec.Struct, frozen=True):
    """What a live view needs to update itself: a kind, the conversation, and a payload."""

    kind: str  # message | status | ai_state | conversation
    conversation_id: str
    data: dict[str, Any] = {}


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LiveEvent)


async def publish(workspace_id: str, event: LiveEvent) -> None:
    await redis_conn.client().publish(channel_name(workspace_id), _encoder.encode(event))


def publish_in(pipe, workspace_id: str, event: LiveEvent) -> None:
    """Queue a publish on a pipeline (ingress sends one pipeline per batch)."""
    pipe.publish(channel_name(workspace_id), _encoder.encode(event))


async def subscribe(workspace_id: str) -> AsyncIterator[LiveEvent]:
    """Yield the workspace's events until the caller stops iterating."""
    pubsub = redis_conn.client().pubsub()
    await pubsub.subscribe(channel_name(workspace_id))
    try:
        async for message in pubsub.listen():
            if message.get("type") == "message":
                yield _decoder.decode(message["data"])
    finally:
        await pubsub.unsubscribe()
        await pubsub.aclose()
