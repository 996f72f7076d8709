"""Request preparation: a call_webhook config rendered into the request to send, and masking.

The one path from a node's config to a `WebhookRequest`, shared by the executor
(app.pipeline.webhook_calls), its retries and the tester (app.services.dry_run): URL
templates percent-encoded, headers rendered on one line, the typed payload, auth. Nothing
here touches the network; app.http.client sends what this builds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any
from urllib.parse import quote

import msgspec

from flows import templates

DEFAULT_TIMEOUT_SECONDS = 5.0
MASK = "***"


class HttpMethod(str, Enum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


BODYLESS_METHODS = frozenset({HttpMethod.GET})


class AuthType(str, Enum):
    NONE = "none"
    BEARER = "bearer"
    API_KEY = "api_key"


SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "apikey",
        "api_key",
        "x-auth-token",
        "cookie",
        "set-cookie",
    }
)
"""Header (or payload) names whose values are masked wherever they appear."""


class URLTemplateError(ValueError):
    """A webhook URL template that cannot be rendered safely; the message says how to fix it."""


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to send one webhook, already rendered; the same for every retry."""

    url: str
    idempotency_key: str
    """Sent as `Idempotency-Key`; keep it per execution so the receiver can drop duplicates."""
    method: HttpMethod = HttpMethod.POST
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    json_body: Any = None
    """Sent as JSON when not None; never sent with GET."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    """Budget for the whole attempt: connect, redirects and reading the body."""
    secret_values: list[str] = msgspec.field(default_factory=list)
    """Clear secrets that went into the request, masked in everything this module returns for logs."""


class RenderedURL(msgspec.Struct, frozen=True):
    url: str
    warnings: list[str]


class PreparedRequest(msgspec.Struct, frozen=True):
    request: WebhookRequest
    warnings: list[str]


_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")


def build_url(template_url: str, names: Mapping[str, Any], *, strict: bool = False) -> RenderedURL:
    """Render `{{ ... }}` expressions in a URL's path, query and fragment, percent-encoding each value.

    Every expression's output is encoded as one value (`/`, `?`, `&`, `=` and `#` included),
    so a customer's message can change a path segment or a query value but never the
    URL's shape; the literal text around expressions is kept as written.
    """
    if "{%" in template_url or "{#" in template_url:
        raise URLTemplateError("webhook URLs take only {{ expressions }}; move logic into a variable")
    expressions: list[str] = []

    def stash(match: re.Match[str]) -> str:
        expressions.append(match.group(0))
        return f"\x00{len(expressions) - 1}\x00"

    skeleton = _EXPRESSION.sub(stash, template_url)
    if not expressions:
        return RenderedURL(url=template_url, warnings=[])
    scheme_end = skeleton.find("://")
    if scheme_end < 0:
        raise URLTemplateError(f"{template_url!r} must start with http:// or https://")
    authority_end = len(skeleton)
    for separator in "/?#":
        found = skeleton.find(separator, scheme_end + 3)
        if found >= 0:
            authority_end = min(authority_end, found)
    if "\x00" in skeleton[:authority_end]:
        raise URLTemplateError(
            f"{template_url!r} has a template in its scheme or host; templates are allowed in the path and query only"
        )
    warnings: list[str] = []
    rendered: list[str] = []
    for expression in expressions:
        result = templates.render_text(expression, dict(names), strict=strict)
        warnings.extend(result.warnings)
        rendered.append(quote(str(result.value), safe=""))
    url = skeleton[:authority_end] + _PLACEHOLDER.sub(
        lambda m: rendered[int(m.group(1))], skeleton[authority_end:]
    )
    return RenderedURL(url=url, warnings=warnings)


def apply_auth(
    headers: Mapping[str, str],
    *,
    auth_type: AuthType | str,
    secret: str,
    header_name: str = "X-API-Key",
) -> dict[str, str]:
    """A copy of `headers` with the auth header added; also add `secret` to the request's secret_values."""
    kind = AuthType(auth_type)
    result = dict(headers)
    if kind is AuthType.NONE:
        return result
    if not secret:
        raise ValueError(f"auth type {kind.value!r} needs a secret; set one in the action's auth settings")
    if kind is AuthType.BEARER:
        drop_header(result, "Authorization")
        result["Authorization"] = f"Bearer {secret}"
    else:
        if not header_name.strip():
            raise ValueError("auth type 'api_key' needs a header name, e.g. X-API-Key")
        drop_header(result, header_name)
        result[header_name.strip()] = secret
    return result


def prepare_request(
    *,
    url_template: str,
    names: Mapping[str, Any],
    idempotency_key: str,
    method: HttpMethod | str = HttpMethod.POST,
    headers_template: Mapping[str, str] | None = None,
    payload_template: Any = None,
    auth_type: AuthType | str = AuthType.NONE,
    secret: str = "",
    header_name: str = "X-API-Key",
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    strict: bool = False,
) -> PreparedRequest:
    """Render a call_webhook config into a WebhookRequest (URL encoded, headers, typed payload, auth)."""
    verb = HttpMethod(str(method).upper())
    built = build_url(url_template, names, strict=strict)
    warnings = list(built.warnings)
    headers: dict[str, str] = {}
    for name, template in (headers_template or {}).items():
        result = templates.render_text(template, dict(names), strict=strict)
        warnings.extend(result.warnings)
        # A rendered line break would let message text inject headers; h11 would refuse it anyway.
        headers[name] = " ".join(str(result.value).splitlines())
    body: Any = None
    if verb not in BODYLESS_METHODS and payload_template is not None:
        result = templates.render_value(payload_template, dict(names), strict=strict)
        warnings.extend(result.warnings)
        body = result.value
    headers = apply_auth(headers, auth_type=auth_type, secret=secret, header_name=header_name)
    request = WebhookRequest(
        method=verb,
        url=built.url,
        headers=headers,
        json_body=body,
        timeout_seconds=timeout_seconds,
        idempotency_key=idempotency_key,
        secret_values=[secret] if secret else [],
    )
    return PreparedRequest(request=request, warnings=warnings)


def mask_secrets(value: Any, secrets: Iterable[str]) -> Any:
    """A deep copy of `value` with every secret replaced by "***", and sensitive header values masked."""
    needles = sorted({s for s in secrets if s}, key=len, reverse=True)
    return _mask(value, needles)


def _mask(value: Any, needles: list[str]) -> Any:
    if isinstance(value, str):
        for needle in needles:
            if needle in value:
                value = value.replace(needle, MASK)
        return value
    if isinstance(value, Mapping):
        return {
            _mask(key, needles): _mask_sensitive(item)
            if isinstance(key, str) and key.lower() in SENSITIVE_KEYS
            else _mask(item, needles)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_mask(item, needles) for item in value]
    return value


def _mask_sensitive(value: Any) -> str:
    # Keep the scheme of "Bearer <token>" so a log still shows which auth was used.
    if isinstance(value, str) and " " in value.strip():
        return f"{value.strip().split(' ', 1)[0]} {MASK}"
    return MASK


def has_header(headers: Mapping[str, str], name: str) -> bool:
    lowered = name.lower()
    return any(key.lower() == lowered for key in headers)


def drop_header(headers: dict[str, str], name: str) -> None:
    lowered = name.lower()
    for key in [key for key in headers if key.lower() == lowered]:
        del headers[key]
