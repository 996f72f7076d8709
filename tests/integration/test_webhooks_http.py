"""The webhook client against a real HTTP server on 127.0.0.1: guard, retries signals, caps, auth, templating."""

from __future__ import annotations

import email.utils
import ipaddress
import random
import time
from typing import Any

import msgspec
import pytest

from app.http.client import WebhookClient
from app.http.guard import BlockedURLError, check_url
from app.http.request import (
    AuthType,
    HttpMethod,
    URLTemplateError,
    WebhookRequest,
    apply_auth,
    build_url,
    mask_secrets,
    prepare_request,
)
from app.http.retry import AttemptStatus, backoff_seconds, parse_retry_after
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse

LOOPBACK_ONLY = (ipaddress.ip_network("127.0.0.1/32"),)
SECRET = "sk_live_5ecret-value-42"


@pytest.fixture
async def client():
    async with WebhookClient() as webhook_client:
        yield webhook_client


@pytest.fixture
async def guarded_client():
    """allow_private off, but the test server's 127.0.0.1 opened as an operator allow-list would."""
    async with WebhookClient(allowed_networks=LOOPBACK_ONLY) as webhook_client:
        yield webhook_client


def hook(url: str, **options: Any) -> WebhookRequest:
    return WebhookRequest(url=url, idempotency_key=options.pop("idempotency_key", "exec-1"), **options)


# ---------------------------------------------------------------- responses


async def test_json_response_is_parsed_and_request_carries_headers(
    http_peer: HttpPeer, client: WebhookClient
):
    http_peer.reply("POST", "/orders", PeerResponse.json({"order_id": "A-17", "total": 12.5}, status=201))

    result = await client.attempt(
        hook(http_peer.url("/orders"), json_body={"sku": "X1", "qty": 2}, idempotency_key="exec-42"),
        allow_private=True,
    )

    assert result.status is AttemptStatus.SUCCESS
    assert result.status_code == 201
    assert result.response == {"order_id": "A-17", "total": 12.5}
    assert result.retryable is False
    [received] = http_peer.requests
    assert received.json() == {"sku": "X1", "qty": 2}
    assert received.headers["idempotency-key"] == "exec-42"
    assert received.headers["user-agent"].startswith("Switchboard/")
    assert received.headers["content-type"] == "application/json"


async def test_json_without_json_content_type_is_still_parsed(http_peer: HttpPeer, client: WebhookClient):
    http_peer.reply("POST", "/x", PeerResponse(body=b'{"ok": true}', headers={"Content-Type": "text/plain"}))

    result = await client.attempt(hook(http_peer.url("/x")), allow_private=True)

    assert result.response == {"ok": True}


async def test_non_json_body_is_returned_as_text(http_peer: HttpPeer, client: WebhookClient):
    http_peer.reply("POST", "/hook", PeerResponse.text("thanks, queued"))

    result = await client.attempt(hook(http_peer.url("/hook"), json_body={}), allow_private=True)

    assert result.status is AttemptStatus.SUCCESS
    assert result.response == "thanks, queued"
    assert result.response_text == "thanks, queued"


async def test_huge_body_is_read_only_up_to_the_cap(http_peer: HttpPeer, client: WebhookClient):
    http_peer.reply("GET", "/big", PeerResponse.json({"blob": "x" * (1024 * 1024)}))

    result = await client.attempt(
        hook(http_peer.url("/big"), method=HttpMethod.GET), allow_private=True, max_response_bytes=4096
    )

    assert result.status is AttemptStatus.SUCCESS
    assert result.truncated is True
    assert isinstance(result.response, str)
    assert len(result.response.encode()) == 4096


async def test_body_exactly_at_the_cap_is_not_truncated(http_peer: HttpPeer, client: WebhookClient):
    http_peer.reply("GET", "/exact", PeerResponse(body=b"y" * 1000))

    result = await client.attempt(
        hook(http_peer.url("/exact"), method="GET"), allow_private=True, max_response_bytes=1000
    )

    assert result.truncated is False
    assert result.response == "y" * 1000


async def test_keep_alive_connection_is_reused(http_peer: HttpPeer, client: WebhookClient):
    http_peer.reply("POST", "/hook", PeerResponse.json({"ok": True}))

    for _ in range(5):
        result = await client.attempt(hook(http_peer.url("/hook"), json_body={}), allow_private=True)
        assert result.succeeded

    assert http_peer.connections_accepted == 1
    assert len(http_peer.requests) == 5


async def test_cookies_set_by_one_endpoint_are_never_sent_back(http_peer: HttpPeer, client: WebhookClient):
    http_peer.reply(
        "POST", "/login", PeerResponse.json({"ok": True}, headers={"Set-Cookie": "session=tenant-a; Path=/"})
    )
    http_peer.route("POST", "/other", _ok)

    await client.attempt(hook(http_peer.url("/login"), json_body={}), allow_private=True)
    await client.attempt(hook(http_peer.url("/other"), json_body={}), allow_private=True)

    assert "cookie" not in http_peer.requests_to("/other")[0].headers


# ---------------------------------------------------------------- failure classes


async def test_slow_server_is_a_retryable_timeout(http_peer: HttpPeer, client: WebhookClient):
    http_peer.reply("POST", "/slow", PeerResponse(delay_s=30.0, body=b"{}"))

    result = await client.attempt(
        hook(http_peer.url("/slow"), json_body={}, timeout_seconds=0.3), allow_private=True
    )

    assert result.status is AttemptStatus.TIMEOUT
    assert result.status_code is None
    assert result.retryable is True
    assert "timed out" in (result.error or "")


async def test_flaky_server_gets_the_same_idempotency_key_on_the_retry(
    http_peer: HttpPeer, client: WebhookClient
):
    http_peer.sequence(
        "POST",
        "/flaky",
        [PeerResponse.text("boom", status=500), PeerResponse.json({"order_id": "B-2"})],
    )
    request = hook(http_peer.url("/flaky"), json_body={"n": 1}, idempotency_key="run-7:flow-1:n5")

    first = await client.attempt(request, allow_private=True)
    second = await client.attempt(request, allow_private=True)

    assert (first.status, first.status_code, first.retryable) == (AttemptStatus.FAILED, 500, True)
    assert second.status is AttemptStatus.SUCCESS
    assert second.response == {"order_id": "B-2"}
    keys = [r.headers["idempotency-key"] for r in http_peer.requests_to("/flaky")]
    assert keys == ["run-7:flow-1:n5", "run-7:flow-1:n5"]


@pytest.mark.parametrize(
    ("status_code", "retryable"),
    [
        (400, False),
        (401, False),
        (404, False),
        (422, False),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
    ],
)
async def test_status_codes_are_classified(
    http_peer: HttpPeer, client: WebhookClient, status_code: int, retryable: bool
):
    http_peer.reply("POST", "/s", PeerResponse.json({"error": "nope"}, status=status_code))

    result = await client.attempt(hook(http_peer.url("/s"), json_body={}), allow_private=True)

    assert result.status is AttemptStatus.FAILED
    assert result.status_code == status_code
    assert result.retryable is retryable
    assert result.response == {"error": "nope"}
    assert len(http_peer.requests) == 1


async def test_429_retry_after_seconds_is_parsed_and_backoff_honours_it(
    http_peer: HttpPeer, client: WebhookClient
):
    http_peer.reply(
        "POST", "/limited", PeerResponse.text("slow down", status=429, headers={"Retry-After": "7"})
    )

    result = await client.attempt(hook(http_peer.url("/limited"), json_body={}), allow_private=True)

    assert result.retryable is True
    assert result.retry_after_seconds == 7.0
    delays = [
        backoff_seconds(
            1, base_s=1.0, retry_after_s=result.retry_after_seconds, cap_s=60.0, rng=random.Random(seed)
        )
        for seed in range(50)
    ]
    assert min(delays) >= 7.0


async def test_retry_after_http_date_is_parsed(http_peer: HttpPeer, client: WebhookClient):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    http_peer.reply("POST", "/busy", PeerResponse.text("busy", status=503, headers={"Retry-After": when}))

    result = await client.attempt(hook(http_peer.url("/busy"), json_body={}), allow_private=True)

    assert result.retry_after_seconds is not None
    assert 60.0 <= result.retry_after_seconds <= 120.0


async def test_retry_after_is_capped(http_peer: HttpPeer):
    http_peer.reply("POST", "/busy", PeerResponse.text("busy", status=429, headers={"Retry-After": "86400"}))

    async with WebhookClient(retry_after_cap_seconds=30.0) as capped:
        result = await capped.attempt(hook(http_peer.url("/busy"), json_body={}), allow_private=True)

    assert result.retry_after_seconds == 30.0


async def test_connection_refused_is_retryable(client: WebhookClient):
    async with HttpPeer() as gone:
        url = gone.url("/hook")

    result = await client.attempt(hook(url, json_body={}), allow_private=True)

    assert result.status is AttemptStatus.FAILED
    assert result.status_code is None
    assert result.retryable is True
    assert "connection failed" in (result.error or "")


# ---------------------------------------------------------------- address guard


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://172.16.5.4/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://2130706433/hook",
    ],
)
async def test_private_addresses_are_refused_with_the_flag_off(client: WebhookClient, url: str):
    result = await client.attempt(hook(url, json_body={}, timeout_seconds=2.0), allow_private=False)

    assert result.status is AttemptStatus.FAILED
    assert result.retryable is False
    assert (result.error or "").startswith("blocked:")


async def test_loopback_peer_is_refused_before_any_connection(http_peer: HttpPeer, client: WebhookClient):
    http_peer.reply("POST", "/hook", PeerResponse.json({"ok": True}))

    result = await client.attempt(hook(http_peer.url("/hook"), json_body={}), allow_private=False)

    assert (result.error or "").startswith("blocked:")
    assert "loopback" in (result.error or "")
    assert http_peer.connections_accepted == 0
    assert http_peer.requests == []


async def test_metadata_address_is_named_in_the_refusal(client: WebhookClient):
    result = await client.attempt(hook("http://169.254.169.254/latest/meta-data/iam"), allow_private=False)

    assert "metadata" in (result.error or "")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://example.com/", "ws://example.com/"]
)
async def test_only_http_and_https_are_allowed(client: WebhookClient, url: str):
    for allow_private in (False, True):
        result = await client.attempt(hook(url), allow_private=allow_private)
        assert (result.error or "").startswith("blocked: only http and https")
        assert result.retryable is False


async def test_credentials_in_the_url_are_refused(http_peer: HttpPeer, client: WebhookClient):
    url = http_peer.url("/hook").replace("http://", "http://user:pw@")

    result = await client.attempt(hook(url), allow_private=True)

    assert "credentials" in (result.error or "")
    assert http_peer.requests == []


async def test_a_name_with_any_private_record_is_refused():
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.2.3"]

    with pytest.raises(BlockedURLError, match=r"10\.1\.2\.3"):
        await check_url("https://shop.example/hook", allow_private=False, resolver=resolver)


async def test_the_guard_resolves_once_per_connection_and_connects_to_the_address_it_checked(
    http_peer: HttpPeer,
):
    """No gap for DNS rebinding: the name is looked up once, at connect time, and that address is used."""
    http_peer.reply("POST", "/hook", PeerResponse.json({"ok": True}))
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    async with WebhookClient(resolver=resolver, allowed_networks=LOOPBACK_ONLY) as guarded:
        results = [
            await guarded.attempt(
                hook(f"http://shop.example:{http_peer.port}/hook", json_body={}), allow_private=False
            )
            for _ in range(3)
        ]

    assert [r.status_code for r in results] == [200, 200, 200]
    assert lookups == ["shop.example"]  # one connection, checked once, kept alive
    assert [r.headers.get("host") for r in http_peer.requests] == [f"shop.example:{http_peer.port}"] * 3


async def test_a_name_that_resolves_to_loopback_is_refused_before_connecting(http_peer: HttpPeer):
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    async with WebhookClient(resolver=resolver) as guarded:
        result = await guarded.attempt(
            hook(f"http://rebind.example:{http_peer.port}/hook", json_body={}), allow_private=False
        )

    assert (result.error or "").startswith("blocked:")
    assert "127.0.0.1" in (result.error or "")
    assert lookups == ["rebind.example"]
    assert http_peer.connections_accepted == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/steal",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/x",
        "http://[::ffff:192.168.0.1]:8080/admin",
    ],
)
async def test_redirect_to_a_private_address_is_refused(
    http_peer: HttpPeer, guarded_client: WebhookClient, location: str
):
    http_peer.reply("POST", "/start", PeerResponse(status=302, headers={"Location": location}))

    result = await guarded_client.attempt(hook(http_peer.url("/start"), json_body={}), allow_private=False)

    assert result.status is AttemptStatus.FAILED
    assert (result.error or "").startswith("blocked:")
    assert result.retryable is False
    assert [r.path for r in http_peer.requests] == ["/start"]


async def test_redirect_to_a_public_path_of_an_allowed_host_is_followed(
    http_peer: HttpPeer, guarded_client: WebhookClient
):
    http_peer.reply("POST", "/start", PeerResponse(status=307, headers={"Location": "/next"}))
    http_peer.reply("POST", "/next", PeerResponse.json({"ok": True}))

    result = await guarded_client.attempt(
        hook(http_peer.url("/start"), json_body={"a": 1}), allow_private=False
    )

    assert result.succeeded
    assert result.redirects == 1
    assert http_peer.requests_to("/next")[0].json() == {"a": 1}


@pytest.mark.parametrize(("hops", "succeeds"), [(3, True), (4, False)])
async def test_redirect_chain_is_capped_at_three(
    http_peer: HttpPeer, client: WebhookClient, hops: int, succeeds: bool
):
    for hop in range(hops):
        http_peer.reply("GET", f"/r{hop}", PeerResponse(status=302, headers={"Location": f"/r{hop + 1}"}))
    http_peer.reply("GET", f"/r{hops}", PeerResponse.json({"arrived": True}))

    result = await client.attempt(hook(http_peer.url("/r0"), method="GET"), allow_private=True)

    assert result.succeeded is succeeds
    if succeeds:
        assert result.redirects == 3
        assert result.response == {"arrived": True}
    else:
        assert "more than 3 redirects" in (result.error or "")
        assert result.retryable is False
        assert http_peer.requests_to(f"/r{hops}") == []


@pytest.mark.parametrize(
    ("status_code", "method_after", "body_after"),
    [
        (301, "GET", b""),
        (302, "GET", b""),
        (303, "GET", b""),
        (307, "PUT", b'{"v":1}'),
        (308, "PUT", b'{"v":1}'),
    ],
)
async def test_redirect_method_rules(
    http_peer: HttpPeer, client: WebhookClient, status_code: int, method_after: str, body_after: bytes
):
    http_peer.reply("PUT", "/a", PeerResponse(status=status_code, headers={"Location": "/b"}))
    http_peer.route("GET", "/b", _ok)
    http_peer.route("PUT", "/b", _ok)

    result = await client.attempt(
        hook(http_peer.url("/a"), method="PUT", json_body={"v": 1}), allow_private=True
    )

    assert result.succeeded
    [followed] = http_peer.requests_to("/b")
    assert followed.method == method_after
    assert followed.body == body_after


async def test_cross_origin_redirect_drops_credentials(http_peer: HttpPeer, client: WebhookClient):
    other = f"http://localhost:{http_peer.port}/elsewhere"
    http_peer.reply("POST", "/start", PeerResponse(status=307, headers={"Location": other}))
    http_peer.route("POST", "/elsewhere", _ok)
    headers = apply_auth({}, auth_type=AuthType.BEARER, secret=SECRET)

    result = await client.attempt(
        hook(http_peer.url("/start"), json_body={}, headers=headers, secret_values=[SECRET]),
        allow_private=True,
    )

    assert result.succeeded
    [first, second] = http_peer.requests
    assert first.headers["authorization"] == f"Bearer {SECRET}"
    assert "authorization" not in second.headers
    assert second.headers["idempotency-key"] == first.headers["idempotency-key"]


async def _ok(_request: PeerRequest) -> PeerResponse:
    return PeerResponse.json({"ok": True})


# ---------------------------------------------------------------- auth, masking, bodies


@pytest.mark.parametrize(
    ("auth_type", "header_name", "expected_header", "expected_value"),
    [
        (AuthType.BEARER, "X-API-Key", "authorization", f"Bearer {SECRET}"),
        (AuthType.API_KEY, "X-API-Key", "x-api-key", SECRET),
        (AuthType.API_KEY, "X-Shop-Token", "x-shop-token", SECRET),
    ],
)
async def test_auth_header_is_sent_and_masked_everywhere(
    http_peer: HttpPeer,
    client: WebhookClient,
    auth_type: AuthType,
    header_name: str,
    expected_header: str,
    expected_value: str,
):
    async def echo(request: PeerRequest) -> PeerResponse:
        # A careless API that echoes what it got, secrets included.
        return PeerResponse.json({"headers": request.headers, "body": request.json()})

    http_peer.route("POST", "/echo", echo)
    headers = apply_auth({"X-Tenant": "acme"}, auth_type=auth_type, secret=SECRET, header_name=header_name)
    request = hook(
        http_peer.url(f"/echo?token={SECRET}"),
        headers=headers,
        json_body={"note": f"key is {SECRET}"},
        secret_values=[SECRET],
    )

    result = await client.attempt(request, allow_private=True)

    assert result.succeeded
    assert http_peer.requests[0].headers[expected_header] == expected_value
    masked = msgspec.json.encode(
        {"payload": result.payload_masked, "text": result.response_text, "url": result.final_url}
    ).decode()
    assert SECRET not in masked
    assert "***" in msgspec.json.encode(result.payload_masked["headers"]).decode()
    assert result.payload_masked["body"] == {"note": "key is ***"}
    assert result.payload_masked["headers"]["X-Tenant"] == "acme"


def test_apply_auth_none_leaves_headers_alone():
    assert apply_auth({"A": "1"}, auth_type="none", secret="") == {"A": "1"}


def test_apply_auth_without_a_secret_says_what_to_do():
    with pytest.raises(ValueError, match="needs a secret"):
        apply_auth({}, auth_type="bearer", secret="")


def test_mask_secrets_is_deep_and_masks_auth_headers_by_name():
    value = {
        "headers": {"Authorization": "Bearer abc", "X-API-Key": "zzz", "Accept": "*/*"},
        "body": [{"text": "my pw is hunter2!"}, ("hunter2", 3)],
        "n": 5,
    }

    masked = mask_secrets(value, ["hunter2", ""])

    assert masked == {
        "headers": {"Authorization": "Bearer ***", "X-API-Key": "***", "Accept": "*/*"},
        "body": [{"text": "my pw is ***!"}, ["***", 3]],
        "n": 5,
    }
    assert value["headers"]["Authorization"] == "Bearer abc"


async def test_get_sends_no_body(http_peer: HttpPeer, client: WebhookClient):
    http_peer.route("GET", "/status", _ok)

    result = await client.attempt(
        hook(http_peer.url("/status"), method="GET", json_body={"ignored": 1}), allow_private=True
    )

    assert result.succeeded
    [received] = http_peer.requests
    assert received.body == b""
    assert "content-type" not in received.headers
    assert received.headers.get("content-length", "0") == "0"
    assert result.payload_masked["body"] is None


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_methods_with_a_body_send_json(http_peer: HttpPeer, client: WebhookClient, method: str):
    http_peer.route(method, "/m", _ok)

    result = await client.attempt(
        hook(http_peer.url("/m"), method=method, json_body={"k": [1, 2]}), allow_private=True
    )

    assert result.succeeded
    assert http_peer.requests[0].method == method
    assert http_peer.requests[0].json() == {"k": [1, 2]}


# ---------------------------------------------------------------- templating


async def test_url_template_values_are_percent_encoded(http_peer: HttpPeer, client: WebhookClient):
    http_peer.route("GET", "/orders/a%20b%2Fc/items", _ok)
    names = {"vars": {"sku": "a b/c", "q": "x&y=z #1"}}

    built = build_url(http_peer.url("/orders/{{ vars.sku }}/items?q={{ vars.q }}&fixed=1"), names)
    result = await client.attempt(hook(built.url, method="GET"), allow_private=True)

    assert result.succeeded
    [received] = http_peer.requests
    assert received.path == "/orders/a%20b%2Fc/items"
    assert received.query_params() == {"q": ["x&y=z #1"], "fixed": ["1"]}


@pytest.mark.parametrize(
    "template_url",
    [
        "https://{{ vars.host }}/x",
        "https://api.{{ vars.host }}.com/x",
        "{{ vars.url }}",
        "https://h/{% if x %}a{% endif %}",
    ],
)
def test_url_templates_outside_path_and_query_are_refused(template_url: str):
    with pytest.raises(URLTemplateError):
        build_url(template_url, {"vars": {"host": "evil", "url": "http://x"}})


async def test_prepared_request_reaches_the_server_as_the_template_says(
    http_peer: HttpPeer, client: WebhookClient
):
    http_peer.route("POST", "/shop/orders", _ok)
    names = {
        "vars": {"product": "Blue mug", "quantity": 3},
        "contact": {"first_name": "Ana", "phone": "+34600000000"},
        "message_text": "3 blue mugs please",
    }

    prepared = prepare_request(
        url_template=http_peer.url("/shop/orders"),
        names=names,
        idempotency_key="exec-9",
        method="POST",
        headers_template={"X-Customer": "{{ contact.first_name }}\r\nX-Injected: 1"},
        payload_template={
            "item": "{{ vars.product }}",
            "qty": "{{ vars.quantity }}",
            "phone": "{{ contact.phone }}",
        },
        auth_type="api_key",
        secret=SECRET,
        header_name="X-Shop-Key",
    )
    result = await client.attempt(prepared.request, allow_private=True)

    assert result.succeeded
    [received] = http_peer.requests
    assert received.json() == {"item": "Blue mug", "qty": 3, "phone": "+34600000000"}
    assert received.headers["x-shop-key"] == SECRET
    assert received.headers["x-customer"] == "Ana X-Injected: 1"
    assert "x-injected" not in received.headers
    assert prepared.request.secret_values == [SECRET]


# ---------------------------------------------------------------- backoff and Retry-After


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 10, 100])
def test_backoff_is_jittered_below_the_exponential_ceiling(attempt: int):
    rng = random.Random(attempt)
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))

    delays = [
        backoff_seconds(attempt, base_s=0.5, retry_after_s=None, cap_s=30.0, rng=rng) for _ in range(200)
    ]

    assert all(0.0 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 100


def test_backoff_caps_a_large_retry_after():
    delay = backoff_seconds(1, base_s=1.0, retry_after_s=3600.0, cap_s=60.0, rng=random.Random(1))

    assert delay == 60.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), ("0", 0.0), ("1.5", 1.5), ("-3", None), ("soon", None), ("", None), (None, None)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None):
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date_in_the_past_is_zero():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
