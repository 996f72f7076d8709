"""Channel verification: call our own webhook URL the way the provider will, and say what came back."""

from __future__ import annotations

import secrets

import httpx
import msgspec

from app.services.channels.store import ChannelKind, ChannelRead, ChannelRecord


class CheckResult(msgspec.Struct, frozen=True):
    ok: bool
    detail: str


class ChannelChecks:
    """One per process, over an httpx client on the process's pool (app.http.transport)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def aclose(self) -> None:
        await self.http.aclose()

    async def verify(self, record: ChannelRecord, read: ChannelRead, *, webhook_url: str) -> CheckResult:
        """WhatsApp: Meta's hub.challenge GET against `webhook_url`; others: whether signing is set up."""
        if read.kind is ChannelKind.WHATSAPP:
            challenge = secrets.token_hex(8)
            params = {
                "hub.mode": "subscribe",
                "hub.verify_token": record.verify_token,
                "hub.challenge": challenge,
            }
            try:
                resp = await self.http.get(webhook_url, params=params)
            except httpx.HTTPError as exc:
                return CheckResult(
                    ok=False, detail=f"Could not reach {webhook_url}: {exc}. Is the public URL right?"
                )
            if resp.status_code == 200 and resp.text.strip() == challenge:
                return CheckResult(ok=True, detail="Meta's verification will succeed.")
            return CheckResult(ok=False, detail=f"The webhook answered {resp.status_code}: {resp.text[:200]}")
        ok = bool(record.secret) or read.kind is ChannelKind.CONSOLE
        detail = (
            "Signed requests will be accepted."
            if ok
            else "Set a secret: generic webhooks must be HMAC-signed."
        )
        return CheckResult(ok=ok, detail=detail)
