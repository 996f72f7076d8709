"""Channel verification: call our own webhook URL (SWITCHBOARD_PUBLIC_URL) the way the provider will."""

from __future__ import annotations

import secrets

import httpx
import msgspec

from app.services.channels.store import ChannelKind, ChannelRead, ChannelRecord

PUBLIC_URL_HINT = (
    "Set SWITCHBOARD_PUBLIC_URL to the address providers reach this server at "
    "(like https://switchboard.example.com), then verify again."
)


class CheckResult(msgspec.Struct, frozen=True):
    ok: bool
    detail: str


class ChannelChecks:
    """One per process, over an httpx client on the process's guarded pool (app.http.transport).

    The URL called is always the configured public URL plus the channel's path: a request's
    Host header never chooses where the server sends a request.
    """

    def __init__(self, http: httpx.AsyncClient, *, public_url: str) -> None:
        self.http = http
        self.public_url = public_url.rstrip("/")

    async def aclose(self) -> None:
        await self.http.aclose()

    def webhook_url(self, read: ChannelRead) -> str:
        """The URL to paste into the provider's dashboard (the bare path when no public URL is set)."""
        return self.public_url + read.webhook_path

    async def verify(self, record: ChannelRecord, read: ChannelRead) -> CheckResult:
        """WhatsApp: Meta's hub.challenge GET against the webhook URL; others: whether signing is set up."""
        if read.kind is ChannelKind.WHATSAPP:
            if not self.public_url:
                return CheckResult(
                    ok=False, detail=f"This server does not know its public address. {PUBLIC_URL_HINT}"
                )
            url = self.webhook_url(read)
            challenge = secrets.token_hex(8)
            params = {
                "hub.mode": "subscribe",
                "hub.verify_token": record.verify_token,
                "hub.challenge": challenge,
            }
            try:
                resp = await self.http.get(url, params=params)
            except httpx.HTTPError:
                return CheckResult(ok=False, detail=f"Could not reach {url}. {PUBLIC_URL_HINT}")
            if resp.status_code == 200 and resp.text.strip() == challenge:
                return CheckResult(ok=True, detail="Meta's verification will succeed.")
            # Only the status: the answer's body is not shown back (it could be anyone's page).
            return CheckResult(
                ok=False,
                detail=f"{url} answered HTTP {resp.status_code} instead of the challenge. {PUBLIC_URL_HINT}",
            )
        ok = bool(record.secret) or read.kind is ChannelKind.CONSOLE
        detail = (
            "Signed requests will be accepted."
            if ok
            else "Set a secret: generic webhooks must be HMAC-signed."
        )
        return CheckResult(ok=ok, detail=detail)
