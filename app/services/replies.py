"""Outbound reply statuses: their order of progress, and what each means to a person."""

from __future__ import annotations

import enum
from typing import Any

from app.services.channels.whatsapp_wire import DeliveryStatus


class ReplyStatus(enum.StrEnum):
    """Statuses of an outbound `messages` row, in their order of progress.

    Callbacks arrive out of order, and a status only replaces one that comes before it here.
    The first three are ours; the rest are the provider's (and ours for a send it refused).
    """

    QUEUED = "queued"  # recorded, no attempt begun (rows from before attempts were recorded)
    SENDING = "sending"  # an attempt began at `status_at`: the provider may have the message
    UNKNOWN = "unknown"  # in doubt past the evidence window and not sent again; `error.reason` says why
    SENT = DeliveryStatus.SENT.value
    DELIVERED = DeliveryStatus.DELIVERED.value
    READ = DeliveryStatus.READ.value
    PLAYED = DeliveryStatus.PLAYED.value
    FAILED = DeliveryStatus.FAILED.value


# A send in doubt (or decided unknown) that evidence may still turn into sent.
IN_DOUBT_STATUSES = frozenset({ReplyStatus.SENDING, ReplyStatus.UNKNOWN})
DELIVERY_ORDER: tuple[str, ...] = tuple(status.value for status in ReplyStatus)


def delivery_reason(status: str, error: dict[str, Any]) -> str | None:
    """Why an outbound message is where it is, for people: None when it went as it should."""
    if status not in _EXPLAINED or not error:
        return None
    if error.get("reason"):
        return str(error["reason"])
    for item in error.get("errors") or []:  # the provider's failed callback
        words = item.get("title") or item.get("message") or "failed"
        details = f": {item['details']}" if item.get("details") else ""
        return f"WhatsApp reported {words} (error {item.get('code')}){details}"
    if error.get("message"):
        return str(error["message"])
    return None


# The statuses whose reason a person needs: what went wrong, or why we are waiting.
_EXPLAINED = frozenset({ReplyStatus.FAILED, ReplyStatus.UNKNOWN, ReplyStatus.SENDING})
