"""The normalised inbound turn item every channel's wire format produces, and the wire error."""

from __future__ import annotations

import enum
import math
import re

import msgspec

# What the columns of an inbound message hold (app/db/tables.py; tests/unit/app/test_channel_wire.py
# checks they agree): checked when a body is parsed, so nothing that validates fails to store.
MAX_PROVIDER_ID_CHARS = 200  # messages.provider_message_id
MAX_PHONE_CHARS = 64  # contacts.phone
MAX_NAME_CHARS = 200  # contacts.first_name, contacts.last_name
MAX_TYPE_CHARS = 40  # messages.type
MAX_MEDIA_ID_CHARS = 200  # messages.media_id
# Seconds since 1970 stay below this until the year 5138; a larger number is milliseconds.
MAX_TIMESTAMP_S = 1e11


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


class InvalidItem(msgspec.Struct, kw_only=True):
    """An inbound message that cannot be stored, and why: recorded as `invalid`, the rest of its
    delivery stored, and the provider answered 200 so it stops sending it again."""

    provider_message_id: str  # cut to its column when it was itself the problem
    from_phone: str
    reason: str
    raw: dict = msgspec.field(default_factory=dict)


def storage_problem(item: InboundItem) -> str | None:
    """Why the item cannot be stored in its columns (a sentence naming the field), or None."""
    fields = (
        ("id", item.provider_message_id, MAX_PROVIDER_ID_CHARS),
        ("from", item.from_phone, MAX_PHONE_CHARS),
        ("first name", item.contact_first_name, MAX_NAME_CHARS),
        ("last name", item.contact_last_name, MAX_NAME_CHARS),
        ("type", item.type, MAX_TYPE_CHARS),
        ("media id", item.media_id or "", MAX_MEDIA_ID_CHARS),
    )
    for name, value, limit in fields:
        if len(value) > limit:
            return f"the {name} has {len(value)} characters; at most {limit} fit"
        if "\x00" in value:
            return f"the {name} contains a NUL character"
    if name_problem := _name_problem(item):
        return name_problem
    return timestamp_problem(item.timestamp)


def _name_problem(item: InboundItem) -> str | None:
    if not item.contact_first_name and item.contact_name:
        first, last = split_name(item.contact_name)
        for name, value in (("first name", first), ("last name", last)):
            if len(value) > MAX_NAME_CHARS:
                return f"the contact's {name} has {len(value)} characters; at most {MAX_NAME_CHARS} fit"
            if "\x00" in value:
                return f"the contact's {name} contains a NUL character"
    return None


def timestamp_problem(seconds: float) -> str | None:
    if not math.isfinite(seconds):
        return f"the timestamp {seconds} is not a number of seconds"
    if seconds < 0:
        return f"the timestamp {seconds} is negative: send unix seconds"
    if seconds >= MAX_TIMESTAMP_S:
        return f"the timestamp {seconds:.0f} looks like milliseconds: send unix seconds (divide by 1000)"
    return None


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, NUL characters dropped (for recording an invalid item)."""
    return text.replace("\x00", "")[:limit]


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
