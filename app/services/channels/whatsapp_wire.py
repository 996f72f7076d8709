"""Meta WhatsApp Cloud API wire format: webhook envelope in, text message and send response out."""

from __future__ import annotations

import enum
import logging

import msgspec

from app.services.channels.items import (
    MAX_PHONE_CHARS,
    MAX_PROVIDER_ID_CHARS,
    InboundItem,
    InvalidItem,
    MessageType,
    WireError,
    clip,
    explain_validation,
    split_name,
    storage_problem,
    timestamp_problem,
)

__all__ = [
    "DeliveryStatus",
    "ErrorDetail",
    "InboundItem",
    "InvalidItem",
    "MessageType",
    "ParsedWebhook",
    "StatusConversation",
    "StatusItem",
    "StatusPricing",
    "WireError",
    "build_text_message",
    "parse_send_response",
    "parse_webhook",
]

log = logging.getLogger(__name__)

WHATSAPP_OBJECT = "whatsapp_business_account"
MAX_TEXT_CHARS = 4096  # Meta refuses longer text bodies with error 100.


# ---------------------------------------------------------------------------
# Inbound envelope. Every Struct ignores unknown fields on purpose: Meta adds fields.


class _Profile(msgspec.Struct):
    name: str = ""


class _Contact(msgspec.Struct):
    wa_id: str = ""
    profile: _Profile | None = None


class _Metadata(msgspec.Struct):
    phone_number_id: str
    display_phone_number: str = ""


class _Context(msgspec.Struct):
    id: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    forwarded: bool = False
    frequently_forwarded: bool = False


class _Text(msgspec.Struct):
    body: str = ""


class _Reply(msgspec.Struct):
    id: str = ""
    title: str = ""
    description: str = ""


class _NfmReply(msgspec.Struct):
    name: str = ""
    body: str = ""
    response_json: str = ""


class _Interactive(msgspec.Struct):
    type: str = ""
    button_reply: _Reply | None = None
    list_reply: _Reply | None = None
    nfm_reply: _NfmReply | None = None


class _Button(msgspec.Struct):
    payload: str = ""
    text: str = ""


class _Media(msgspec.Struct):
    id: str | None = None
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool = False


class _Location(msgspec.Struct):
    latitude: float | str | None = None
    longitude: float | str | None = None
    name: str | None = None
    address: str | None = None


class _CardName(msgspec.Struct):
    formatted_name: str = ""
    first_name: str = ""
    last_name: str = ""


class _Card(msgspec.Struct):
    name: _CardName | None = None


class _Reaction(msgspec.Struct):
    message_id: str | None = None
    emoji: str | None = None


class _ProductItem(msgspec.Struct):
    product_retailer_id: str = ""
    quantity: int | float | str = 0


class _Order(msgspec.Struct):
    catalog_id: str = ""
    text: str = ""
    product_items: list[_ProductItem] = []


class _System(msgspec.Struct):
    body: str = ""
    type: str = ""


class _Unsupported(msgspec.Struct):
    type: str = ""


class _Content(msgspec.Struct, kw_only=True):
    """What a message says; also the shape of the new version inside an `edit`."""

    type: str = MessageType.UNSUPPORTED.value
    context: _Context | None = None
    text: _Text | None = None
    interactive: _Interactive | None = None
    button: _Button | None = None
    image: _Media | None = None
    audio: _Media | None = None
    video: _Media | None = None
    document: _Media | None = None
    sticker: _Media | None = None
    location: _Location | None = None
    contacts: list[_Card] | None = None
    reaction: _Reaction | None = None
    order: _Order | None = None
    system: _System | None = None
    unsupported: _Unsupported | None = None


class _Edit(msgspec.Struct):
    original_message_id: str | None = None
    message: _Content | None = None


class _Revoke(msgspec.Struct):
    original_message_id: str | None = None


class _Message(_Content, kw_only=True):
    id: str
    from_: str = msgspec.field(name="from")
    timestamp: str | int | float
    referral: dict | None = None
    edit: _Edit | None = None
    revoke: _Revoke | None = None


class _ErrorData(msgspec.Struct):
    details: str = ""


class _Error(msgspec.Struct):
    code: int = 0
    title: str = ""
    message: str = ""
    error_data: _ErrorData | None = None


class _Origin(msgspec.Struct):
    type: str = ""


class _Conversation(msgspec.Struct):
    id: str = ""
    expiration_timestamp: str | int | None = None
    origin: _Origin | None = None


class _Pricing(msgspec.Struct):
    billable: bool | None = None
    pricing_model: str | None = None
    category: str | None = None
    type: str | None = None


class _Status(msgspec.Struct):
    id: str
    status: str
    timestamp: str | int | float
    recipient_id: str = ""
    errors: list[_Error] = []
    conversation: _Conversation | None = None
    pricing: _Pricing | None = None
    biz_opaque_callback_data: str | None = None


class _Value(msgspec.Struct):
    metadata: _Metadata
    messaging_product: str = "whatsapp"
    contacts: list[_Contact] = []
    # Kept raw: each message is stored exactly as received, and one odd message must not
    # sink the whole delivery (it becomes `unsupported` instead).
    messages: list[msgspec.Raw] = []
    statuses: list[_Status] = []
    errors: list[_Error] = []


class _Change(msgspec.Struct):
    field: str = ""
    # Raw until we know the field: other subscriptions (account_update, templates...) carry
    # unrelated shapes under the same key.
    value: msgspec.Raw = msgspec.Raw()


class _Entry(msgspec.Struct):
    id: str = ""
    changes: list[_Change] = []


class _Envelope(msgspec.Struct):
    object: str
    entry: list[_Entry]


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_value_decoder = msgspec.json.Decoder(_Value)
_message_decoder = msgspec.json.Decoder(_Message)
_dict_decoder = msgspec.json.Decoder(dict)


# ---------------------------------------------------------------------------
# Normalised output.


class DeliveryStatus(str, enum.Enum):
    """Statuses Meta reports for a message we sent."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({DeliveryStatus.READ, DeliveryStatus.PLAYED, DeliveryStatus.FAILED})


class ErrorDetail(msgspec.Struct, kw_only=True):
    code: int
    title: str = ""
    message: str = ""
    details: str = ""


class StatusConversation(msgspec.Struct, kw_only=True):
    id: str
    origin_type: str | None = None
    expiration_timestamp: float | None = None


class StatusPricing(msgspec.Struct, kw_only=True):
    billable: bool | None = None
    pricing_model: str | None = None
    category: str | None = None
    type: str | None = None


class StatusItem(msgspec.Struct, kw_only=True):
    """One status callback for a message we sent."""

    provider_message_id: str
    phone_number_id: str
    status: str
    timestamp: float
    recipient_id: str = ""
    errors: list[ErrorDetail] = []
    conversation: StatusConversation | None = None
    pricing: StatusPricing | None = None
    biz_opaque_callback_data: str | None = None


class ParsedWebhook(msgspec.Struct, kw_only=True):
    messages: list[InboundItem] = []
    # Messages that cannot be stored (a NaN timestamp, an id longer than its column...): recorded as
    # invalid with their reason while the rest of the delivery is stored.
    invalid: list[InvalidItem] = []
    statuses: list[StatusItem] = []
    # Status callbacks dropped for the same kind of reason (logged; there is nothing to record them on).
    invalid_statuses: list[str] = []
    # Errors Meta reports about the delivery itself (value.errors), not about one message.
    errors: list[ErrorDetail] = []
    # `field`s of changes we do not handle (account_update, template status...), for logs.
    ignored_fields: list[str] = []


def parse_webhook(body: bytes) -> ParsedWebhook:
    """Parse one webhook POST body; raise WireError with a sentence for the sender if it is not one."""
    try:
        envelope = _envelope_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise WireError(f"not a WhatsApp webhook: {explain_validation(exc)}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"body is not valid JSON: {exc}") from None
    if envelope.object != WHATSAPP_OBJECT:
        raise WireError(
            f"expected object {WHATSAPP_OBJECT!r}, got {envelope.object!r}: "
            "subscribe this webhook to the WhatsApp Business Account"
        )
    parsed = ParsedWebhook()
    for e, entry in enumerate(envelope.entry):
        for c, change in enumerate(entry.changes):
            if change.field != "messages":
                parsed.ignored_fields.append(change.field)
                continue
            where = f"entry[{e}].changes[{c}].value"
            if not change.value:
                raise WireError(f"missing required field 'value' at entry[{e}].changes[{c}]")
            try:
                value = _value_decoder.decode(change.value)
            except msgspec.ValidationError as exc:
                raise WireError(f"not a WhatsApp webhook: {explain_validation(exc, prefix=where)}") from None
            except msgspec.DecodeError as exc:  # the envelope keeps `value` raw, unchecked (invalid UTF-8...)
                raise WireError(f"body is not valid JSON at {where}: {exc}") from None
            _collect(value, parsed, where=where)
    return parsed


def _collect(value: _Value, parsed: ParsedWebhook, *, where: str) -> None:
    phone_number_id = value.metadata.phone_number_id
    names = {contact.wa_id: contact.profile.name for contact in value.contacts if contact.profile}
    # Newer payloads may key a contact by user id only (no wa_id); alone, it is the sender.
    only_name = names.get("", "") if len(value.contacts) == 1 else ""
    for m, raw in enumerate(value.messages):
        at = f"{where}.messages[{m}]"
        try:
            item = _inbound(raw, phone_number_id=phone_number_id, names=names, only_name=only_name, where=at)
        except WireError as exc:
            parsed.invalid.append(_invalid(raw, exc.message))
            continue
        problem = storage_problem(item)
        if problem is not None:
            parsed.invalid.append(_invalid(raw, f"{problem} at {at}"))
            continue
        parsed.messages.append(item)
    for s, status in enumerate(value.statuses):
        try:
            parsed.statuses.append(
                _status_item(status, phone_number_id=phone_number_id, where=f"{where}.statuses[{s}]")
            )
        except WireError as exc:
            parsed.invalid_statuses.append(exc.message)
    parsed.errors.extend(_error_detail(error) for error in value.errors)


def _invalid(raw: msgspec.Raw, reason: str) -> InvalidItem:
    """What can be kept of a message that cannot be stored: its id and sender as far as they fit."""
    try:
        found = _dict_decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        found = {}
    ident, sender = found.get("id"), found.get("from")
    return InvalidItem(
        provider_message_id=clip(ident if isinstance(ident, str) else "", MAX_PROVIDER_ID_CHARS),
        from_phone=clip(sender if isinstance(sender, str) else "", MAX_PHONE_CHARS),
        reason=reason,
        raw=found,
    )


def _inbound(
    raw: msgspec.Raw, *, phone_number_id: str, names: dict[str, str], only_name: str, where: str
) -> InboundItem:
    try:
        raw_dict = _dict_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise WireError(f"not a WhatsApp message: {explain_validation(exc, prefix=where)}") from None
    except msgspec.DecodeError as exc:  # kept raw by the envelope: invalid UTF-8 shows only here
        raise WireError(f"not a WhatsApp message: {exc} at {where}") from None
    try:
        message = _message_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        message = _salvage(raw_dict, exc, where=where)
    name = names.get(message.from_) or only_name
    first, last = split_name(name)
    item = InboundItem(
        provider_message_id=message.id,
        phone_number_id=phone_number_id,
        from_phone=message.from_,
        contact_name=name,
        contact_first_name=first,
        contact_last_name=last,
        timestamp=_seconds(message.timestamp, where=f"{where}.timestamp"),
        context_message_id=message.context.id if message.context else None,
        referral=message.referral,
        raw=raw_dict,
    )
    kind = message.type
    if kind == MessageType.EDIT.value and message.edit is not None:
        item.type = kind
        item.original_message_id = message.edit.original_message_id
        if message.edit.message is not None:
            _describe(message.edit.message, item)
            item.type = kind  # _describe sets the inner type; the item stays an edit
        else:
            item.text = "[edited message]"
    elif kind == MessageType.REVOKE.value:
        item.type = kind
        item.original_message_id = message.revoke.original_message_id if message.revoke else None
        item.text = "[message deleted]"
    else:
        _describe(message, item)
    return item


def _salvage(raw_dict: dict, exc: msgspec.ValidationError, *, where: str) -> _Message:
    """Keep a message whose body has an unexpected shape as `unsupported`, if it can be identified."""
    ident, sender, stamp = raw_dict.get("id"), raw_dict.get("from"), raw_dict.get("timestamp")
    if not (isinstance(ident, str) and isinstance(sender, str) and isinstance(stamp, (str, int, float))):
        raise WireError(f"not a WhatsApp message: {explain_validation(exc, prefix=where)}") from None
    log.warning(
        "whatsapp message with unexpected shape kept as unsupported",
        extra={"message_id": ident, "error": str(exc), "where": where},
    )
    return _Message(id=ident, from_=sender, timestamp=stamp, type=_MALFORMED + str(raw_dict.get("type", "")))


def _describe(content: _Content, item: InboundItem) -> None:
    """Fill type, text, reply id and media of `item` from what the message says."""
    kind = content.type
    item.type = kind
    if kind == "text" and content.text is not None:
        item.text = content.text.body
    elif kind == "interactive":
        _describe_interactive(content.interactive, item)
    elif kind == "button" and content.button is not None:
        item.text = content.button.text
        item.reply_id = content.button.payload
    elif kind in _MEDIA_KINDS:
        media: _Media | None = getattr(content, kind)
        if media is None:
            item.text = f"[{kind}]"
            return
        item.media_id = media.id
        item.mime_type = media.mime_type
        item.text = media.caption or _media_description(kind, media)
    elif kind == "location" and content.location is not None:
        item.text = _location_text(content.location)
    elif kind == "contacts" and content.contacts is not None:
        names = [
            card.name.formatted_name for card in content.contacts if card.name and card.name.formatted_name
        ]
        item.text = f"[contacts: {', '.join(names)}]" if names else "[contacts]"
    elif kind == "reaction" and content.reaction is not None:
        item.text = content.reaction.emoji or "[reaction removed]"
        item.context_message_id = content.reaction.message_id
    elif kind == "order" and content.order is not None:
        item.text = content.order.text or _order_text(content.order)
    elif kind == "system" and content.system is not None:
        item.text = content.system.body or f"[system: {content.system.type}]"
    elif kind == "unsupported":
        detail = content.unsupported.type if content.unsupported else ""
        item.text = f"[unsupported: {detail}]" if detail else "[unsupported]"
    elif kind in _KNOWN_KINDS:
        # A known type whose payload is absent (Meta sends this with value.errors).
        item.text = f"[{kind}]"
    else:
        item.type = MessageType.UNSUPPORTED.value
        original = kind.removeprefix(_MALFORMED)
        item.text = f"[unsupported: {original}]" if original else "[unsupported]"


# Marks a salvaged message's type so it can never match a known one.
_MALFORMED = "!"
_MEDIA_KINDS = frozenset({"image", "audio", "video", "document", "sticker"})
_KNOWN_KINDS = frozenset(kind.value for kind in MessageType)


def _describe_interactive(interactive: _Interactive | None, item: InboundItem) -> None:
    if interactive is None:
        item.text = "[interactive]"
    elif interactive.button_reply is not None:
        item.text = interactive.button_reply.title
        item.reply_id = interactive.button_reply.id
    elif interactive.list_reply is not None:
        item.text = interactive.list_reply.title
        item.reply_id = interactive.list_reply.id
    elif interactive.nfm_reply is not None:
        item.text = interactive.nfm_reply.body or "[flow response]"
        item.reply_id = interactive.nfm_reply.name or None
    else:
        item.text = f"[interactive: {interactive.type}]" if interactive.type else "[interactive]"


def _media_description(kind: str, media: _Media) -> str:
    if kind == "document" and media.filename:
        return f"[document: {media.filename}]"
    if kind == "audio" and media.voice:
        return "[voice]"
    return f"[{kind}]"


def _location_text(location: _Location) -> str:
    label = ", ".join(part for part in (location.name, location.address) if part)
    return label or f"[location: {location.latitude}, {location.longitude}]"


def _order_text(order: _Order) -> str:
    lines = ", ".join(f"{item.product_retailer_id} x{item.quantity}" for item in order.product_items)
    return f"[order: {lines}]" if lines else "[order]"


def _seconds(value: str | int | float, *, where: str) -> float:
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        raise WireError(f"expected a unix timestamp in seconds, got {str(value)[:40]!r} at {where}") from None
    problem = timestamp_problem(seconds)
    if problem is not None:
        raise WireError(f"{problem} at {where}")
    return seconds


def _error_detail(error: _Error) -> ErrorDetail:
    return ErrorDetail(
        code=error.code,
        title=error.title,
        message=error.message,
        details=error.error_data.details if error.error_data else "",
    )


def _status_item(status: _Status, *, phone_number_id: str, where: str) -> StatusItem:
    conversation = None
    if status.conversation is not None:
        expiry = status.conversation.expiration_timestamp
        conversation = StatusConversation(
            id=status.conversation.id,
            origin_type=status.conversation.origin.type if status.conversation.origin else None,
            expiration_timestamp=None if expiry is None else _seconds(expiry, where=f"{where}.conversation"),
        )
    pricing = None
    if status.pricing is not None:
        p = status.pricing
        pricing = StatusPricing(
            billable=p.billable, pricing_model=p.pricing_model, category=p.category, type=p.type
        )
    return StatusItem(
        provider_message_id=status.id,
        phone_number_id=phone_number_id,
        status=status.status,
        timestamp=_seconds(status.timestamp, where=f"{where}.timestamp"),
        recipient_id=status.recipient_id,
        errors=[_error_detail(error) for error in status.errors],
        conversation=conversation,
        pricing=pricing,
        biz_opaque_callback_data=status.biz_opaque_callback_data,
    )


# ---------------------------------------------------------------------------
# Outbound: POST {graph}/{phone_number_id}/messages


class _OutText(msgspec.Struct):
    body: str
    preview_url: bool


class _OutContext(msgspec.Struct):
    message_id: str


class _OutTextMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    # No defaults on the constants: omit_defaults would drop them from the body.
    messaging_product: str
    recipient_type: str
    to: str
    type: str
    text: _OutText
    context: _OutContext | None = None
    # Echoed in the message's status callbacks: how a send whose answer was lost is found again.
    biz_opaque_callback_data: str | None = None


MAX_CALLBACK_DATA_CHARS = 512  # Meta's limit for biz_opaque_callback_data

_encoder = msgspec.json.Encoder()


def build_text_message(
    to: str,
    text: str,
    *,
    reply_to: str | None = None,
    preview_url: bool = False,
    callback_data: str | None = None,
) -> bytes:
    """The JSON body that sends `text` to `to`, as a reply to `reply_to` when given.

    `callback_data` goes out as `biz_opaque_callback_data`, which Meta echoes in the message's
    status callbacks.
    """
    if not to:
        raise WireError("recipient 'to' is empty")
    if not text:
        raise WireError("message text is empty: WhatsApp refuses empty text messages")
    if len(text) > MAX_TEXT_CHARS:
        raise WireError(f"message text is {len(text)} characters; WhatsApp allows at most {MAX_TEXT_CHARS}")
    if callback_data is not None and len(callback_data) > MAX_CALLBACK_DATA_CHARS:
        raise WireError(
            f"callback data is {len(callback_data)} characters; at most {MAX_CALLBACK_DATA_CHARS}"
        )
    message = _OutTextMessage(
        messaging_product="whatsapp",
        recipient_type="individual",
        to=to,
        type="text",
        text=_OutText(body=text, preview_url=preview_url),
        context=_OutContext(message_id=reply_to) if reply_to else None,
        biz_opaque_callback_data=callback_data,
    )
    return _encoder.encode(message)


class _SentMessage(msgspec.Struct):
    id: str = ""


class _GraphError(msgspec.Struct):
    message: str = ""
    code: int | None = None
    error_subcode: int | None = None


class _SendResponse(msgspec.Struct):
    messages: list[_SentMessage] = []
    error: _GraphError | None = None


_send_response_decoder = msgspec.json.Decoder(_SendResponse)


def parse_send_response(body: bytes) -> str:
    """The wamid of the message the Graph API accepted; WireError on an error body or none."""
    try:
        response = _send_response_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise WireError(f"unexpected send response: {explain_validation(exc)}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"send response is not valid JSON: {exc}") from None
    if response.error is not None:
        code = f" {response.error.code}" if response.error.code is not None else ""
        raise WireError(f"Graph API error{code}: {response.error.message or 'no message'}")
    if not response.messages or not response.messages[0].id:
        raise WireError("send response has no message id (expected messages[0].id)")
    return response.messages[0].id
