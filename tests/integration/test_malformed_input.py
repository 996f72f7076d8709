"""Malformed input of every kind gets a 4xx with a reason, never a 500 (issue 14).

Named cases first (each one answered 500 before), then a hypothesis run that posts random
and mutated bodies to every webhook and API route.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.services.channels.signatures import sign_sha256
from tests.integration.test_editor_refusals import logged_in
from tests.support.stack import Tenant

pytestmark = pytest.mark.slow

DEEP = ("[" * 100_000 + "]" * 100_000).encode()
DEEP_OBJECT = ('{"a":' * 50_000 + "1" + "}" * 50_000).encode()
NOT_UTF8 = b'{"message_id": "m", "from": "\xff\xfe", "text": "\xc3\x28"}'

FLOW = {
    "schema": "switchboard.flow/v1",
    "name": "Malformed",
    "nodes": [
        {"id": "t", "type": "when.message_received", "config": {"match": {"kind": "any"}}},
        {"id": "s", "type": "action.send_message", "config": {"text": "hi"}},
    ],
    "edges": [{"from": "t", "to": "s"}],
}


def assert_refused(answer: httpx.Response, *codes: int) -> None:
    assert answer.status_code in (codes or (400, 413, 422)), (
        answer.request.url,
        answer.status_code,
        answer.text[:300],
    )
    body = answer.json()
    assert isinstance(body.get("error"), str) and body["error"], body


async def signed_generic(tenant: Tenant, channel: dict, body: bytes) -> httpx.Response:
    return await tenant.http.post(
        f"/webhooks/generic/{channel['id']}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Switchboard-Signature": sign_sha256(channel["secret"], body),
        },
    )


async def signed_whatsapp(tenant: Tenant, channel: dict, body: bytes) -> httpx.Response:
    return await tenant.http.post(
        f"/webhooks/whatsapp/{channel['id']}",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign_sha256("app-secret", body)},
    )


async def whatsapp(tenant: Tenant) -> dict:
    return await tenant.create_channel(
        kind="whatsapp",
        name="Main",
        phone_number_id=str(uuid.uuid4().int)[:15],
        access_token="EAAG",
        app_secret="app-secret",
        verify_token="verify-me",
    )


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, NOT_UTF8], ids=["deep-list", "deep-object", "not-utf8"])
async def test_webhooks_refuse_bodies_that_do_not_parse(tenant: Tenant, body: bytes) -> None:
    assert_refused(await signed_generic(tenant, await tenant.generic_channel(), body), 400)
    assert_refused(await signed_whatsapp(tenant, await whatsapp(tenant), body), 400)


async def test_invalid_utf8_inside_one_whatsapp_message_is_that_message_invalid(tenant: Tenant) -> None:
    """Found by the fuzz test below: Meta's envelope keeps messages raw, so bad UTF-8 surfaced late (500)."""
    channel = await whatsapp(tenant)
    message = {
        "from": "1555",
        "id": "wamid.u",
        "timestamp": "1700000000",
        "type": "text",
        "text": {"body": "MARK"},
    }
    value = {"metadata": {"phone_number_id": channel["phone_number_id"]}, "messages": [message]}
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    answer = await signed_whatsapp(
        tenant, channel, json.dumps(envelope).encode().replace(b"MARK", b"\xc3\x28")
    )
    assert answer.status_code == 200, answer.text
    assert "Invalid UTF-8" in answer.json()["invalid"][0]["reason"]


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, NOT_UTF8], ids=["deep-list", "deep-object", "not-utf8"])
async def test_the_api_refuses_bodies_that_do_not_parse(tenant: Tenant, body: bytes) -> None:
    flow = await tenant.create_flow(FLOW)
    headers = {"Content-Type": "application/json"}
    for method, path in [
        ("POST", "/api/flows"),
        ("POST", "/api/flows/validate"),
        ("POST", "/api/flows/import"),
        ("PUT", f"/api/flows/{flow['id']}"),
        ("POST", "/api/tester/run"),
        ("POST", "/api/channels"),
        ("POST", "/api/corrections"),
        ("POST", f"/api/flows/{flow['id']}/rollback"),
    ]:
        answer = await tenant.http.request(method, path, content=body, headers=headers)
        if path == "/api/flows/validate" and answer.status_code == 200:
            assert answer.json()["valid"] is False  # validation reports the problem
            continue
        assert_refused(answer)


async def test_import_refuses_secrets_of_the_wrong_type(tenant: Tenant) -> None:
    for secrets in ("a string", [1, 2], {"name": 5}, {"name": None}):
        answer = await tenant.http.post("/api/flows/import", json={"flows": [FLOW], "secrets": secrets})
        assert_refused(answer)
        assert "secrets" in answer.json()["error"]


@pytest.mark.parametrize("priority", [2**31, -(2**31) - 1, 10**30])
async def test_a_priority_outside_the_column_is_refused(tenant: Tenant, priority: int) -> None:
    answer = await tenant.http.post("/api/flows", json={**FLOW, "priority": priority})
    assert_refused(answer, 422)
    assert "priority" in json.dumps(answer.json())


async def test_a_conversation_status_longer_than_its_column_is_refused(tenant: Tenant) -> None:
    channel = await tenant.generic_channel()
    sent = await tenant.send_generic(channel, text="hello")
    conversation_id = sent.json()["conversation_id"]
    answer = await tenant.http.patch(f"/api/conversations/{conversation_id}", json={"status": "s" * 41})
    assert_refused(answer)
    assert "status" in answer.json()["error"]


@pytest.mark.parametrize("query", ["limit=-1", "offset=-5", "limit=0", "limit=99999999999999999999"])
async def test_list_endpoints_refuse_bad_limits(tenant: Tenant, query: str) -> None:
    flow = await tenant.create_flow(FLOW)
    paths = ["/api/conversations", "/api/runs", f"/api/actions/{flow['id']}/t/logs"]
    if query.startswith("limit"):
        paths.append("/api/corrections")  # the correction log has a limit and no offset
    for path in paths:
        answer = await tenant.http.get(f"{path}?{query}")
        assert_refused(answer, 400)


async def test_the_tester_batch_refuses_a_deep_json_line(tenant: Tenant) -> None:
    client, csrf = await logged_in(tenant)
    try:
        flow = await tenant.create_flow(FLOW)
        answer = await client.post(
            "/tester/batch",
            data={"flow_id": flow["id"], "_csrf": csrf},
            files={"file": ("cases.jsonl", b'{"text": ' + DEEP + b"}\n", "application/json")},
            headers={"HX-Request": "true"},
        )
    finally:
        await client.aclose()
    assert answer.status_code in (200, 400, 422), answer.text[:300]
    assert "Internal" not in answer.text


async def test_browser_pages_answer_malformed_forms_with_an_html_page(tenant: Tenant) -> None:
    client, csrf = await logged_in(tenant)
    try:
        answer = await client.post(
            "/flows/import",
            data={"_csrf": csrf},
            files={"files": ("deep.flow.json", DEEP, "application/json")},
            headers={"Accept": "text/html"},
        )
    finally:
        await client.aclose()
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])


# --- fuzz ------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


_HOSTILE = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "x" * 70_000,
        "\ud800",
        2**70,
        -(2**63) - 1,
        1e308,
        -0.0,
        [],
        {},
        None,
        True,
        "../../etc/passwd",
        "{{ contact.items }}",
        "%00",
        "\u202e",
    ]
)


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [path, *(p for k, v in value.items() for p in _leaves(v, (*path, k)))]
    if isinstance(value, list):
        return [path, *(p for i, v in enumerate(value) for p in _leaves(v, (*path, i)))]
    return [path]


def _hostile(base: bytes, data: st.DataObject) -> bytes:
    """The valid body with one value (or a new key) replaced by something hostile."""
    document = json.loads(base)
    path = data.draw(st.sampled_from(_leaves(document)))
    value = data.draw(_HOSTILE)
    if not path:
        return json.dumps(value).encode()
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return json.dumps(document).encode("utf-8", "surrogatepass")


def _mutate(base: bytes, data: st.DataObject) -> bytes:
    body = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        if not body:
            break
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.integers(0, 255))
    return bytes(body)


async def _routes(tenant: Tenant) -> list[tuple[str, str, bytes | None, str]]:
    """(method, path, a valid body to mutate, signing) for every webhook and API route."""
    generic = await tenant.generic_channel()
    meta = await whatsapp(tenant)
    flow = await tenant.create_flow(FLOW)
    sent = await tenant.send_generic(generic, text="hello")
    conversation = sent.json()["conversation_id"]
    meta_body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "metadata": {"phone_number_id": meta["phone_number_id"]},
                                "messages": [
                                    {
                                        "from": "1555",
                                        "id": "wamid.f",
                                        "timestamp": "1700000000",
                                        "type": "text",
                                        "text": {"body": "x"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()
    generic_body = json.dumps({"message_id": "m1", "from": "+1555", "text": "hi"}).encode()
    document = json.dumps(FLOW).encode()
    return [
        ("POST", f"/webhooks/generic/{generic['id']}", generic_body, f"generic:{generic['secret']}"),
        ("POST", f"/webhooks/whatsapp/{meta['id']}", meta_body, "whatsapp:app-secret"),
        (
            "GET",
            f"/webhooks/whatsapp/{meta['id']}?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1",
            None,
            "",
        ),
        ("POST", "/api/channels", json.dumps({"kind": "generic", "name": "f", "secret": "s"}).encode(), ""),
        ("POST", "/api/flows", document, ""),
        ("POST", "/api/flows/validate", document, ""),
        ("POST", "/api/flows/import", document, ""),
        ("PUT", f"/api/flows/{flow['id']}", document, ""),
        ("POST", f"/api/flows/{flow['id']}/status", b'{"status": "paused"}', ""),
        ("POST", f"/api/flows/{flow['id']}/rollback", b'{"version": 1}', ""),
        ("POST", "/api/tester/run", b'{"message": "hello"}', ""),
        (
            "POST",
            "/api/corrections",
            json.dumps({"flow_id": flow["id"], "text": "x", "node_id": "t"}).encode(),
            "",
        ),
        ("PATCH", f"/api/conversations/{conversation}", b'{"status": "closed"}', ""),
        ("PUT", f"/api/conversations/{conversation}/ai", b'{"ai_enabled": false}', ""),
        ("POST", f"/api/conversations/{conversation}/messages", b'{"text": "hi"}', ""),
        ("GET", "/api/conversations?limit=5", None, ""),
        ("GET", "/api/runs?limit=5", None, ""),
        ("GET", f"/api/actions/{flow['id']}/t/logs", None, ""),
    ]


def _sign(body: bytes, signing: str) -> dict[str, str]:
    if not signing:
        return {}
    kind, secret = signing.split(":", 1)
    header = "X-Switchboard-Signature" if kind == "generic" else "X-Hub-Signature-256"
    return {header: sign_sha256(secret, body)}


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(data=st.data())
async def test_fuzz_every_route_never_answers_5xx(tenant: Tenant, data: st.DataObject) -> None:
    routes = await _cached_routes(tenant)
    method, path, base, signing = data.draw(st.sampled_from(routes), label="route")
    kind = data.draw(st.sampled_from(["json", "mutated", "hostile", "bytes", "query"]), label="kind")
    if kind == "query" or base is None:
        key = data.draw(st.sampled_from(["limit", "offset", "status", "since", "flow_id", "hub.challenge"]))
        value = data.draw(st.text(max_size=30) | st.integers().map(str))
        answer = await tenant.http.request(method, path, params={key: value}, content=base)
    else:
        if kind == "json":
            body = json.dumps(data.draw(_json)).encode()
        elif kind == "mutated":
            body = _mutate(base, data)
        elif kind == "hostile":
            body = _hostile(base, data)
        else:
            body = data.draw(st.binary(max_size=200))
        headers = {"Content-Type": "application/json", **_sign(body, signing)}
        answer = await tenant.http.request(method, path, content=body, headers=headers)
    assert answer.status_code < 500, (method, path, answer.status_code, answer.text[:300])


_ROUTES: dict[str, list] = {}


async def _cached_routes(tenant: Tenant) -> list[tuple[str, str, bytes | None, str]]:
    """The routes of the first tenant the fuzz test met (hypothesis calls it many times, one fixture)."""
    if tenant.workspace_id not in _ROUTES:
        _ROUTES[tenant.workspace_id] = await _routes(tenant)
    return _ROUTES[tenant.workspace_id]
