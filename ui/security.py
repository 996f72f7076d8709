"""Browser sessions (encrypted cookie, revocable on the server), the logged-in principal, and CSRF tokens.

The cookie carries the user, a session id and when it was issued (app.services.auth checks
them against logouts and "log out everywhere" on each request). It is HttpOnly, SameSite=Lax,
and Secure when the request came over HTTPS (behind a proxy: SWITCHBOARD_TRUST_PROXY).
A cookie that does not decrypt or decode is treated as no session, never as an error.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException, SerializationException
from litestar.handlers import BaseRouteHandler
from litestar.middleware.session.base import SessionMiddleware
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig
from litestar.response import Redirect, Response
from litestar.types import ASGIApp, Receive, Scope, Send

from app.services import auth
from app.settings import get_settings

log = logging.getLogger(__name__)

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "sb_session"
# The same session keys as app.api.deps, so a browser session also authenticates the JSON API.
CSRF_SESSION_KEY = "csrf_token"


def _session_secret() -> bytes:
    # CookieBackendConfig wants a 16/24/32-byte AES key; derive one from the app secret.
    return hashlib.sha256(("session:" + get_settings().secret_key).encode()).digest()


class _SessionBackend(ClientSideSessionBackend):
    """Litestar's encrypted cookie, with a cookie that does not decode read as no session.

    Litestar only tolerates a wrong tag or bad base64; a tampered cookie with a valid base64
    but broken associated data or payload raised, and the request answered 500.
    """

    async def load_from_connection(self, connection: ASGIConnection) -> dict[str, Any]:
        if cookie_keys := self.get_cookie_keys(connection):
            data = [connection.cookies[key].encode("utf-8") for key in cookie_keys]
            try:
                return self.load_data(data)
            except (InvalidTag, binascii.Error, SerializationException, ValueError, KeyError, TypeError):
                log.info("session cookie ignored: it does not decrypt", extra={"path": connection.url.path})
        return {}


def _backend(*, secure: bool) -> _SessionBackend:
    config = CookieBackendConfig(
        secret=_session_secret(),
        key=SESSION_COOKIE,
        httponly=True,
        samesite="lax",
        secure=secure,
        max_age=auth.SESSION_MAX_AGE_S,
    )
    return _SessionBackend(config=config)


_PLAIN_BACKEND, _SECURE_BACKEND = _backend(secure=False), _backend(secure=True)


def session_middleware(app: ASGIApp) -> ASGIApp:
    """Use the app's session when create_app installs one; otherwise provide a cookie session for the UI.

    Over HTTPS the cookie is marked Secure. A factory, not DefineMiddleware: Litestar deep-copies
    routers, and the AES key object cannot be copied.
    """
    plain = SessionMiddleware(app=app, backend=_PLAIN_BACKEND)
    secure = SessionMiddleware(app=app, backend=_SECURE_BACKEND)

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if "session" in scope:
            await app(scope, receive, send)
        elif scope.get("scheme") in ("https", "wss"):
            await secure(scope, receive, send)
        else:
            await plain(scope, receive, send)

    return middleware


def csrf_token(request: ASGIConnection) -> str:
    """The session's CSRF token, created on first use (a synchronizer token kept in the encrypted session)."""
    session = request.scope.get("session")
    if not isinstance(session, dict):
        token = secrets.token_urlsafe(24)
        request.set_session({CSRF_SESSION_KEY: token})
        return token
    token = session.get(CSRF_SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(24)
        session[CSRF_SESSION_KEY] = token
    return token


async def csrf_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Refuse unsafe requests whose header or `_csrf` form field does not carry the session's token."""
    request: Request = connection  # type: ignore[assignment]
    if request.method in SAFE_METHODS:
        return
    expected = (
        (request.scope.get("session") or {}).get(CSRF_SESSION_KEY)
        if isinstance(request.scope.get("session"), dict)
        else None
    )
    sent = request.headers.get(CSRF_HEADER.lower())
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        sent = form.get(CSRF_FIELD)
    if not expected or not sent or not hmac.compare_digest(str(sent), str(expected)):
        log.info("csrf refused", extra={"path": request.url.path, "method": request.method})
        raise PermissionDeniedException(
            "The form expired or did not come from this site; reload the page and try again."
        )


async def provide_principal(request: Request) -> auth.Principal:
    """The logged-in user for page handlers; unauthenticated requests go to the login page."""
    grant = auth.session_grant(request.scope.get("session"))
    principal = await auth.principal_for_session(grant) if grant else None
    if principal is None:
        raise NotAuthorizedException("Log in to continue.")
    request.scope["sb_principal"] = principal  # type: ignore[typeddict-unknown-key]
    return principal


def login_redirect(request: Request, exc: Exception) -> Response[Any]:
    target = "/login?next=" + request.url.path
    if request.htmx:
        return Response(content="", status_code=401, headers={"HX-Redirect": target})
    return Redirect(path=target)


def start_session(request: Request, principal: auth.Principal) -> None:
    # A fresh CSRF token on login so a token seen before login is worthless after it.
    request.set_session({**auth.new_session(principal), CSRF_SESSION_KEY: secrets.token_urlsafe(24)})


async def end_session(request: Request) -> None:
    """Log this browser out, on the server too: a copy of the cookie stops working."""
    grant = auth.session_grant(request.scope.get("session"))
    if grant is not None:
        await auth.end_session(grant)
    request.clear_session()


def client_address(request: Request) -> str:
    """The caller's address (the proxy's X-Forwarded-For only when SWITCHBOARD_TRUST_PROXY says so)."""
    return request.client.host if request.client else "unknown"
