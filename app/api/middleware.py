"""What every HTTP exchange passes: a bounded request line on the way in, security headers on the way out."""

from __future__ import annotations

import msgspec
from litestar.types import HTTPResponseStartEvent, Message, Receive, Scope, Send

MAX_PATH_CHARS = 2048
"""Longer paths are refused (414) before routing: the router caches paths it has seen, 1,024 of each kind."""
MAX_QUERY_CHARS = 8192

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",  # no inline script, no eval: every script is a file under /static
        "style-src 'self' 'unsafe-inline'",  # style attributes in templates; they cannot run code
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_EVERY_RESPONSE = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
_HTML_ONLY = [(b"content-security-policy", CONTENT_SECURITY_POLICY.encode())]


def request_line_refusal(scope: Scope) -> tuple[int, str] | None:
    """(status, reason) when the request's path or query is refused before anything reads it, else None."""
    path = scope.get("raw_path") or scope.get("path", "").encode()
    if len(path) > MAX_PATH_CHARS:
        return 414, f"the URL path has {len(path)} characters; at most {MAX_PATH_CHARS} are accepted"
    query = scope.get("query_string", b"")
    if len(query) > MAX_QUERY_CHARS:
        return 414, f"the query string has {len(query)} characters; at most {MAX_QUERY_CHARS} are accepted"
    if _has_nul(path) or _has_nul(query):
        # PostgreSQL text cannot hold NUL: a filter or id carrying one would fail in the database.
        return 400, "the URL contains a NUL character (%00), which no name or id can hold"
    return None


def _has_nul(raw: bytes) -> bool:
    return b"\x00" in raw or b"%00" in raw


async def refuse_request_line(status: int, reason: str, receive: Receive, send: Send) -> None:
    """Answer with a JSON error before routing (the body is not read)."""
    del receive
    body = msgspec.json.encode({"error": reason})
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *_EVERY_RESPONSE,
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def security_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook: nosniff, referrer policy and no framing on every response; CSP on HTML."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or [])
    present = {name.lower() for name, _ in headers}
    added = [(name, value) for name, value in _EVERY_RESPONSE if name not in present]
    content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
    if content_type.startswith(b"text/html"):
        added += [(name, value) for name, value in _HTML_ONLY if name not in present]
    message["headers"] = [*headers, *added]
