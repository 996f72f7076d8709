"""A delivery with one message that cannot be stored stores the rest (issue 14).

Bodies that validated but could not be stored (NaN timestamps, NUL characters, ids or names
longer than their columns) got 503 on every retry, and the good messages of the same WhatsApp
delivery were never stored. Built on Meta's own example payload from ../shared/fixtures.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest

from tests.integration.test_message_path import post_signed, whatsapp_channel
from tests.integration.test_ui_fragments import logged_in
from tests.support.http_peer import HttpPeer
from tests.support.stack import Tenant, create_tenant

pytestmark = pytest.mark.slow

FIXTURE = (
    Path(__file__).parents[2] / ".." / "shared" / "fixtures" / "whatsapp" / "meta_docs_examples"
).resolve()

if not FIXTURE.is_dir():
    pytest.skip(f"shared WhatsApp fixtures not found at {FIXTURE}", allow_module_level=True)


def delivery(phone_number_id: str, *changes: dict) -> tuple[dict, list[str]]:
    """Meta's text message example with three messages: good, changed by `changes`, good."""
    envelope = json.loads((FIXTURE / "text_message.json").read_text())
    value = envelope["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = phone_number_id
    template = value["messages"][0]
    messages = []
    for change in ({}, *changes, {}):
        message = copy.deepcopy(template)
        message["id"] = f"wamid.{uuid.uuid4().hex}"
        for key, new in change.items():
            if key == "profile_name":
                value["contacts"][0]["profile"]["name"] = new
            else:
                message[key] = new
        messages.append(message)
    value["messages"] = messages
    return envelope, [messages[0]["id"], messages[-1]["id"]]


POISONS = {
    "nan timestamp": ({"timestamp": "NaN"}, "is not a number of seconds"),
    "infinite timestamp": ({"timestamp": "1e400"}, "is not a number of seconds"),
    "huge timestamp": ({"timestamp": 1e300}, "looks like milliseconds"),
    "nul in the id": ({"id": "wamid.poison\u0000"}, "the id contains a NUL character"),
    "id longer than its column": ({"id": "wamid." + "x" * 300}, "the id has 306 characters; at most 200 fit"),
    "sender longer than its column": ({"from": "1" * 80}, "the from has 80 characters; at most 64 fit"),
    "nul in the sender": ({"from": "1650\u00005551234"}, "the from contains a NUL character"),
}


@pytest.mark.parametrize("kind", list(POISONS))
async def test_one_poison_message_is_recorded_invalid_and_the_rest_stored(
    tenant: Tenant, graph_api: HttpPeer, db, kind: str
) -> None:
    change, reason = POISONS[kind]
    channel = await whatsapp_channel(tenant, graph_api)
    envelope, good_ids = delivery(channel["phone_number_id"], change)
    for attempt in range(2):  # Meta's retry of the same delivery changes nothing
        answer = await post_signed(tenant, channel["id"], envelope)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["received"] == 2 and body["duplicates"] == 2 * attempt
        (invalid,) = body["invalid"]
        assert reason in invalid["reason"] and "messages[1]" in invalid["reason"]
    stored = await db.fetch(
        "SELECT provider_message_id FROM messages WHERE channel = $1 AND direction = 'in'",
        uuid.UUID(channel["id"]),
    )
    assert sorted(r["provider_message_id"] for r in stored) == sorted(good_ids)
    recorded = await db.fetch(
        "SELECT status, reason, provider_message_id, payload::text AS payload FROM invalid_messages WHERE channel = $1",
        uuid.UUID(channel["id"]),
    )
    assert len(recorded) == 2 and all(r["status"] == "invalid" and reason in r["reason"] for r in recorded)
    assert all(
        len(r["provider_message_id"]) <= 200 and "\x00" not in r["provider_message_id"] for r in recorded
    )


async def test_a_text_with_an_escaped_nul_is_stored(tenant: Tenant, graph_api: HttpPeer, db) -> None:
    """The text '\\u0000' (backslash, u, zeros) made the stored payload invalid JSON: 503 forever."""
    channel = await whatsapp_channel(tenant, graph_api)
    envelope, good_ids = delivery(
        channel["phone_number_id"], {"text": {"body": "a literal \\u0000 and a \u0000"}}
    )
    answer = await post_signed(tenant, channel["id"], envelope)
    assert answer.status_code == 200, answer.text
    assert answer.json()["received"] == 3 and answer.json()["invalid"] == []
    texts = await db.fetch(
        "SELECT text FROM messages WHERE channel = $1 AND direction = 'in' AND provider_message_id <> ALL($2)",
        uuid.UUID(channel["id"]),
        good_ids,
    )
    assert [r["text"] for r in texts] == ["a literal \\u0000 and a "]


async def test_a_profile_name_longer_than_its_column_is_invalid(tenant: Tenant, graph_api: HttpPeer) -> None:
    channel = await whatsapp_channel(tenant, graph_api)
    envelope, _ = delivery(channel["phone_number_id"], {"profile_name": "Sheena " + "N" * 300})
    answer = await post_signed(tenant, channel["id"], envelope)
    assert answer.status_code == 200, answer.text
    # One sender, one profile: every message of the delivery carries the name that cannot be stored.
    assert len(answer.json()["invalid"]) == 3
    assert "last name has 300 characters" in answer.json()["invalid"][0]["reason"]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"message_id": "m" * 201}, "field 'message_id' is longer than 200 characters"),
        ({"from": "1" * 65}, "field 'from' is longer than 64 characters"),
        ({"from": "+1555\u00001"}, "field 'from' contains a NUL character"),
        ({"contact": {"first_name": "A" * 201}}, "field 'contact.first_name' is longer than 200 characters"),
        ({"timestamp": 1e300}, "field 'timestamp'"),
    ],
)
async def test_the_generic_channel_answers_400_with_the_field_at_fault(
    tenant: Tenant, fields: dict, error: str
) -> None:
    from app.services.channels.signatures import sign_sha256

    channel = await tenant.generic_channel()
    payload = {"message_id": uuid.uuid4().hex, "from": "+15550001", "text": "hello", **fields}
    body = json.dumps(payload).encode()
    answer = await tenant.http.post(
        f"/webhooks/generic/{channel['id']}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Switchboard-Signature": sign_sha256(channel["secret"], body),
        },
    )
    assert answer.status_code == 400, answer.text
    assert error in answer.json()["error"]


async def test_refused_messages_are_shown_to_their_workspace_only_in_the_api_and_the_logs(
    tenant: Tenant, graph_api: HttpPeer
) -> None:
    """A refused message is not silent: its owner sees it, with why; another workspace sees nothing."""
    channel = await whatsapp_channel(tenant, graph_api)
    envelope, _ = delivery(channel["phone_number_id"], {"from": "1" * 80})
    assert (await post_signed(tenant, channel["id"], envelope)).status_code == 200

    listed = await tenant.http.get("/api/refused-deliveries")
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert "the from has 80 characters; at most 64 fit" in item["reason"]
    assert item["channel_name"] == "Main number" and item["status"] == "invalid"
    assert item["provider_message_id"].startswith("wamid.")

    stranger = await create_tenant(tenant.stack)
    try:
        theirs = await stranger.http.get("/api/refused-deliveries")
        assert theirs.status_code == 200 and theirs.json()["items"] == []
    finally:
        await stranger.aclose()

    client, _ = await logged_in(tenant)
    try:
        logs = await client.get("/logs")
        assert logs.status_code == 200
        section = logs.text[logs.text.index('id="refused-deliveries"') :]
        assert "Refused messages" in section and "at most 64 fit" in section and "Main number" in section
        bad = await tenant.http.get("/api/refused-deliveries", params={"limit": "-1"})
        assert bad.status_code == 400 and "limit" in bad.text
    finally:
        await client.aclose()
