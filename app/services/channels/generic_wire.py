"""Switchboard's own generic webhook format: one signed JSON text message in, one InboundItem out."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from app.services.channels.items import (
    MAX_NAME_CHARS,
    MAX_PHONE_CHARS,
    MAX_PROVIDER_ID_CHARS,
    InboundItem,
    MessageType,
    WireError,
    explain_validation,
    timestamp_problem,
)

__all__ = ["GenericContact", "GenericMessage", "InboundItem", "WireError", "parse_generic"]

# The bounds are the columns' (app.services.channels.items): a body that parses can be stored.
_MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PROVIDER_ID_CHARS)]
_From = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PHONE_CHARS)]
_Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)]
# Unix seconds sent as a JSON string, as WhatsApp itself sends them ("1796135399").
_DIGITS = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


class GenericContact(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    first_name: _Name = ""
    last_name: _Name = ""


class GenericMessage(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, rename={"from_": "from"}):
    """The body of `POST /webhooks/generic/{channel_id}`; a format of our own, so unknown fields are errors."""

    message_id: _MessageId
    from_: _From
    text: Annotated[str, msgspec.Meta(min_length=1)]
    type: str = MessageType.TEXT.value
    # Unix seconds (a number or a digit string) or an ISO 8601 string; absent means "now".
    timestamp: int | float | str | None = None
    contact: GenericContact | None = None


_FIELDS = "message_id, from, text, type, timestamp, contact"
_decoder = msgspec.json.Decoder(GenericMessage)
_dict_decoder = msgspec.json.Decoder(dict)


def parse_generic(body: bytes, *, channel_ref: str, now_s: float | None = None) -> InboundItem:
    """Parse one generic webhook body; `channel_ref` becomes the item's phone_number_id.

    `now_s` is the receipt time used when the body has no timestamp (default: the clock).
    """
    try:
        message = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise WireError(_explain(exc)) from None
    except msgspec.DecodeError as exc:
        raise WireError(f"body is not valid JSON: {exc}") from None
    if message.type != MessageType.TEXT.value:
        raise WireError(
            f"type {message.type!r} is not supported: the generic channel carries text only (type 'text')"
        )
    contact = message.contact or GenericContact()
    for field, value in (
        ("message_id", message.message_id),
        ("from", message.from_),
        ("contact.first_name", contact.first_name),
        ("contact.last_name", contact.last_name),
    ):
        if "\x00" in value:
            raise WireError(f"field {field!r} contains a NUL character; remove it")
    return InboundItem(
        provider_message_id=message.message_id,
        phone_number_id=channel_ref,
        from_phone=message.from_,
        contact_name=" ".join(part for part in (contact.first_name, contact.last_name) if part),
        contact_first_name=contact.first_name,
        contact_last_name=contact.last_name,
        type=MessageType.TEXT.value,
        text=message.text,
        timestamp=_seconds(message.timestamp, now_s=now_s),
        raw=_dict_decoder.decode(body),
    )


_LENGTH = re.compile(r"^Expected `str` of length (?P<op>[<>]=) (?P<n>\d+) - at `\$\.(?P<path>[^`]+)`$")


def _explain(exc: msgspec.ValidationError) -> str:
    raw = str(exc)
    length = _LENGTH.match(raw)
    if length and length.group("op") == ">=":
        return f"field {length.group('path')!r} must not be empty"
    if length:
        return f"field {length.group('path')!r} is longer than {length.group('n')} characters"
    if raw.startswith("Expected `object`") and " - at " not in raw:
        return f"body must be a JSON object with message_id, from and text; {explain_validation(exc)}"
    sentence = explain_validation(exc)
    if sentence.startswith("unknown field"):
        return f"{sentence}; allowed fields are {_FIELDS} (contact: first_name, last_name)"
    return sentence


def _seconds(value: int | float | str | None, *, now_s: float | None) -> float:
    if value is None:
        return time.time() if now_s is None else now_s
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value.strip()):
            return _iso_seconds(value)
        value = value.strip()
    seconds = float(value)
    problem = timestamp_problem(seconds)
    if problem is not None:
        raise WireError(f"field 'timestamp': {problem}")
    return seconds


def _iso_seconds(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise WireError(
            f"timestamp {value!r} is not unix seconds or an ISO 8601 string like '2024-05-01T12:00:00Z'"
        ) from None
    if moment.tzinfo is None:
        # A zone-less time from a webhook sender is almost always UTC (server clocks).
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
