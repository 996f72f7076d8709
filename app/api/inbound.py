"""The inbound controller: where a message enters (WhatsApp Cloud API, signed by Meta, and our generic signed JSON).

Goes to: app.pipeline.ingress (messages) and app.pipeline.statuses (delivery callbacks).
The app's services come from the Litestar app state (`state.services`, set by app.roots).
"""

from __future__ import annotations

import hmac
import logging

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException

from app.services.channels import store as channel_store
from app.services.channels.generic_wire import parse_generic
from app.services.channels.signatures import verify_sha256
from app.services.channels.store import ChannelKind, ChannelRecord
from app.services.channels.whatsapp_wire import parse_webhook

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

# Handlers here set `request_class=Request`: the app-wide HTMXRequest parses htmx headers on
# every request, which a provider's webhook never sends.


async def _channel(channel_id: str, *kinds: ChannelKind) -> ChannelRecord:
    channel = await channel_store.lookup(channel_id)
    if channel is None or channel.kind not in kinds:
        raise NotFoundException(
            f"no {' or '.join(k.value for k in kinds)} channel {channel_id}; check the webhook URL"
        )
    return channel


@get("/webhooks/whatsapp/{channel_id:str}", tags=["webhooks"], media_type="text/plain", request_class=Request)
async def whatsapp_verify(request: Request, channel_id: str) -> str:
    """Meta's subscription check: echo hub.challenge when hub.verify_token matches."""
    channel = await _channel(channel_id, ChannelKind.WHATSAPP)
    params = request.query_params
    if params.get("hub.mode") != "subscribe":
        raise PermissionDeniedException("hub.mode must be 'subscribe'")
    if not hmac.compare_digest(params.get("hub.verify_token", ""), channel.verify_token):
        raise PermissionDeniedException("hub.verify_token does not match the channel's verify token")
    return params.get("hub.challenge", "")


@post("/webhooks/whatsapp/{channel_id:str}", tags=["webhooks"], status_code=200, request_class=Request)
async def whatsapp_receive(request: Request, state: State, channel_id: str) -> Response:
    """Store messages and statuses; no AI or outbound work happens in the request."""
    body = await request.body()  # first, so an oversized body is refused (413) whatever the URL
    channel = await _channel(channel_id, ChannelKind.WHATSAPP)
    if not verify_sha256(channel.app_secret, body, request.headers.get("x-hub-signature-256")):
        raise NotAuthorizedException(
            "X-Hub-Signature-256 is missing or does not match the body and the app secret"
        )
    parsed = parse_webhook(body)
    svc = state.services
    accepted = await svc.ingress.accept(channel, parsed.messages) if parsed.messages else []
    if parsed.invalid:  # answered 200 all the same: Meta would resend them forever
        await svc.ingress.record_invalid(channel, parsed.invalid)
    for reason in parsed.invalid_statuses:
        log.warning("delivery status dropped", extra={"channel_id": channel.id, "reason": reason})
    for status in parsed.statuses:
        await svc.statuses.apply(
            channel,
            provider_message_id=status.provider_message_id,
            status=status.status,
            timestamp=status.timestamp,
            errors=[
                {"code": e.code, "title": e.title, "message": e.message, "details": e.details}
                for e in status.errors
            ],
            callback_data=status.biz_opaque_callback_data,
        )
    return Response(
        content={
            "received": len(accepted),
            "duplicates": sum(a.duplicate for a in accepted),
            "statuses": len(parsed.statuses),
            "invalid": [
                {"message_id": item.provider_message_id, "reason": item.reason} for item in parsed.invalid
            ],
            "invalid_statuses": parsed.invalid_statuses,
        }
    )


@post("/webhooks/generic/{channel_id:str}", tags=["webhooks"], status_code=200, request_class=Request)
async def generic_receive(request: Request, state: State, channel_id: str) -> Response:
    """Our own format, signed with `X-Switchboard-Signature: sha256=<hex HMAC of the body>`."""
    body = await request.body()
    channel = await _channel(channel_id, ChannelKind.GENERIC, ChannelKind.CONSOLE)
    # A console channel without a secret is for trying flows on this machine: loopback only.
    local_console = (
        channel.kind is ChannelKind.CONSOLE
        and not channel.secret
        and request.client is not None
        and request.client.host in LOOPBACK_HOSTS
    )
    if not local_console and not verify_sha256(
        channel.secret, body, request.headers.get("x-switchboard-signature")
    ):
        raise NotAuthorizedException(
            "X-Switchboard-Signature is missing or does not match the body and the secret"
        )
    item = parse_generic(body, channel_ref=channel.id)
    accepted = await state.services.ingress.accept(channel, [item])
    first = accepted[0]
    return Response(
        content={
            "received": 0 if first.duplicate else 1,
            "duplicate": first.duplicate,
            "message_id": first.message_id or None,
            "conversation_id": first.conversation_id,
        }
    )
