"""Unit tests of the channel wire formats with our own small payloads."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.db import tables
from app.services.channels.generic_wire import parse_generic
from app.services.channels.items import (
    MAX_MEDIA_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_PHONE_CHARS,
    MAX_PROVIDER_ID_CHARS,
    MAX_TYPE_CHARS,
    InboundItem,
    MessageType,
    WireError,
)
from app.services.channels.signatures import sign_sha256, verify_sha256
from app.services.channels.whatsapp_wire import (
    DeliveryStatus,
    build_text_message,
    parse_send_response,
    parse_webhook,
)
from tests.support.whatsapp import envelope

BUSINESS = "500100200300"


def _message(**fields) -> dict:
    base = {
        "from": "15550001111",
        "id": "wamid.unit1",
        "timestamp": "1700000000",
        "type": "text",
        "text": {"body": "hi"},
    }
    base.update(fields)
    return base


def _envelope(
    *messages: dict, statuses: tuple = (), contacts: list | None = None, phone_number_id: str = BUSINESS
) -> dict:
    value: dict = {}
    if messages:
        value["contacts"] = (
            contacts
            if contacts is not None
            else [{"profile": {"name": "Ada Lovelace"}, "wa_id": "15550001111"}]
        )
        value["messages"] = list(messages)
    if statuses:
        value["statuses"] = list(statuses)
    return envelope(phone_number_id, value, display_phone_number="15550009999")


def _parse_one(message: dict) -> InboundItem:
    parsed = parse_webhook(json.dumps(_envelope(message)).encode())
    assert len(parsed.messages) == 1
    return parsed.messages[0]


# --- parse_webhook: bad input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "body is not valid JSON"),
        (b"{not json", "body is not valid JSON"),
        (b'{"object": "whatsapp_business_account", "entry": [', "body is not valid JSON"),
        (b"[1, 2]", "expected 'object', got 'array'"),
        (b'{"entry": []}', "missing required field 'object'"),
        (b'{"object": "whatsapp_business_account"}', "missing required field 'entry'"),
        (b'{"object": "page", "entry": []}', "expected object 'whatsapp_business_account', got 'page'"),
        (b'{"object": "whatsapp_business_account", "entry": {}}', "expected 'array', got 'object' at entry"),
    ],
)
def test_bad_envelopes_are_refused_with_a_sentence(body: bytes, expected: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_webhook(body)

    assert expected in caught.value.message


def test_missing_metadata_names_the_path() -> None:
    envelope = _envelope(_message())
    del envelope["entry"][0]["changes"][0]["value"]["metadata"]

    with pytest.raises(
        WireError, match=r"missing required field 'metadata' at entry\[0\]\.changes\[0\]\.value"
    ):
        parse_webhook(json.dumps(envelope).encode())


def _invalid_reason(message: dict) -> str:
    """The reason a message alone is invalid; the good message delivered with it still parses."""
    envelope = _envelope(message)
    envelope["entry"][0]["changes"][0]["value"]["messages"].append(_message(id="wamid.good"))
    parsed = parse_webhook(json.dumps(envelope).encode())
    assert [item.provider_message_id for item in parsed.messages] == ["wamid.good"]
    (invalid,) = parsed.invalid
    return invalid.reason


def test_a_message_without_id_is_invalid_and_named() -> None:
    message = _message()
    del message["id"]

    reason = _invalid_reason(message)

    assert re.search(r"entry\[0\]\.changes\[0\]\.value\.messages\[0\]", reason)


def test_non_numeric_timestamp_is_invalid() -> None:
    assert "unix timestamp in seconds, got 'yesterday'" in _invalid_reason(_message(timestamp="yesterday"))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        # issue 14: each of these got 503 on every retry, and sank the good messages with it.
        ({"timestamp": "NaN"}, "is not a number of seconds"),
        ({"timestamp": "inf"}, "is not a number of seconds"),
        ({"timestamp": "1e400"}, "is not a number of seconds"),
        ({"timestamp": 1e300}, "looks like milliseconds"),
        ({"timestamp": "-5"}, "negative"),
        ({"id": "wamid." + "x" * 200}, f"the id has 206 characters; at most {MAX_PROVIDER_ID_CHARS} fit"),
        ({"id": "wamid.\x00"}, "the id contains a NUL character"),
        ({"from": "1" * 65}, f"the from has 65 characters; at most {MAX_PHONE_CHARS} fit"),
        ({"from": "1555\x00"}, "the from contains a NUL character"),
        ({"type": "image", "image": {"id": "m" * 201}}, "the media id has 201 characters"),
    ],
)
def test_a_message_that_cannot_be_stored_is_invalid_with_its_reason(fields: dict, reason: str) -> None:
    assert reason in _invalid_reason(_message(**fields))


def test_invalid_utf8_inside_one_message_makes_that_message_invalid() -> None:
    body = json.dumps(_envelope(_message(text={"body": "MARK"}), _message(id="wamid.good"))).encode()
    parsed = parse_webhook(body.replace(b"MARK", b"\xc3\x28"))
    assert [item.provider_message_id for item in parsed.messages] == ["wamid.good"]
    (invalid,) = parsed.invalid
    assert "Invalid UTF-8" in invalid.reason and "messages[0]" in invalid.reason


def test_invalid_utf8_outside_the_messages_is_refused() -> None:
    body = json.dumps(_envelope(_message(), phone_number_id="MARK")).encode()
    with pytest.raises(WireError, match="not valid JSON"):
        parse_webhook(body.replace(b"MARK", b"\xff"))


def test_a_name_longer_than_its_column_is_invalid() -> None:
    envelope = _envelope(
        _message(), contacts=[{"profile": {"name": "N" * 201 + " Nelson"}, "wa_id": "15550001111"}]
    )
    (invalid,) = parse_webhook(json.dumps(envelope).encode()).invalid
    assert "first name has 201 characters" in invalid.reason and invalid.from_phone == "15550001111"


def test_parse_time_bounds_match_the_columns() -> None:
    assert tables.Message.provider_message_id.length == MAX_PROVIDER_ID_CHARS
    assert tables.Contact.phone.length == MAX_PHONE_CHARS
    assert MAX_NAME_CHARS == tables.Contact.first_name.length == tables.Contact.last_name.length
    assert tables.Message.type.length == MAX_TYPE_CHARS
    assert tables.Message.media_id.length == MAX_MEDIA_ID_CHARS
    assert tables.InvalidMessage.provider_message_id.length == MAX_PROVIDER_ID_CHARS
    assert tables.InvalidMessage.sender.length == MAX_PHONE_CHARS


def test_empty_envelope_yields_nothing() -> None:
    parsed = parse_webhook(b'{"object": "whatsapp_business_account", "entry": []}')

    assert parsed.messages == [] and parsed.statuses == [] and parsed.errors == []


def test_other_subscription_fields_are_ignored_whatever_their_shape() -> None:
    envelope = _envelope(_message())
    envelope["entry"][0]["changes"].insert(
        0, {"field": "account_update", "value": {"phone_number": "15550009999", "event": "VERIFIED_ACCOUNT"}}
    )

    parsed = parse_webhook(json.dumps(envelope).encode())

    assert parsed.ignored_fields == ["account_update"]
    assert [item.text for item in parsed.messages] == ["hi"]


# --- parse_webhook: leniency ----------------------------------------------------------------


def test_unknown_message_type_becomes_unsupported_and_keeps_raw() -> None:
    message = _message(type="hologram", hologram={"frames": 3})
    del message["text"]

    item = _parse_one(message)

    assert item.type == MessageType.UNSUPPORTED
    assert item.text == "[unsupported: hologram]"
    assert item.raw == message


def test_message_without_type_becomes_unsupported() -> None:
    message = _message()
    del message["type"]

    assert _parse_one(message).type == MessageType.UNSUPPORTED


def test_known_type_with_an_unexpected_shape_becomes_unsupported() -> None:
    item = _parse_one(_message(type="image", image="not-an-object"))

    assert item.type == MessageType.UNSUPPORTED
    assert item.text == "[unsupported: image]"
    assert item.provider_message_id == "wamid.unit1"


def test_unknown_fields_everywhere_are_accepted() -> None:
    envelope = _envelope(_message(brand_new_field={"x": 1}, text={"body": "hi", "lang": "en"}))
    envelope["brand_new_top"] = True
    envelope["entry"][0]["changes"][0]["value"]["metadata"]["extra"] = "y"

    assert parse_webhook(json.dumps(envelope).encode()).messages[0].text == "hi"


def test_integer_timestamp_is_accepted() -> None:
    assert _parse_one(_message(timestamp=1700000123)).timestamp == 1700000123.0


# --- parse_webhook: normalisation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "kind", "text", "reply_id", "media_id"),
    [
        ({"type": "text", "text": {"body": "hello"}}, "text", "hello", None, None),
        (
            {
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
            },
            "interactive",
            "Yes",
            "yes",
            None,
        ),
        (
            {
                "type": "interactive",
                "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Row 2"}},
            },
            "interactive",
            "Row 2",
            "r2",
            None,
        ),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "nfm_reply",
                    "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{}"},
                },
            },
            "interactive",
            "Sent",
            "flow",
            None,
        ),
        (
            {
                "type": "interactive",
                "interactive": {"type": "call_permission_reply", "call_permission_reply": {}},
            },
            "interactive",
            "[interactive: call_permission_reply]",
            None,
            None,
        ),
        (
            {"type": "button", "button": {"payload": "STOP", "text": "Stop promotions"}},
            "button",
            "Stop promotions",
            "STOP",
            None,
        ),
        ({"type": "image", "image": {"id": "m1", "mime_type": "image/png"}}, "image", "[image]", None, "m1"),
        ({"type": "image", "image": {"id": "m1", "caption": "my cat"}}, "image", "my cat", None, "m1"),
        ({"type": "audio", "audio": {"id": "m2", "voice": True}}, "audio", "[voice]", None, "m2"),
        ({"type": "video", "video": {"id": "m3"}}, "video", "[video]", None, "m3"),
        (
            {"type": "document", "document": {"id": "m4", "filename": "invoice.pdf"}},
            "document",
            "[document: invoice.pdf]",
            None,
            "m4",
        ),
        ({"type": "sticker", "sticker": {"id": "m5"}}, "sticker", "[sticker]", None, "m5"),
        (
            {"type": "location", "location": {"latitude": 1.5, "longitude": 2.5}},
            "location",
            "[location: 1.5, 2.5]",
            None,
            None,
        ),
        (
            {"type": "location", "location": {"latitude": 1, "longitude": 2, "name": "Shop"}},
            "location",
            "Shop",
            None,
            None,
        ),
        (
            {"type": "contacts", "contacts": [{"name": {"formatted_name": "Bo"}}]},
            "contacts",
            "[contacts: Bo]",
            None,
            None,
        ),
        (
            {"type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}},
            "reaction",
            "👍",
            None,
            None,
        ),
        (
            {"type": "order", "order": {"catalog_id": "c", "text": "for Friday", "product_items": []}},
            "order",
            "for Friday",
            None,
            None,
        ),
        (
            {"type": "system", "system": {"type": "user_changed_number", "body": ""}},
            "system",
            "[system: user_changed_number]",
            None,
            None,
        ),
        (
            {"type": "unsupported", "unsupported": {"type": "poll"}},
            "unsupported",
            "[unsupported: poll]",
            None,
            None,
        ),
        (
            {"type": "revoke", "revoke": {"original_message_id": "wamid.old"}},
            "revoke",
            "[message deleted]",
            None,
            None,
        ),
        (
            {
                "type": "edit",
                "edit": {
                    "original_message_id": "wamid.old",
                    "message": {"type": "text", "text": {"body": "fixed"}},
                },
            },
            "edit",
            "fixed",
            None,
            None,
        ),
    ],
)
def test_each_type_is_normalised(
    fields: dict, kind: str, text: str, reply_id: str | None, media_id: str | None
) -> None:
    message = _message(**fields)
    if fields["type"] != "text":
        del message["text"]

    item = _parse_one(message)

    assert (item.type, item.text, item.reply_id, item.media_id) == (kind, text, reply_id, media_id)


def test_amendments_point_at_the_original_message() -> None:
    edit = _message(
        type="edit",
        edit={"original_message_id": "wamid.old", "message": {"type": "text", "text": {"body": "x"}}},
    )
    revoke = _message(type="revoke", revoke={"original_message_id": "wamid.older"})

    assert _parse_one(edit).original_message_id == "wamid.old"
    assert _parse_one(revoke).original_message_id == "wamid.older"


def test_reply_context_and_referral_are_kept() -> None:
    referral = {"source_type": "ad", "source_id": "42", "headline": "Sale"}

    item = _parse_one(_message(context={"from": BUSINESS, "id": "wamid.prev"}, referral=referral))

    assert item.context_message_id == "wamid.prev"
    assert item.referral == referral


def test_contact_and_business_number_come_from_the_envelope() -> None:
    item = _parse_one(_message())

    assert (item.phone_number_id, item.from_phone) == (BUSINESS, "15550001111")
    assert (item.contact_name, item.contact_first_name, item.contact_last_name) == (
        "Ada Lovelace",
        "Ada",
        "Lovelace",
    )


def test_contact_name_is_matched_by_wa_id_among_several() -> None:
    contacts = [
        {"profile": {"name": "Other"}, "wa_id": "1999"},
        {"profile": {"name": "Grace"}, "wa_id": "15550001111"},
    ]
    envelope = _envelope(_message(), _message(**{"from": "17770000000", "id": "wamid.2"}), contacts=contacts)

    items = parse_webhook(json.dumps(envelope).encode()).messages

    assert [item.contact_name for item in items] == ["Grace", ""]


def test_arabic_text_and_name_survive_unchanged() -> None:
    text = "مرحبا، هل المنتج متوفر باللون الأزرق؟ 🙏"
    envelope = _envelope(
        _message(text={"body": text}),
        contacts=[{"profile": {"name": "فاطمة الزهراء"}, "wa_id": "15550001111"}],
    )

    item = parse_webhook(json.dumps(envelope, ensure_ascii=False).encode()).messages[0]

    assert item.text == text
    assert (item.contact_first_name, item.contact_last_name) == ("فاطمة", "الزهراء")


def test_thousands_of_messages_in_one_envelope_keep_their_order() -> None:
    count = 5000
    messages = [_message(id=f"wamid.{index}", text={"body": f"message {index}"}) for index in range(count)]

    parsed = parse_webhook(json.dumps(_envelope(*messages)).encode())

    assert len(parsed.messages) == count
    assert [item.provider_message_id for item in parsed.messages] == [
        f"wamid.{index}" for index in range(count)
    ]
    assert parsed.messages[-1].text == f"message {count - 1}"


def test_several_entries_keep_their_own_business_number() -> None:
    first = _envelope(_message(id="wamid.a"), phone_number_id="111")
    second = _envelope(_message(id="wamid.b"), phone_number_id="222")
    first["entry"] += second["entry"]

    items = parse_webhook(json.dumps(first).encode()).messages

    assert [(item.provider_message_id, item.phone_number_id) for item in items] == [
        ("wamid.a", "111"),
        ("wamid.b", "222"),
    ]


def test_failed_status_carries_its_error() -> None:
    status = {
        "id": "wamid.out1",
        "status": "failed",
        "timestamp": "1700000300",
        "recipient_id": "15550001111",
        "errors": [
            {"code": 131047, "title": "Re-engagement message", "error_data": {"details": "24h window passed"}}
        ],
    }

    item = parse_webhook(json.dumps(_envelope(statuses=(status,))).encode()).statuses[0]

    assert (item.provider_message_id, item.status, item.timestamp) == (
        "wamid.out1",
        DeliveryStatus.FAILED,
        1700000300.0,
    )
    assert [(e.code, e.title, e.details) for e in item.errors] == [
        (131047, "Re-engagement message", "24h window passed")
    ]
    assert item.conversation is None and item.pricing is None


# --- outbound ---------------------------------------------------------------------------------


def test_text_message_body() -> None:
    body = json.loads(build_text_message("15550001111", "Hello"))

    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15550001111",
        "type": "text",
        "text": {"body": "Hello", "preview_url": False},
    }


def test_text_message_reply_carries_context() -> None:
    body = json.loads(build_text_message("15550001111", "مرحبا", reply_to="wamid.prev"))

    assert body["context"] == {"message_id": "wamid.prev"}
    assert body["text"]["body"] == "مرحبا"


@pytest.mark.parametrize(
    ("to", "text", "expected"),
    [("15550001111", "", "empty"), ("", "hi", "recipient"), ("15550001111", "x" * 4097, "at most 4096")],
)
def test_text_message_refuses_what_whatsapp_would(to: str, text: str, expected: str) -> None:
    with pytest.raises(WireError, match=expected):
        build_text_message(to, text)


def test_send_response_wamid() -> None:
    body = b'{"messaging_product":"whatsapp","contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.sent"}]}'

    assert parse_send_response(body) == "wamid.sent"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}}',
            "Graph API error 190: Invalid OAuth",
        ),
        (b'{"messaging_product": "whatsapp", "messages": []}', "no message id"),
        (b"<html>Bad gateway</html>", "not valid JSON"),
        (b'{"messages": "x"}', "unexpected send response"),
    ],
)
def test_send_response_without_wamid_is_an_error(body: bytes, expected: str) -> None:
    with pytest.raises(WireError, match=expected):
        parse_send_response(body)


# --- signatures ----------------------------------------------------------------------------------


def test_signature_round_trip_with_str_or_bytes_secret() -> None:
    body = b'{"hello": "world"}'
    header = sign_sha256("s3cret", body)

    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert header == sign_sha256(b"s3cret", body)
    assert verify_sha256("s3cret", body, header)
    assert verify_sha256(b"s3cret", body, header.upper().replace("SHA256=", "sha256="))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=abc",
        "deadbeef",
        "sha256=" + "g" * 64,
        "sha256=" + "a" * 63,
        "sha256=" + "é" * 64,
    ],
)
def test_malformed_or_absent_signature_is_refused(header: str | None) -> None:
    assert not verify_sha256("s3cret", b"{}", header)


def test_empty_secret_verifies_nothing() -> None:
    body = b"{}"

    assert not verify_sha256("", body, sign_sha256("x", body))
    with pytest.raises(ValueError, match="secret is empty"):
        sign_sha256(b"", body)


# --- generic channel ---------------------------------------------------------------------------


def test_generic_full_message() -> None:
    body = json.dumps(
        {
            "message_id": "ext-1",
            "from": "+15550001111",
            "text": "Where is my order?",
            "type": "text",
            "timestamp": 1700000000,
            "contact": {"first_name": "Ada", "last_name": "Lovelace"},
        }
    ).encode()

    item = parse_generic(body, channel_ref="chan-7")

    assert (item.provider_message_id, item.phone_number_id, item.from_phone) == (
        "ext-1",
        "chan-7",
        "+15550001111",
    )
    assert (item.type, item.text, item.timestamp) == ("text", "Where is my order?", 1700000000.0)
    assert (item.contact_name, item.contact_first_name, item.contact_last_name) == (
        "Ada Lovelace",
        "Ada",
        "Lovelace",
    )
    assert item.raw == json.loads(body)


def test_generic_minimal_message_uses_receipt_time() -> None:
    item = parse_generic(b'{"message_id": "m", "from": "u1", "text": "hi"}', channel_ref="c", now_s=1234.5)

    assert (item.timestamp, item.contact_name) == (1234.5, "")


@pytest.mark.parametrize(
    ("timestamp", "seconds"),
    [
        (1700000000.25, 1700000000.25),
        (1796135399, 1796135399.0),
        # Unix seconds as a digit string, as WhatsApp itself sends them.
        ("1796135399", 1796135399.0),
        (" 1796135399 ", 1796135399.0),
        ("1796135399.5", 1796135399.5),
        ("2024-05-01T12:00:00Z", 1714564800.0),
        ("2024-05-01T12:00:00.250Z", 1714564800.25),
        ("2024-05-01T14:00:00+02:00", 1714564800.0),
        ("2024-05-01T12:00:00", 1714564800.0),
    ],
)
def test_generic_timestamps(timestamp: object, seconds: float) -> None:
    body = json.dumps({"message_id": "m", "from": "u", "text": "t", "timestamp": timestamp}).encode()

    assert parse_generic(body, channel_ref="c").timestamp == seconds


def test_generic_arabic_text() -> None:
    body = json.dumps(
        {"message_id": "m", "from": "u", "text": "أريد إلغاء طلبي", "contact": {"first_name": "علي"}},
        ensure_ascii=False,
    )

    item = parse_generic(body.encode(), channel_ref="c")

    assert (item.text, item.contact_name) == ("أريد إلغاء طلبي", "علي")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"from": "u", "text": "t"}, "missing required field 'message_id'"),
        ({"message_id": "m", "text": "t"}, "missing required field 'from'"),
        ({"message_id": "m", "from": "u"}, "missing required field 'text'"),
        ({"message_id": "m", "from": "u", "text": ""}, "field 'text' must not be empty"),
        ({"message_id": "", "from": "u", "text": "t"}, "field 'message_id' must not be empty"),
        # The bounds are the columns' (issue 14: a 201..256-character id validated, then failed to store).
        ({"message_id": "m" * 201, "from": "u", "text": "t"}, "field 'message_id' is longer than 200"),
        ({"message_id": "m", "from": "1" * 65, "text": "t"}, "field 'from' is longer than 64"),
        (
            {"message_id": "m", "from": "u", "text": "t", "contact": {"first_name": "A" * 201}},
            "field 'contact.first_name' is longer than 200",
        ),
        ({"message_id": "m\x00", "from": "u", "text": "t"}, "field 'message_id' contains a NUL character"),
        ({"message_id": "m", "from": "u\x00", "text": "t"}, "field 'from' contains a NUL character"),
        (
            {"message_id": "m", "from": "u", "text": "t", "contact": {"last_name": "\x00"}},
            "field 'contact.last_name' contains a NUL character",
        ),
        ({"message_id": "m", "from": "u", "text": "t", "timestamp": 1e300}, "field 'timestamp'"),
        ({"message_id": "m", "from": 15550001111, "text": "t"}, "expected 'str', got 'int' at from"),
        (
            {"message_id": "m", "from": "u", "text": "t", "channel": "x"},
            "unknown field 'channel'; allowed fields are",
        ),
        (
            {"message_id": "m", "from": "u", "text": "t", "contact": {"phone": "1"}},
            "unknown field 'phone' at contact",
        ),
        ({"message_id": "m", "from": "u", "text": "t", "type": "image"}, "text only"),
        (
            {"message_id": "m", "from": "u", "text": "t", "timestamp": 1700000000000},
            "looks like milliseconds",
        ),
        ({"message_id": "m", "from": "u", "text": "t", "timestamp": -5}, "negative"),
        ({"message_id": "m", "from": "u", "text": "t", "timestamp": "-5"}, "negative"),
        (
            {"message_id": "m", "from": "u", "text": "t", "timestamp": "1700000000000"},
            "looks like milliseconds",
        ),
        ({"message_id": "m", "from": "u", "text": "t", "timestamp": "nan"}, "ISO 8601"),
        ({"message_id": "m", "from": "u", "text": "t", "timestamp": ""}, "ISO 8601"),
        ({"message_id": "m", "from": "u", "text": "t", "timestamp": "last tuesday"}, "ISO 8601"),
        ({"message_id": "m", "from": "u", "text": "t", "timestamp": True}, "got 'bool' at timestamp"),
        ([{"message_id": "m"}], "body must be a JSON object"),
    ],
)
def test_generic_format_errors_say_what_is_wrong(payload: object, expected: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_generic(json.dumps(payload).encode(), channel_ref="c")

    assert expected in caught.value.message


def test_generic_malformed_json() -> None:
    with pytest.raises(WireError, match="body is not valid JSON"):
        parse_generic(b'{"message_id": "m",', channel_ref="c")


def test_a_message_that_is_not_an_object_is_invalid() -> None:
    envelope = _envelope(_message())
    envelope["entry"][0]["changes"][0]["value"]["messages"] = ["hello"]

    (invalid,) = parse_webhook(json.dumps(envelope).encode()).invalid

    assert re.search(
        r"expected 'object', got 'str' at entry\[0\]\.changes\[0\]\.value\.messages\[0\]", invalid.reason
    )


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    message=st.dictionaries(
        st.sampled_from(
            ["id", "from", "timestamp", "type", "text", "image", "context", "interactive", "referral"]
        ),
        _json_values,
    )
)
def test_any_message_shape_parses_or_is_a_wire_error(message: dict) -> None:
    """Whatever Meta sends inside `messages`, each message is an item or an invalid item, never an error."""
    try:
        parsed = parse_webhook(json.dumps(_envelope(message)).encode())
    except WireError as exc:  # json.dumps writes Infinity, which is not JSON: the body itself is refused
        assert "not valid JSON" in exc.message
        return
    assert [item.raw for item in parsed.messages] + [item.raw for item in parsed.invalid] == [message]


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=64) | _json_values.map(lambda value: json.dumps(value).encode()))
def test_any_body_parses_or_is_a_wire_error(body: bytes) -> None:
    for parse in (parse_webhook, lambda raw: parse_generic(raw, channel_ref="c")):
        with contextlib.suppress(WireError):
            parse(body)
