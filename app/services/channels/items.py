"""The normalised inbound turn item every channel's wire format produces, and the wire error."""

from __future__ import annotations

import enum
import re

import msgspec


class WireError(ValueError):
    """A body that is not the wire format it claims to be; the message is safe to show the sender."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MessageType(str, enum.Enum):
    """The `type` of an InboundItem: Meta's message types, plus `unsupported` for anything else."""

    TEXT = "text"
    INTERACTIVE = "interactive"
    BUTTON = "button"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    REACTION = "reaction"
    ORDER = "order"
    SYSTEM = "system"
    EDIT = "edit"
    REVOKE = "revoke"
    UNSUPPORTED = "unsupported"


MEDIA_TYPES = frozenset(
    {MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO, MessageType.DOCUMENT, MessageType.STICKER}
)
# Items that change or remove an earlier message instead of saying something new.
AMENDMENT_TYPES = frozenset({MessageType.EDIT, MessageType.REVOKE})


class InboundItem(msgspec.Struct, kw_only=True):
    """One inbound message, the same shape whatever channel it came from.

    `phone_number_id` is the business endpoint the message was sent to: Meta's phone number
    id for WhatsApp, the caller's `channel_ref` for the generic channel.
    """

    provider_message_id: str
    phone_number_id: str
    from_phone: str
    contact_name: str = ""
    # Split of contact_name on the first space for WhatsApp (Meta sends one profile name);
    # given as-is by the generic channel.
    contact_first_name: str = ""
    contact_last_name: str = ""
    type: str = MessageType.TEXT.value
    # What a person would read: the text, a reply/button title, a caption, or "[image]".
    text: str = ""
    # The id behind a choice: button_reply/list_reply id, template button payload.
    reply_id: str | None = None
    media_id: str | None = None
    mime_type: str | None = None
    timestamp: float = 0.0
    # The message this one answers or reacts to (context.id, or reaction.message_id).
    context_message_id: str | None = None
    # The message an `edit` or `revoke` changes.
    original_message_id: str | None = None
    referral: dict | None = None
    raw: dict = msgspec.field(default_factory=dict)


def split_name(name: str) -> tuple[str, str]:
    """`"Sheena Nelson"` -> `("Sheena", "Nelson")`; one word stays a first name."""
    first, _, last = name.strip().partition(" ")
    return first, last.strip()


_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def explain_validation(error: msgspec.ValidationError, *, prefix: str = "") -> str:
    """Turn msgspec's message into a sentence with a plain path: "missing required field 'id' at messages[0]"."""
    text = str(error)
    where = ""
    match = _AT_PATH.search(text)
    if match:
        text = text[: match.start()]
        where = match.group("path").lstrip(".")
    text = (
        text.replace("Object missing required field", "missing required field")
        .replace("Object contains unknown field", "unknown field")
        .replace("Expected", "expected")
        .replace("`", "'")
    )
    if prefix and where:
        where = f"{prefix}.{where}" if not where.startswith("[") else f"{prefix}{where}"
    elif prefix:
        where = prefix
    return f"{text} at {where}" if where else text
