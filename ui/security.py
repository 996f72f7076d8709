"""Browser sessions (encrypted cookie), the logged-in principal, and CSRF tokens for every unsafe request."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware.session.base import SessionMiddleware
from litestar.middleware.session.client_side import CookieBackendConfig
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
USER_SESSION_KEY = "user_id"
CSRF_SESSION_KEY = "csrf_token"


def _session_secret() -> bytes:
    # CookieBackendConfig wants a 16/24/32-byte AES key; derive one from the app secret.
    return hashlib.sha256(("session:" + get_settings().secret_key).encode()).digest()


SESSION_CONFIG = CookieBackendConfig(
    secret=_session_secret(), key=SESSION_COOKIE, httponly=True, samesite="lax", max_age=14 * 24 * 3600
)
_SESSION_BACKEND = SESSION_CONFIG._backend_class(config=SESSION_CONFIG)


def session_middleware(app: ASGIApp) -> ASGIApp:
    """Use the app's session when create_app installs one; otherwise provide a cookie session for the UI.

    A factory, not DefineMiddleware: Litestar deep-copies routers, and the AES key object cannot be copied.
    """
    with_session = SessionMiddleware(app=app, backend=_SESSION_BACKEND)

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if "session" in scope:
            await app(scope, receive, send)
        else:
            await with_session(scope, receive, send)

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
    session = request.scope.get("session")
    user_id = session.get(USER_SESSION_KEY) if isinstance(session, dict) else None
    principal = await auth.principal_for_session(user_id) if user_id else None
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
    request.set_session({USER_SESSION_KEY: principal.user_id, CSRF_SESSION_KEY: secrets.token_urlsafe(24)})


def end_session(request: Request) -> None:
    request.clear_session()
