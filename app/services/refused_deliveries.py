"""Inbound messages refused at the door: stored as `invalid` by ingress, read back here with why."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from app.db import engine
from app.services.values import iso


class RefusedMessage(msgspec.Struct):
    id: str
    channel_id: str
    channel_name: str
    provider_message_id: str
    sender: str
    status: str
    reason: str
    created_at: str


class RefusedPage(msgspec.Struct):
    items: list[RefusedMessage]


async def list_refused(
    workspace_id: str, *, since: datetime | None = None, limit: int = 100
) -> list[RefusedMessage]:
    """The workspace's refused messages, newest first (the payload stays in the database)."""
    rows = await engine.pool().fetch(
        "SELECT i.id, i.channel, c.name AS channel_name, i.provider_message_id, i.sender, i.status, "
        "i.reason, i.created_at FROM invalid_messages i JOIN channels c ON c.id = i.channel "
        "WHERE i.workspace = $1 AND ($2::timestamptz IS NULL OR i.created_at >= $2) "
        "ORDER BY i.created_at DESC LIMIT $3",
        uuid.UUID(workspace_id),
        since,
        limit,
    )
    return [
        RefusedMessage(
            id=str(r["id"]),
            channel_id=str(r["channel"]),
            channel_name=r["channel_name"],
            provider_message_id=r["provider_message_id"],
            sender=r["sender"],
            status=r["status"],
            reason=r["reason"],
            created_at=iso(r["created_at"]),
        )
        for r in rows
    ]
