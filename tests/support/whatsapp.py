"""WhatsApp Cloud API webhook bodies, as Meta sends them, for the tests that play Meta's side."""

from __future__ import annotations

import time
import uuid
from typing import Any


def envelope(
    phone_number_id: str, value: dict[str, Any], *, display_phone_number: str = "15550000000"
) -> dict:
    """One `messages` change for the business number `phone_number_id`, carrying `value`."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": display_phone_number,
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def text_message(*, sender: str, text: str, wamid: str | None = None) -> dict:
    return {
        "from": sender,
        "id": wamid or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }


def text_envelope(
    *, phone_number_id: str, sender: str, text: str, wamid: str | None = None, name: str = "Sheena Nelson"
) -> dict:
    """A customer's text message, with the contact's profile as Meta sends it."""
    return envelope(
        phone_number_id,
        {
            "contacts": [{"profile": {"name": name}, "wa_id": sender}],
            "messages": [text_message(sender=sender, text=text, wamid=wamid)],
        },
    )


def status_envelope(*, phone_number_id: str, wamid: str, status: str, recipient: str) -> dict:
    """A status callback for one of our replies; `failed` carries Meta's error object."""
    entry: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": recipient,
    }
    if status == "failed":
        entry["errors"] = [
            {
                "code": 131049,
                "title": "Not delivered",
                "message": "Not delivered",
                "error_data": {"details": "ecosystem engagement"},
            }
        ]
    return envelope(phone_number_id, {"statuses": [entry]})
