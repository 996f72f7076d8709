"""Who is calling: a Bearer API token, or a browser session protected by a CSRF token."""

from __future__ import annotations

import hmac

from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from app.services import auth
from app.services.auth import Principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_SESSION_KEY = "csrf_token"


def csrf_ok(request: Request) -> bool:
    """Double submit: the header (htmx and fetch) or form field must equal the session's token."""
    expected = request.session.get(CSRF_SESSION_KEY) if "session" in request.scope else None
    given = request.headers.get(CSRF_HEADER, "")
    return bool(expected) and hmac.compare_digest(str(expected), given)


async def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        principal = await auth.authenticate_token(header[7:].strip())
        if principal is None:
            raise NotAuthorizedException(
                "invalid API token: create one with `switchboard token create --email E`"
            )
        return principal
    grant = auth.session_grant(request.scope.get("session"))
    if grant is not None:
        if request.method not in SAFE_METHODS and not csrf_ok(request):
            raise PermissionDeniedException("missing or wrong CSRF token: reload the page and try again")
        principal = await auth.principal_for_session(grant)
        if principal is not None:
            return principal
    raise NotAuthorizedException("authentication required: send `Authorization: Bearer <token>` or log in")
