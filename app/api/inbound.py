"""The inbound controller: where a message enters (WhatsApp Cloud API, signed by Meta, and our generic signed JSON).

Goes to: app.pipeline.ingress (messages) and app.pipeline.statuses (delivery callbacks).
The app's services come from the Litestar app state (`state.services`, set by app.roots).

A webhook POST takes the lean path (`answer_webhook`, called by app.asgi before Litestar
routes): the same checks and the same store as the Litestar routes below, without Litestar's
routing, parameter parsing and response machinery, which were a third of the web process's
CPU per message. Whatever the lean path would refuse goes to those routes, its body replayed,
so a refusal is answered exactly as the routes answer it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.middleware._internal.exceptions.middleware import get_exception_handler
from litestar.types import HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

from app.api.middleware import security_headers
from app.services.channels import store as channel_store
from app.services.channels.generic_wire import parse_generic
from app.services.channels.items import InboundItem
from app.services.channels.signatures import verify_sha256
from app.services.channels.store import ChannelKind, ChannelRecord
from app.services.channels.whatsapp_wire import parse_webhook

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# A request that carries one of these came through a proxy: its sender is not this machine, even
# when the proxy on this machine makes the connection come from 127.0.0.1.
FORWARDING_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


def sent_from_this_machine(client_host: str | None, header_names: Iterable[bytes]) -> bool:
    """A connection from loopback that no proxy relayed (the console channel's unsigned messages)."""
    return client_host in LOOPBACK_HOSTS and not any(
        name.lower() in FORWARDING_HEADERS for name in header_names
    )


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
    channel, parsed = await _whatsapp_checked(channel_id, body, request.headers.get("x-hub-signature-256"))
    return Response(content=await _whatsapp_store(state.services, channel, parsed))


async def _whatsapp_checked(channel_id: str, body: bytes, signature: str | None) -> tuple[ChannelRecord, Any]:
    """The channel and the parsed payload, or the exception the request is refused with."""
    channel = await _channel(channel_id, ChannelKind.WHATSAPP)
    if not verify_sha256(channel.app_secret, body, signature):
        raise NotAuthorizedException(
            "X-Hub-Signature-256 is missing or does not match the body and the app secret"
        )
    return channel, parse_webhook(body)


async def _whatsapp_store(svc: Any, channel: ChannelRecord, parsed: Any) -> dict[str, Any]:
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
    return {
        "received": len(accepted),
        "duplicates": sum(a.duplicate for a in accepted),
        "statuses": len(parsed.statuses),
        "invalid": [
            {"message_id": item.provider_message_id, "reason": item.reason} for item in parsed.invalid
        ],
        "invalid_statuses": parsed.invalid_statuses,
    }


@post("/webhooks/generic/{channel_id:str}", tags=["webhooks"], status_code=200, request_class=Request)
async def generic_receive(request: Request, state: State, channel_id: str) -> Response:
    """Our own format, signed with `X-Switchboard-Signature: sha256=<hex HMAC of the body>`."""
    body = await request.body()
    local = sent_from_this_machine(
        request.client.host if request.client is not None else None,
        (name for name, _ in request.scope["headers"]),
    )
    channel, item = await _generic_checked(
        channel_id, body, request.headers.get("x-switchboard-signature"), local
    )
    return Response(content=await _generic_store(state.services, channel, item))


async def _generic_checked(
    channel_id: str, body: bytes, signature: str | None, local: bool
) -> tuple[ChannelRecord, InboundItem]:
    channel = await _channel(channel_id, ChannelKind.GENERIC, ChannelKind.CONSOLE)
    # A console channel without a secret is for trying flows on this machine: loopback only.
    if channel.kind is ChannelKind.CONSOLE and not channel.secret:
        if not local:
            raise NotAuthorizedException(
                "This console channel takes unsigned messages only from this machine, sent directly "
                "(not through a proxy); use a generic channel with a secret for messages from elsewhere"
            )
    elif not verify_sha256(channel.secret, body, signature):
        raise NotAuthorizedException(
            "X-Switchboard-Signature is missing or does not match the body and the secret"
        )
    return channel, parse_generic(body, channel_ref=channel.id)


async def _generic_store(svc: Any, channel: ChannelRecord, item: InboundItem) -> dict[str, Any]:
    first = (await svc.ingress.accept(channel, [item]))[0]
    return {
        "received": 0 if first.duplicate else 1,
        "duplicate": first.duplicate,
        "message_id": first.message_id or None,
        "conversation_id": first.conversation_id,
    }


# ---------------------------------------------------------------------------- the lean path

_Checked = Callable[[str, bytes, "str | None", bool], Awaitable[tuple[ChannelRecord, Any]]]
_Store = Callable[[Any, ChannelRecord, Any], Awaitable[dict[str, Any]]]


async def _whatsapp_checked_lean(
    channel_id: str, body: bytes, signature: str | None, local: bool
) -> tuple[ChannelRecord, Any]:
    del local  # Meta signs every delivery; no loopback exception
    return await _whatsapp_checked(channel_id, body, signature)


class LeanRoute(msgspec.Struct, frozen=True):
    """A webhook route the lean path answers: its URL prefix, signature header, checks and store."""

    prefix: str
    signature_header: bytes
    checked: _Checked
    store: _Store


LEAN_ROUTES = (
    LeanRoute("/webhooks/generic/", b"x-switchboard-signature", _generic_checked, _generic_store),
    LeanRoute("/webhooks/whatsapp/", b"x-hub-signature-256", _whatsapp_checked_lean, _whatsapp_store),
)
_JSON_HEADERS = ((b"content-type", b"application/json"),)


def lean_route(scope: Scope) -> LeanRoute | None:
    """The lean route of a POST to `/webhooks/{generic,whatsapp}/{channel_id}`, else None (Litestar routes it)."""
    if cast("HTTPScope", scope)["method"] != "POST":
        return None
    path: str = scope["path"]
    for route in LEAN_ROUTES:
        # One non-empty segment after the prefix: anything else (a trailing slash too) is Litestar's.
        if (
            path.startswith(route.prefix)
            and len(path) > len(route.prefix)
            and "/" not in path[len(route.prefix) :]
        ):
            return route
    return None


async def answer_webhook(
    app: Litestar, route: LeanRoute, scope: Scope, receive: Receive, send: Send, *, max_body_bytes: float
) -> None:
    """Answer a webhook POST as its Litestar route would: stored and 200, or the route's own refusal.

    The body is read whole within `max_body_bytes`; a body that is larger, announced larger, or
    cut by a disconnect, and a request the checks refuse (unknown channel, wrong signature, a
    payload that does not parse), are handed to Litestar with what was received replayed, and
    Litestar answers them (413, 404, 401, 400, ...) as it always has. Only once the checks pass is
    anything stored, so nothing is ever done twice; an error while storing is answered by the
    app's exception handler for it (503 with Retry-After for `IngressError`).
    """
    received: list[ReceiveMessage] = []
    body = await _read_body(scope, receive, received, max_body_bytes)

    async def litestar() -> None:
        async def replay() -> ReceiveMessage:
            return received.pop(0) if received else await receive()

        await Litestar.__call__(app, scope, replay, send)

    if body is None:
        await litestar()
        return
    signature = None
    for name, value in scope["headers"]:
        if name.lower() == route.signature_header:
            signature = value.decode("latin-1")
            break
    client = scope.get("client")
    local = sent_from_this_machine(client[0] if client else None, (name for name, _ in scope["headers"]))
    channel_id = scope["path"][len(route.prefix) :]
    try:
        channel, parsed = await route.checked(channel_id, body, signature, local)
    except Exception:  # not swallowed: the route runs the same checks, raises it again and answers it
        await litestar()
        return
    try:
        content = await route.store(app.state.services, channel, parsed)
    except Exception as exc:  # answered (and logged) by the app's handler for it
        await _answer_error(app, exc, scope, receive, send)
        return
    payload = msgspec.json.encode(content)
    await _send_with_security_headers(
        scope,
        send,
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
        },
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def _read_body(
    scope: Scope, receive: Receive, received: list[ReceiveMessage], limit: float
) -> bytes | None:
    """The whole body, each message kept in `received` (to replay); None when it is (or is announced) over `limit`,
    when its Content-Length is not a number, or when the client went away before the end."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            if not value.isdigit() or int(value) > limit:
                return None
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return None  # http.disconnect
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def _answer_error(app: Litestar, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    handler = get_exception_handler(app.exception_handlers, exc)
    if handler is None:  # the app maps Exception itself (app.api.errors.HANDLERS): never the case
        raise exc
    request: Request = Request(scope, receive)
    response = handler(request, exc)
    asgi_response = response.to_asgi_response(app=None, request=request)

    async def send_secured(message: Message) -> None:
        await _send_with_security_headers(scope, send, message)

    await asgi_response(scope, receive, send_secured)


async def _send_with_security_headers(scope: Scope, send: Send, message: Message) -> None:
    await security_headers(message, scope)  # the app's `before_send` hook, as Litestar runs it
    await send(message)
