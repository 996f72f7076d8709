"""WhatsApp Cloud API sender: POST {graph}/{phone_number_id}/messages with retries on 429/5xx."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

from app.services.channels.items import WireError
from app.services.channels.store import ChannelRecord
from app.services.channels.whatsapp_wire import build_text_message, parse_send_response
from app.services.webhooks import sharded_pool
from app.settings import ChannelSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class SendError(Exception):
    """The provider refused the message or stayed unreachable after retries."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class WhatsAppSender:
    """One pooled HTTP client per process."""

    def __init__(self, settings: ChannelSettings) -> None:
        self.settings = settings
        # Many small pools: one big httpcore pool spends its CPU rescanning connections under
        # concurrency (see app.services.webhooks.ShardedTransport). Requests go to the transport
        # directly: an AsyncClient's cookie, auth and redirect layers cost CPU on every send and
        # the Graph API needs none of them.
        self.transport = sharded_pool(max_connections=128)
        self.timeout = httpx.Timeout(settings.send_timeout_seconds)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request = httpx.Request("POST", url, content=body, headers=headers,
                                extensions={"timeout": self.timeout.as_dict()})
        response = await self.transport.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, content

    async def send_text(self, channel: ChannelRecord, *, to: str, text: str) -> str:
        """Send and return the wamid; raise SendError when it could not be sent."""
        url = f"{self.settings.whatsapp_graph_url}/{channel.phone_number_id}/messages"
        body = build_text_message(to, text)
        headers = {"Authorization": f"Bearer {channel.access_token}", "Content-Type": "application/json"}
        attempt = 0
        while True:
            try:
                status_code, content = await self._post(url, body, headers)
            except httpx.TransportError as exc:
                if attempt >= self.settings.send_max_retries:
                    raise SendError(f"WhatsApp API unreachable after {attempt + 1} attempts: {exc!r}") from exc
            else:
                text = content[:2000].decode("utf-8", "replace")
                if status_code < 300:
                    try:
                        return parse_send_response(content)
                    except WireError as exc:
                        raise SendError(exc.message, status_code=status_code, body=text) from exc
                if status_code not in RETRYABLE_STATUS or attempt >= self.settings.send_max_retries:
                    raise SendError(f"WhatsApp API answered {status_code}: {text[:300]}",
                                    status_code=status_code, body=text)
            delay_s = self.settings.send_retry_base_seconds * (2**attempt) * (0.5 + random.random() / 2)
            log.info("whatsapp send retry", extra={"attempt": attempt + 1, "delay_s": round(delay_s, 3),
                                                   "channel_id": channel.id})
            await asyncio.sleep(delay_s)
            attempt += 1
