"""WhatsApp Cloud API sender: POST {graph}/{phone_number_id}/messages with retries on 429/5xx."""

from __future__ import annotations

import asyncio
import logging
import random

import httpcore

from app.http.pool import KeepAlivePool
from app.services.cache import BoundedCache
from app.services.channels.items import WireError
from app.services.channels.store import ChannelRecord
from app.services.channels.whatsapp_wire import build_text_message, parse_send_response
from app.settings import ChannelSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# No connection was made, so the request never left: sending again cannot duplicate it.
NOT_SENT_ERRORS = (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.PoolTimeout)
# The request may have reached the API and only its answer was lost: sending again could
# deliver it twice, so the send is reported in doubt instead.
MAYBE_SENT_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.RemoteProtocolError)
USER_AGENT = b"switchboard"


class SendError(Exception):
    """The provider refused the message or stayed unreachable after retries: it was not sent."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class SendInDoubt(SendError):
    """The request may have been accepted, but no answer came: it must not be sent blindly again."""


class WhatsAppSender:
    """Sends through the process's pool for trusted endpoints (app.http.pool)."""

    def __init__(self, settings: ChannelSettings, *, pool: KeepAlivePool | None = None) -> None:
        self.settings = settings
        # The pool without httpx's models: the Graph API needs no cookies, auth flows or
        # redirects, and each layer costs CPU on every send.
        self._owns_pool = pool is None
        self.pool = pool or KeepAlivePool(max_connections=128)
        self._urls: BoundedCache[str, httpcore.URL] = BoundedCache(max_entries=10_000)

    async def aclose(self) -> None:
        if self._owns_pool:  # a shared pool is closed by the process that built it
            await self.pool.aclose()

    def _messages_url(self, phone_number_id: str) -> httpcore.URL:
        url = self._urls.get(phone_number_id)
        if url is None:
            url = httpcore.URL(f"{self.settings.whatsapp_graph_url}/{phone_number_id}/messages")
            self._urls.put(phone_number_id, url)
        return url

    async def _post(
        self, url: httpcore.URL, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, bytes]:
        response = await self.pool.request(
            b"POST", url, headers=headers, content=body, timeout_s=self.settings.send_timeout_seconds
        )
        return response.status, response.content

    async def send_text(
        self, channel: ChannelRecord, *, to: str, text: str, callback_data: str | None = None
    ) -> str:
        """Send and return the wamid; raise SendError when it was not sent, SendInDoubt when it may have been.

        `callback_data` (our row id) travels as `biz_opaque_callback_data`, echoed by the
        message's status callbacks. Retried: connection failures and 429/5xx answers, which
        the API sends for requests it did not take.
        """
        url = self._messages_url(channel.phone_number_id)
        body = build_text_message(to, text, callback_data=callback_data)
        headers = [
            (b"Authorization", f"Bearer {channel.access_token}".encode()),
            (b"Content-Type", b"application/json"),
            (b"User-Agent", USER_AGENT),
        ]
        attempt = 0
        while True:
            try:
                status_code, content = await self._post(url, body, headers)
            except NOT_SENT_ERRORS as exc:
                if attempt >= self.settings.send_max_retries:
                    raise SendError(
                        f"WhatsApp API unreachable after {attempt + 1} attempts: {exc!r}"
                    ) from exc
            except MAYBE_SENT_ERRORS as exc:
                raise SendInDoubt(
                    f"no answer from the WhatsApp API after the request was sent ({exc!r}): "
                    "the message may have been accepted"
                ) from exc
            else:
                text = content[:2000].decode("utf-8", "replace")
                if status_code < 300:
                    try:
                        return parse_send_response(content)
                    except WireError as exc:
                        raise SendError(exc.message, status_code=status_code, body=text) from exc
                if status_code not in RETRYABLE_STATUS or attempt >= self.settings.send_max_retries:
                    raise SendError(
                        f"WhatsApp API answered {status_code}: {text[:300]}",
                        status_code=status_code,
                        body=text,
                    )
            delay_s = self.settings.send_retry_base_seconds * (2**attempt) * (0.5 + random.random() / 2)
            log.info(
                "whatsapp send retry",
                extra={"attempt": attempt + 1, "delay_s": round(delay_s, 3), "channel_id": channel.id},
            )
            await asyncio.sleep(delay_s)
            attempt += 1
