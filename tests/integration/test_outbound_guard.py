"""Every request the server makes goes through the guarded layer (issue 14): the LLM client, channel checks.

Webhook calls have their own tests (test_webhooks_http.py, test_webhook_actions.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from app.http.pool import KeepAlivePool
from app.http.stream import AsyncioBackend
from app.http.transport import httpx_client
from app.services.ai.llm import LLMClient, LLMConfig, LLMFailure
from tests.integration.test_editor_refusals import logged_in, post_form
from tests.support.http_peer import HttpPeer, PeerResponse
from tests.support.stack import Tenant

API_KEY = "sk-tenant-secret"


@pytest_asyncio.fixture
async def elsewhere() -> AsyncIterator[HttpPeer]:
    """Where a redirect or a forged Host header points: it must never be reached."""
    async with HttpPeer() as peer:
        peer.reply("POST", "/steal", PeerResponse.json({"choices": []}))
        peer.reply("GET", "/steal", PeerResponse.text("internal admin page"))
        yield peer


def llm_client(backend=None) -> LLMClient:
    pool = KeepAlivePool(max_connections=4, network_backend=backend or AsyncioBackend())
    return LLMClient(timeout_s=5.0, max_retries=0, http_client=httpx_client(pool))


async def test_the_llm_client_does_not_follow_a_redirect(http_peer: HttpPeer, elsewhere: HttpPeer) -> None:
    """issue 14: the OpenAI SDK followed a 307, POSTing the customer's text and the key to 127.0.0.1."""
    http_peer.reply(
        "POST",
        "/v1/chat/completions",
        PeerResponse(status=307, headers={"Location": elsewhere.url("/steal")}),
    )
    client = llm_client()
    config = LLMConfig(api_key=API_KEY, model="m", base_url=http_peer.url("/v1"))
    with pytest.raises(LLMFailure, match="redirects are not followed"):
        await client.reply(config, system="s", history=[], text="my card is 4111 1111 1111 1111")
    await client.aclose()
    assert len(http_peer.requests_to("/v1/chat/completions")) == 1
    assert elsewhere.requests == []


async def test_a_workspace_llm_url_is_checked_when_connecting(http_peer: HttpPeer, monkeypatch) -> None:
    """A workspace's base URL passed the save-time check once; the guard checks every connection."""
    from app import roots
    from app.settings import load_settings

    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE", "false")
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    http_peer.reply("POST", "/v1/chat/completions", PeerResponse.json({"choices": []}))
    client = llm_client(roots.outbound_backend(load_settings()))
    config = LLMConfig(api_key=API_KEY, model="m", base_url=http_peer.url("/v1"))
    with pytest.raises(LLMFailure, match=r"refused by the address guard: 127\.0\.0\.1 is a loopback address"):
        await client.reply(config, system="s", history=[], text="hello")
    await client.aclose()
    assert http_peer.requests == []


async def test_hosts_the_operator_configured_are_reached_wherever_they_are(
    http_peer: HttpPeer, monkeypatch
) -> None:
    from app import roots
    from app.settings import load_settings

    monkeypatch.setenv("SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE", "false")
    monkeypatch.setenv("OPENAI_BASE_URL", http_peer.url("/v1"))
    http_peer.reply(
        "POST",
        "/v1/chat/completions",
        PeerResponse.json(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}
                ],
            }
        ),
    )
    client = llm_client(roots.outbound_backend(load_settings()))
    config = LLMConfig(api_key=API_KEY, model="m", base_url=os.environ["OPENAI_BASE_URL"])
    text, _usage = await client.reply(config, system="s", history=[], text="hello")
    await client.aclose()
    assert text == "hi"


async def test_channel_verification_never_calls_the_request_host(tenant: Tenant, elsewhere: HttpPeer) -> None:
    """issue 14: the server GET http://<Host>/webhooks/... unguarded and showed 200 characters of it."""
    channel = await tenant.create_channel(
        kind="whatsapp",
        name="Main",
        phone_number_id=str(uuid.uuid4().int)[:15],
        access_token="EAAG",
        app_secret="app-secret",
        verify_token="verify-me",
    )
    client, csrf = await logged_in(tenant)
    try:
        answer = await post_form(client, f"/settings/channels/{channel['id']}/verify", [], csrf, htmx=True)
        forged = await client.post(
            f"/settings/channels/{channel['id']}/verify",
            headers={"Host": f"127.0.0.1:{elsewhere.port}", "X-CSRF-Token": csrf, "HX-Request": "true"},
        )
    finally:
        await client.aclose()
    assert elsewhere.requests == []
    assert answer.status_code == 200 and "Meta&#39;s verification will succeed" in answer.text
    assert "internal admin page" not in forged.text
    assert f"{tenant.stack.base_url}/webhooks/whatsapp/{channel['id']}" in answer.text


@pytest.mark.parametrize("phone_number_id", ["123/../../me/accounts?x=", "１２３", "123#", "1" * 65])
async def test_a_phone_number_id_that_would_change_the_graph_api_path_is_refused(
    tenant: Tenant, phone_number_id: str
) -> None:
    """The id becomes a path segment of every Graph API request sent with the channel's token."""
    answer = await tenant.http.post(
        "/api/channels",
        json={
            "kind": "whatsapp",
            "name": "Main",
            "phone_number_id": phone_number_id,
            "access_token": "EAAG",
            "app_secret": "s",
            "verify_token": "v",
        },
    )
    assert answer.status_code == 400 and "phone_number_id" in answer.json()["error"]
