"""The Graph API sender against a real HTTP server on 127.0.0.1: what it sends, and how it gives up."""

from __future__ import annotations

import asyncio

import pytest

from app.services.channels.store import ChannelKind, ChannelRecord
from app.services.channels.whatsapp import SendError, SendInDoubt, WhatsAppSender
from app.settings import ChannelSettings
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse

CHANNEL = ChannelRecord(
    id="c1",
    workspace_id="w1",
    kind=ChannelKind.WHATSAPP,
    name="Main",
    phone_number_id="106540",
    access_token="EAAG-secret",
    app_secret="s",
    verify_token="v",
    secret="",
)


def sender(base_url: str, **settings: float) -> WhatsAppSender:
    return WhatsAppSender(
        ChannelSettings(whatsapp_graph_url=base_url, send_retry_base_seconds=0.01, **settings)
    )


async def test_a_reply_is_posted_with_the_channel_token_and_its_wamid_returned() -> None:
    async def graph(request: PeerRequest) -> PeerResponse:
        return PeerResponse.json({"messaging_product": "whatsapp", "messages": [{"id": "wamid.HBgL"}]})

    async with HttpPeer() as peer:
        peer.route("POST", "/106540/messages", graph)
        whatsapp = sender(peer.base_url)
        try:
            wamid = await whatsapp.send_text(
                CHANNEL, to="15551234567", text="Hola, ¿qué tal?", callback_data="row-7f3a"
            )
        finally:
            await whatsapp.aclose()
        [request] = peer.requests_to("/106540/messages")
    assert wamid == "wamid.HBgL"
    assert request.headers["authorization"] == "Bearer EAAG-secret"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert (body["to"], body["type"], body["text"]["body"]) == ("15551234567", "text", "Hola, ¿qué tal?")
    # Echoed by Meta in the message's status callbacks: how a send in doubt finds out it went out.
    assert body["biz_opaque_callback_data"] == "row-7f3a"


async def test_a_silent_api_is_not_asked_again_the_send_is_in_doubt() -> None:
    """The request reached the API and no answer came: it may have been accepted, so no blind resend."""

    async def silent(_request: PeerRequest) -> PeerResponse:
        return PeerResponse(status=200, delay_s=2.0)

    async with HttpPeer() as peer:
        peer.route("POST", "/106540/messages", silent)
        whatsapp = sender(peer.base_url, send_timeout_seconds=0.1, send_max_retries=2)
        try:
            with pytest.raises(SendInDoubt, match="may have been accepted"):
                await whatsapp.send_text(CHANNEL, to="1555", text="hi")
        finally:
            await whatsapp.aclose()
        assert len(peer.requests_to("/106540/messages")) == 1


async def test_nothing_listening_is_reported_after_the_retries() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    whatsapp = sender(f"http://127.0.0.1:{port}", send_max_retries=1)
    try:
        # Never connected, so never sent: retrying is safe, and the failure is certain.
        with pytest.raises(SendError, match="unreachable after 2 attempts") as raised:
            await whatsapp.send_text(CHANNEL, to="1555", text="hi")
        assert not isinstance(raised.value, SendInDoubt)
    finally:
        await whatsapp.aclose()
