"""The lean webhook path (app.api.inbound.answer_webhook) answers exactly as the Litestar routes do.

A POST to `/webhooks/{generic,whatsapp}/{channel_id}` takes the lean path. The same URL with a
trailing slash is one the lean path leaves to Litestar, which routes it to the same route
handler: each case is sent to both, and the answers must match (status, every header but the
date, body; for a message stored, the body's shape and its conversation).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.services.channels.signatures import sign_sha256
from tests.support.stack import Tenant
from tests.support.whatsapp import text_envelope

APP_SECRET = "lean-app-secret"
TOO_LARGE = b'{"message_id": "big", "from": "+1555", "text": "' + b"x" * (1024 * 1024 + 10) + b'"}'


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return (
        response.status_code,
        [(k, v) for k, v in response.headers.multi_items() if k != "date"],
        response.content,
    )


async def both(tenant: Tenant, path: str, body: bytes, **kwargs: Any) -> list[httpx.Response]:
    """The request sent to the lean path, then to the Litestar route (trailing slash)."""
    return [await tenant.http.post(url, content=body, **kwargs) for url in (path, path + "/")]


def generic_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Switchboard-Signature": sign_sha256(secret, body)}


def generic_body(**fields: Any) -> bytes:
    return json.dumps(
        {"message_id": uuid.uuid4().hex, "from": "+15557770001", "text": "hi", **fields}
    ).encode()


async def test_generic_refusals_are_the_routes_own(tenant: Tenant, db) -> None:
    channel = await tenant.generic_channel()
    meta = await tenant.create_channel(
        kind="whatsapp", name="Meta", phone_number_id=str(uuid.uuid4().int)[:15],
        access_token="EAAG", app_secret=APP_SECRET, verify_token="v",
    )  # fmt: skip
    url, secret = f"/webhooks/generic/{channel['id']}", channel["secret"]
    good, extra, nul = generic_body(), generic_body(extra=1), generic_body(**{"from": "+1\x00"})
    deep, cut = b"[" * 100_000, b'{"message_id": "m"'
    cases: dict[str, tuple[str, bytes, dict[str, str]]] = {
        "unsigned": (url, good, {"Content-Type": "application/json"}),
        "wrong signature": (url, good, generic_headers("not-the-secret", good)),
        "signature of another body": (url, good, generic_headers(secret, b"{}")),
        "unknown channel": (f"/webhooks/generic/{uuid.uuid4()}", good, generic_headers(secret, good)),
        "not an id": (f"/webhooks/generic/{'x' * 40}", good, generic_headers(secret, good)),
        "a WhatsApp channel": (f"/webhooks/generic/{meta['id']}", good, generic_headers(secret, good)),
        "not JSON": (url, cut, generic_headers(secret, cut)),
        "empty body": (url, b"", generic_headers(secret, b"")),
        "unknown field": (url, extra, generic_headers(secret, extra)),
        "too deep": (url, deep, generic_headers(secret, deep)),
        "NUL in a field": (url, nul, generic_headers(secret, nul)),
        "too large": (url, TOO_LARGE, generic_headers(secret, TOO_LARGE)),
    }
    for case, (path, body, headers) in cases.items():
        lean, routed = await both(tenant, path, body, headers=headers)
        assert answer(lean) == answer(routed), case
        assert 400 <= lean.status_code < 500 and lean.json()["error"], (case, lean.status_code, lean.text)
    stored = await db.fetchval(
        "SELECT count(*) FROM messages WHERE channel = $1::uuid AND direction = 'in'", channel["id"]
    )
    assert stored == 0  # nothing refused was stored, by either path


async def test_a_body_over_the_limit_without_a_length_is_refused_alike(tenant: Tenant) -> None:
    """Chunked (no Content-Length): the limit is found while reading, and Litestar's 413 answers it."""
    channel = await tenant.generic_channel()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(TOO_LARGE), 64 * 1024):
            yield TOO_LARGE[start : start + 64 * 1024]

    url = f"/webhooks/generic/{channel['id']}"
    answers = [
        await tenant.http.post(u, content=chunks(), headers=generic_headers(channel["secret"], TOO_LARGE))
        for u in (url, url + "/")
    ]
    assert answer(answers[0]) == answer(answers[1])
    assert answers[0].status_code == 413


async def test_stored_messages_are_answered_alike(tenant: Tenant) -> None:
    channel = await tenant.generic_channel()
    url, secret = f"/webhooks/generic/{channel['id']}", channel["secret"]
    first, second = generic_body(), generic_body()
    lean = await tenant.http.post(url, content=first, headers=generic_headers(secret, first))
    routed = await tenant.http.post(url + "/", content=second, headers=generic_headers(secret, second))
    assert answer(lean)[:2] == answer(routed)[:2]  # status and headers; the ids in the bodies differ
    assert lean.json().keys() == routed.json().keys()
    assert lean.json()["received"] == routed.json()["received"] == 1
    assert lean.json()["conversation_id"] == routed.json()["conversation_id"]  # one sender, one conversation
    # A redelivery, to either path: a duplicate, answered the same way.
    again = await both(tenant, url, first, headers=generic_headers(secret, first))
    assert answer(again[0]) == answer(again[1])
    assert again[0].json() == {
        "received": 0,
        "duplicate": True,
        "message_id": None,
        "conversation_id": lean.json()["conversation_id"],
    }


async def test_a_local_console_channel_needs_no_signature_on_either_path(tenant: Tenant) -> None:
    console = await tenant.create_channel(kind="console", name="Try it")
    url = f"/webhooks/generic/{console['id']}"
    answers = [await tenant.http.post(u, content=generic_body()) for u in (url, url + "/")]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["conversation_id"] == answers[1].json()["conversation_id"]


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
async def test_an_unsigned_console_message_relayed_by_a_proxy_is_refused_on_either_path(
    tenant: Tenant, header: str
) -> None:
    """A reverse proxy on the same host makes every request come from 127.0.0.1: its forwarding header
    says the sender is elsewhere, so the loopback exception does not apply."""
    console = await tenant.create_channel(kind="console", name="Behind a proxy")
    url = f"/webhooks/generic/{console['id']}"
    value = "for=203.0.113.9" if header == "Forwarded" else "203.0.113.9"
    answers = [
        await tenant.http.post(u, content=generic_body(), headers={header: value}) for u in (url, url + "/")
    ]
    assert [a.status_code for a in answers] == [401, 401]
    assert answer(answers[0]) == answer(answers[1])
    assert "not through a proxy" in answers[0].json()["error"], answers[0].text


async def test_whatsapp_answers_alike(tenant: Tenant) -> None:
    pnid = str(uuid.uuid4().int)[:15]
    meta = await tenant.create_channel(
        kind="whatsapp", name="Meta", phone_number_id=pnid, access_token="EAAG",
        app_secret=APP_SECRET, verify_token="v",
    )  # fmt: skip
    url = f"/webhooks/whatsapp/{meta['id']}"

    def signed(payload: dict[str, Any], secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload).encode()
        return body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign_sha256(secret, body)}

    one_invalid = text_envelope(phone_number_id=pnid, sender="15557770002", text="hi")
    del one_invalid["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
    for case, (body, headers) in {
        "wrong signature": signed(text_envelope(phone_number_id=pnid, sender="1555", text="hi"), "nope"),
        "not JSON": (b"{", signed({})[1] | {"X-Hub-Signature-256": sign_sha256(APP_SECRET, b"{")}),
        "an invalid message, recorded": signed(one_invalid),
        "no messages": signed({"object": "whatsapp_business_account", "entry": []}),
    }.items():
        lean, routed = await both(tenant, url, body, headers=headers)
        assert answer(lean) == answer(routed), case
        if case == "an invalid message, recorded":
            assert lean.status_code == 200 and lean.json()["invalid"], lean.text
        elif case == "no messages":
            assert lean.status_code == 200 and lean.json()["received"] == 0, lean.text
        else:
            assert 400 <= lean.status_code < 500 and lean.json()["error"], (case, lean.text)
    for path in (url, url + "/"):
        body, headers = signed(text_envelope(phone_number_id=pnid, sender="15557770003", text="hi"))
        stored = await tenant.http.post(path, content=body, headers=headers)
        assert stored.status_code == 200
        assert stored.json() == {
            "received": 1,
            "duplicates": 0,
            "statuses": 0,
            "invalid": [],
            "invalid_statuses": [],
        }


async def test_a_message_that_cannot_be_stored_is_answered_503_alike(tenant: Tenant, db) -> None:
    """A storage failure after the checks passed is answered by the app's handler (503, Retry-After)."""
    channel = await tenant.generic_channel()
    url, secret = f"/webhooks/generic/{channel['id']}", channel["secret"]
    refused_text = f"refused-{uuid.uuid4().hex}"
    await db.execute(
        f"ALTER TABLE messages ADD CONSTRAINT lean_refuses CHECK (text IS DISTINCT FROM '{refused_text}') NOT VALID"
    )
    try:
        answers = []
        for path in (url, url + "/"):
            body = generic_body(text=refused_text)
            answers.append(await tenant.http.post(path, content=body, headers=generic_headers(secret, body)))
    finally:
        await db.execute("ALTER TABLE messages DROP CONSTRAINT lean_refuses")
    assert answer(answers[0]) == answer(answers[1])
    assert answers[0].status_code == 503
    assert answers[0].headers["Retry-After"] == "5"
    assert "redeliver" in answers[0].json()["error"]
