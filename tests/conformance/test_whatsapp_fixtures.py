"""Conformance of the WhatsApp wire format against real payloads in ../shared/fixtures/whatsapp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.services.channels.items import MEDIA_TYPES, MessageType
from app.services.channels.signatures import sign_sha256, verify_sha256
from app.services.channels.whatsapp_wire import build_text_message, parse_send_response, parse_webhook

FIXTURES = (Path(__file__).parents[2] / ".." / "shared" / "fixtures" / "whatsapp").resolve()

if not FIXTURES.is_dir():
    pytest.skip(
        f"shared WhatsApp fixtures not found at {FIXTURES} (CI provides ../shared/fixtures)",
        allow_module_level=True,
    )


def _envelopes() -> list:
    """Every webhook envelope: one per meta_docs_examples file, one per named entry of a pywa file."""
    params = []
    for path in sorted((FIXTURES / "meta_docs_examples").glob("*.json")):
        params.append(pytest.param(path.read_bytes(), id=f"meta/{path.stem}"))
    for path in sorted((FIXTURES / "pywa_fixtures").glob("*.json")):
        for name, envelope in json.loads(path.read_text()).items():
            params.append(pytest.param(json.dumps(envelope).encode(), id=f"pywa/{path.stem}/{name}"))
    return params


def _outbound() -> list:
    return [
        pytest.param(json.loads(path.read_text()), id=path.stem)
        for path in sorted((FIXTURES / "outbound_send_message").glob("*.json"))
    ]


ENVELOPES = _envelopes()


def _values(body: bytes):
    for entry in json.loads(body)["entry"]:
        for change in entry["changes"]:
            yield change["value"]


def _expect_content(message: dict, item) -> None:
    """Assert the normalised type/text/ids match what the raw message says."""
    kind = message.get("type")
    if kind == "text":
        assert item.type == MessageType.TEXT
        assert item.text == message["text"]["body"]
    elif kind == "interactive":
        assert item.type == MessageType.INTERACTIVE
        reply = (message.get("interactive") or {}).get("button_reply") or (
            message.get("interactive") or {}
        ).get("list_reply")
        if reply:
            assert item.text == reply["title"]
            assert item.reply_id == reply["id"]
        else:
            assert item.text.startswith("[interactive")
    elif kind == "button":
        assert item.type == MessageType.BUTTON
        assert item.text == message["button"]["text"]
        assert item.reply_id == message["button"]["payload"]
    elif kind in MEDIA_TYPES:
        media = message[kind]
        assert item.type == kind
        assert item.media_id == media["id"]
        assert item.mime_type == media["mime_type"]
        if media.get("caption"):
            assert item.text == media["caption"]
        else:
            assert item.text.startswith("[") and item.text.endswith("]")
    elif kind == "location":
        assert item.type == MessageType.LOCATION
        location = message["location"]
        if location.get("name"):
            assert location["name"] in item.text and location["address"] in item.text
        else:
            assert item.text == f"[location: {location['latitude']}, {location['longitude']}]"
    elif kind == "contacts":
        assert item.type == MessageType.CONTACTS
        for card in message["contacts"]:
            assert card["name"]["formatted_name"] in item.text
    elif kind == "reaction":
        assert item.type == MessageType.REACTION
        assert item.text == (message["reaction"].get("emoji") or "[reaction removed]")
        assert item.context_message_id == message["reaction"]["message_id"]
    elif kind == "order":
        assert item.type == MessageType.ORDER
        for product in message["order"]["product_items"]:
            assert f"{product['product_retailer_id']} x{product['quantity']}" in item.text
    elif kind == "system":
        assert item.type == MessageType.SYSTEM
        assert item.text == message["system"]["body"]
    elif kind == "edit":
        inner = message["edit"]["message"]
        assert item.type == MessageType.EDIT
        assert item.original_message_id == message["edit"]["original_message_id"]
        inner_kind = inner["type"]
        assert item.media_id == inner[inner_kind]["id"]
        assert item.text == inner[inner_kind]["caption"]
    elif kind == "revoke":
        assert item.type == MessageType.REVOKE
        assert item.original_message_id == message["revoke"]["original_message_id"]
        assert item.text == "[message deleted]"
    else:
        assert item.type == MessageType.UNSUPPORTED
        assert item.text.startswith("[unsupported")


@pytest.mark.parametrize("body", ENVELOPES)
def test_every_message_is_normalised_as_its_type_says(body: bytes) -> None:
    parsed = parse_webhook(body)

    raw_messages = [(value, message) for value in _values(body) for message in value.get("messages", [])]
    assert len(parsed.messages) == len(raw_messages)
    for (value, message), item in zip(raw_messages, parsed.messages):
        assert item.provider_message_id == message["id"]
        assert item.from_phone == message["from"]
        assert item.phone_number_id == value["metadata"]["phone_number_id"]
        assert item.timestamp == float(message["timestamp"])
        assert item.raw == message
        assert item.referral == message.get("referral")
        if "context" in message and "id" in message["context"]:
            assert item.context_message_id == message["context"]["id"]
        names = {c["wa_id"]: c["profile"]["name"] for c in value.get("contacts", [])}
        assert item.contact_name == names.get(message["from"], "")
        _expect_content(message, item)


@pytest.mark.parametrize("body", ENVELOPES)
def test_every_status_is_parsed(body: bytes) -> None:
    parsed = parse_webhook(body)

    raw_statuses = [(value, status) for value in _values(body) for status in value.get("statuses", [])]
    assert len(parsed.statuses) == len(raw_statuses)
    for (value, status), item in zip(raw_statuses, parsed.statuses):
        assert item.provider_message_id == status["id"]
        assert item.status == status["status"]
        assert item.timestamp == float(status["timestamp"])
        assert item.recipient_id == status["recipient_id"]
        assert item.phone_number_id == value["metadata"]["phone_number_id"]
        assert [e.code for e in item.errors] == [e["code"] for e in status.get("errors", [])]
        assert [e.details for e in item.errors] == [
            e["error_data"]["details"] for e in status.get("errors", [])
        ]
        assert (item.conversation is None) == ("conversation" not in status)
        if item.conversation is not None:
            assert item.conversation.id == status["conversation"]["id"]
            assert item.conversation.origin_type == status["conversation"]["origin"]["type"]
        assert (item.pricing is None) == ("pricing" not in status)
        if item.pricing is not None:
            assert item.pricing.category == status["pricing"]["category"]


def test_fixtures_cover_every_message_type_and_status() -> None:
    types, statuses, referrals = set(), set(), 0
    for param in ENVELOPES:
        parsed = parse_webhook(param.values[0])
        types |= {item.type for item in parsed.messages}
        statuses |= {item.status for item in parsed.statuses}
        referrals += sum(item.referral is not None for item in parsed.messages)

    assert types == {kind.value for kind in MessageType}
    assert statuses == {"sent", "delivered", "read", "played", "failed"}
    assert referrals == 2


def test_value_level_errors_are_reported() -> None:
    envelopes = json.loads((FIXTURES / "pywa_fixtures" / "message.json").read_text())

    parsed = parse_webhook(json.dumps(envelopes["interactive_message_with_err"]).encode())

    assert [(e.code, e.details) for e in parsed.errors] == [(131000, "Unsupported webhook payload")]


@pytest.fixture(scope="module")
def vector() -> dict:
    return json.loads((FIXTURES / "x_hub_signature_256_vector.json").read_text())


def test_signature_vector_verifies(vector: dict) -> None:
    body = vector["raw_body_utf8"].encode()

    assert sign_sha256(vector["app_secret"], body) == vector["x_hub_signature_256"]
    assert verify_sha256(vector["app_secret"], body, vector["x_hub_signature_256"])
    assert parse_webhook(body).messages[0].text == "Hey there! I am using PyWa."


def test_signature_vector_refuses_a_tampered_body(vector: dict) -> None:
    body = bytearray(vector["raw_body_utf8"].encode())
    body[len(body) // 2] ^= 0x01

    assert not verify_sha256(vector["app_secret"], bytes(body), vector["x_hub_signature_256"])


def test_signature_vector_refuses_a_wrong_secret(vector: dict) -> None:
    body = vector["raw_body_utf8"].encode()
    wrong = vector["app_secret"][:-1] + ("0" if vector["app_secret"][-1] != "0" else "1")

    assert not verify_sha256(wrong, body, vector["x_hub_signature_256"])


def test_text_request_body_matches_the_documented_request() -> None:
    documented = json.loads((FIXTURES / "outbound_send_message" / "message_text.json").read_text())
    expected = documented["example_request"]["json_body"]

    body = build_text_message(
        expected["to"], expected["text"]["body"], preview_url=expected["text"]["preview_url"]
    )

    assert json.loads(body) == expected


@pytest.mark.parametrize("documented", _outbound())
def test_send_response_yields_the_documented_wamid(documented: dict) -> None:
    response = documented["example_response"]

    assert parse_send_response(json.dumps(response).encode()) == response["messages"][0]["id"]
