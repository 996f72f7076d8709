"""One outbound webhook attempt for action.call_webhook: built, guarded, sent, capped and classified."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC
from enum import Enum
from importlib import metadata
from types import ModuleType
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from app.services.netguard import (
    BlockedURLError,
    GuardedTransport,
    IPNetwork,
    ResolutionError,
    Resolver,
    check_url,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024
DEFAULT_TIMEOUT_SECONDS = 5.0
MASK = "***"


def _version() -> str:
    try:
        return metadata.version("switchboard")
    except metadata.PackageNotFoundError:
        # Running from a checkout that was never pip-installed.
        return "dev"


USER_AGENT = f"Switchboard/{_version()}"


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


class AttemptStatus(str, Enum):
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"


RETRYABLE_STATUS_CODES = frozenset({408, 429})
"""Besides every 5xx: the other codes that mean "try again later"."""
REDIRECT_STATUS_CODES = frozenset({301, 302, 303, 307, 308})
REDIRECTS_TO_GET = frozenset({301, 302, 303})
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


class AttemptResult(msgspec.Struct, kw_only=True):
    """The outcome of one attempt: everything a log row, a counter and the retry decision need."""

    status: AttemptStatus
    status_code: int | None
    response: Any
    """Parsed JSON when the response is JSON, else text; None for an empty body or no response."""
    response_text: str
    """The body as text, masked and capped for logs."""
    truncated: bool
    """The body was longer than max_response_bytes and was cut there."""
    error: str | None
    duration_ms: float
    retryable: bool
    retry_after_seconds: float | None
    """The server's Retry-After, capped; None when it sent none."""
    payload_masked: dict[str, Any]
    """{"method", "url", "headers", "body"} as first sent, secrets replaced by "***"."""
    final_url: str
    """Where the last request went (after redirects), masked."""
    redirects: int = 0

    @property
    def succeeded(self) -> bool:
        return self.status is AttemptStatus.SUCCESS


class RenderedURL(msgspec.Struct, frozen=True):
    url: str
    warnings: list[str]


class PreparedRequest(msgspec.Struct, frozen=True):
    request: WebhookRequest
    warnings: list[str]


# ---------------------------------------------------------------- templating


def _templates() -> ModuleType:
    """The flow template renderer (flows.templates: render_text / render_value).

    The single seam between this module and rendering; imported on use so that importing
    the HTTP client never depends on the template module being loaded.
    """
    from flows import templates

    return templates


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
    templates = _templates()
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
        _drop_header(result, "Authorization")
        result["Authorization"] = f"Bearer {secret}"
    else:
        if not header_name.strip():
            raise ValueError("auth type 'api_key' needs a header name, e.g. X-API-Key")
        _drop_header(result, header_name)
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
    templates = _templates()
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


# ---------------------------------------------------------------- masking and backoff


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


def backoff_seconds(
    attempt: int,
    *,
    base_s: float,
    retry_after_s: float | None,
    cap_s: float,
    rng: random.Random,
) -> float:
    """Delay before the retry that follows failed attempt number `attempt` (1-based).

    Full jitter over base_s * 2**(attempt-1) spreads retries of many executions apart; a
    server's Retry-After is a floor, and nothing waits longer than cap_s.
    """
    exponent = min(max(attempt, 1) - 1, 62)
    ceiling = min(cap_s, base_s * math.pow(2, exponent))
    delay = rng.uniform(0.0, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return max(0.0, min(cap_s, delay))


def parse_retry_after(value: str | None, *, now_s: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s))


def classify_status(status_code: int) -> tuple[AttemptStatus, bool]:
    """(status, retryable) for a final HTTP status code."""
    if 200 <= status_code < 300:
        return AttemptStatus.SUCCESS, False
    return AttemptStatus.FAILED, status_code >= 500 or status_code in RETRYABLE_STATUS_CODES


# ---------------------------------------------------------------- the client


class _Exchange(msgspec.Struct):
    status_code: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool
    final_url: str
    redirects: int
    retry_after: str | None


class _TooManyRedirects(Exception):
    pass


class WebhookClient:
    """One per process: pooled keep-alive connections, SSRF-guarded, one call of attempt() = one attempt."""

    def __init__(
        self,
        *,
        max_connections: int = 256,
        connections_per_pool: int = 4,
        keepalive_expiry_s: float = 30.0,
        retry_after_cap_seconds: float = 60.0,
        max_redirects: int = 3,
        response_text_chars: int = 16 * 1024,
        allowed_networks: Sequence[IPNetwork] = (),
        resolver: Resolver | None = None,
        user_agent: str = USER_AGENT,
        verify_tls: bool = True,
    ) -> None:
        per_shard = max(1, min(connections_per_pool, max_connections))
        self._pool_shards = max(1, -(-max_connections // per_shard))
        # Keep-alive limit = connection limit: idle connections are never evicted early, and
        # httpcore's surplus-idle eviction (which miscounts, encode/httpcore#1035) never runs.
        self._limits = httpx.Limits(
            max_connections=per_shard,
            max_keepalive_connections=per_shard,
            keepalive_expiry=keepalive_expiry_s,
        )
        self.retry_after_cap_seconds = retry_after_cap_seconds
        self.max_redirects = max_redirects
        self.response_text_chars = response_text_chars
        self._allowed_networks = tuple(allowed_networks)
        self._resolver = resolver
        self._user_agent = user_agent
        self._verify_tls = verify_tls
        self._ssl_context: ssl.SSLContext | None = None
        # Keyed by allow_private: the guarded pool must never hand out a connection that an
        # unguarded request opened. A process normally uses only one of the two.
        self._pools: dict[bool, httpx.AsyncBaseTransport] = {}

    def _pool(self, allow_private: bool) -> httpx.AsyncBaseTransport:
        """The process-wide connection pool for this guard mode, made on first use.

        Requests go to the pool directly rather than through an httpx.AsyncClient: a
        client's cookie jar is shared by every request it sends, so one customer's endpoint
        could set cookies that would then ride along on another workspace's calls; and its
        redirect and auth machinery is replaced by ours anyway.
        """
        pool = self._pools.get(allow_private)
        if pool is None:
            shards = [self._transport(allow_private) for _ in range(self._pool_shards)]
            pool = shards[0] if len(shards) == 1 else ShardedTransport(shards)
            self._pools[allow_private] = pool
        return pool

    def _transport(self, allow_private: bool) -> httpx.AsyncBaseTransport:
        if self._ssl_context is None:
            # One context for every pool: loading the CA bundle takes tens of milliseconds,
            # and doing it per pool would stall the event loop for seconds.
            self._ssl_context = httpx.create_ssl_context(verify=self._verify_tls, trust_env=False)
        if allow_private:
            return httpx.AsyncHTTPTransport(limits=self._limits, trust_env=False, verify=self._ssl_context)
        return GuardedTransport(
            limits=self._limits,
            ssl_context=self._ssl_context,
            allowed_networks=self._allowed_networks,
            resolver=self._resolver,
        )

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def attempt(
        self,
        request: WebhookRequest,
        *,
        allow_private: bool,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> AttemptResult:
        """Send the request once (following up to max_redirects guarded redirects) and classify the outcome.

        Never raises for network, HTTP or guard failures: they come back as a result with
        `retryable` set, so the caller can log the attempt and schedule the next one.
        """
        started = time.perf_counter()
        method = HttpMethod(request.method)
        headers = {"User-Agent": self._user_agent, "Accept": "application/json, */*;q=0.5"}
        headers.update(request.headers)
        _drop_header(headers, "Idempotency-Key")
        headers["Idempotency-Key"] = request.idempotency_key
        body: bytes | None = None
        if method not in BODYLESS_METHODS and request.json_body is not None:
            body = msgspec.json.encode(request.json_body)
            if not _has_header(headers, "Content-Type"):
                headers["Content-Type"] = "application/json"
        sent = {
            "method": method.value,
            "url": request.url,
            "headers": headers,
            "body": request.json_body if body is not None else None,
        }
        status_code: int | None = None
        final_url = request.url
        redirects = 0
        try:
            async with asyncio.timeout(request.timeout_seconds):
                exchange = await self._exchange(
                    method,
                    request.url,
                    headers,
                    body,
                    secrets=request.secret_values,
                    allow_private=allow_private,
                    max_response_bytes=max_response_bytes,
                    timeout_s=request.timeout_seconds,
                )
        except BlockedURLError as exc:
            logger.warning(
                "webhook refused by the address guard: %s", mask_secrets(exc.reason, request.secret_values)
            )
            return self._failure(
                request, sent, started, AttemptStatus.FAILED, f"blocked: {exc.reason}", False
            )
        except _TooManyRedirects as exc:
            return self._failure(request, sent, started, AttemptStatus.FAILED, str(exc), False)
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {request.timeout_seconds:g} s"
            return self._failure(request, sent, started, AttemptStatus.TIMEOUT, error, True)
        except (httpx.LocalProtocolError, httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            # Our request was malformed (a bad header value, say): sending it again cannot help.
            error = f"invalid request: {exc}"
            return self._failure(request, sent, started, AttemptStatus.FAILED, error, False)
        except (httpx.TransportError, ResolutionError) as exc:
            error = f"connection failed: {exc or type(exc).__name__}"
            return self._failure(request, sent, started, AttemptStatus.FAILED, error, True)

        status_code = exchange.status_code
        final_url = exchange.final_url
        redirects = exchange.redirects
        status, retryable = classify_status(status_code)
        text = _decode(exchange.body, exchange.charset)
        response = _parse_body(exchange.body, text, exchange.content_type, truncated=exchange.truncated)
        retry_after = None
        if retryable and exchange.retry_after is not None:
            parsed = parse_retry_after(exchange.retry_after)
            retry_after = None if parsed is None else min(parsed, self.retry_after_cap_seconds)
        error = None
        if status is not AttemptStatus.SUCCESS:
            error = f"HTTP {status_code}" + ("" if retryable else " (not retried)")
        return AttemptResult(
            status=status,
            status_code=status_code,
            response=response,
            response_text=mask_secrets(text[: self.response_text_chars], request.secret_values),
            truncated=exchange.truncated,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            retryable=retryable,
            retry_after_seconds=retry_after,
            payload_masked=mask_secrets(sent, request.secret_values),
            final_url=mask_secrets(final_url, request.secret_values),
            redirects=redirects,
        )

    def _failure(
        self,
        request: WebhookRequest,
        sent: dict[str, Any],
        started: float,
        status: AttemptStatus,
        error: str,
        retryable: bool,
    ) -> AttemptResult:
        return AttemptResult(
            status=status,
            status_code=None,
            response=None,
            response_text="",
            truncated=False,
            error=mask_secrets(error, request.secret_values),
            duration_ms=(time.perf_counter() - started) * 1000.0,
            retryable=retryable,
            retry_after_seconds=None,
            payload_masked=mask_secrets(sent, request.secret_values),
            final_url=mask_secrets(request.url, request.secret_values),
        )

    async def _exchange(
        self,
        method: HttpMethod,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        secrets: Sequence[str],
        allow_private: bool,
        max_response_bytes: int,
        timeout_s: float,
    ) -> _Exchange:
        pool = self._pool(allow_private)
        extensions = {"timeout": httpx.Timeout(timeout_s).as_dict()}
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise BlockedURLError(f"{url!r} is not a valid URL: {exc}") from exc
        redirects = 0
        while True:
            await check_url(
                current,
                allow_private=allow_private,
                allowed_networks=self._allowed_networks,
                resolver=self._resolver,
            )
            outgoing = httpx.Request(
                method.value, current, headers=headers, content=body, extensions=extensions
            )
            response = await pool.handle_async_request(outgoing)
            response.request = outgoing
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUS_CODES and location:
                    if redirects >= self.max_redirects:
                        raise _TooManyRedirects(
                            f"more than {self.max_redirects} redirects; call the final URL directly"
                        )
                    next_url = response.url.join(location)
                    if response.status_code in REDIRECTS_TO_GET:
                        method, body = HttpMethod.GET, None
                        headers = {
                            k: v
                            for k, v in headers.items()
                            if k.lower() not in {"content-type", "content-length"}
                        }
                    if _origin(next_url) != _origin(response.url):
                        # Credentials were meant for the first host, not for wherever it points us.
                        headers = _without_credentials(headers, secrets)
                    current = next_url
                    redirects += 1
                    continue
                chunks: list[bytes] = []
                size = 0
                truncated = False
                async for chunk in response.aiter_bytes():
                    room = max_response_bytes - size
                    if len(chunk) > room:
                        chunks.append(chunk[:room])
                        truncated = True
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                return _Exchange(
                    status_code=response.status_code,
                    content_type=response.headers.get("content-type", ""),
                    charset=response.charset_encoding,
                    body=b"".join(chunks),
                    truncated=truncated,
                    final_url=str(response.url),
                    redirects=redirects,
                    retry_after=response.headers.get("retry-after"),
                )
            finally:
                await response.aclose()


class ShardedTransport(httpx.AsyncBaseTransport):
    """Spreads requests over many small connection pools: a host's home pool first, else the least busy.

    httpcore's pool rescans all its connections for every queued request on every state
    change (encode/httpcore#1035, encode/httpx#3215): with 100 concurrent calls to one host
    a single 256-connection pool spends most of the CPU there, requests queue for hundreds
    of milliseconds and throughput collapses. Pools of a few connections keep each scan
    short. Each origin has a home pool so that, at low load, its calls keep landing on the
    same warm keep-alive connections; under load they spill to the idlest pool.
    """

    def __init__(self, shards: Sequence[httpx.AsyncBaseTransport]) -> None:
        self._shards = list(shards)
        self._in_flight = [0] * len(self._shards)

    def _pick(self, url: httpx.URL) -> int:
        home = hash((url.scheme, url.host, url.port)) % len(self._shards)
        if self._in_flight[home] == 0:
            return home
        return self._in_flight.index(min(self._in_flight))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self._pick(request.url)
        self._in_flight[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self._in_flight[index] -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ShardStream(response.stream, self._in_flight, index),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _ShardStream(httpx.AsyncByteStream):
    """A response body that gives its shard's in-flight slot back when closed."""

    def __init__(self, stream: httpx.AsyncByteStream, in_flight: list[int], index: int) -> None:
        self._stream = stream
        self._in_flight = in_flight
        self._index = index
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._in_flight[self._index] -= 1
        await self._stream.aclose()


# ---------------------------------------------------------------- helpers


def _has_header(headers: Mapping[str, str], name: str) -> bool:
    lowered = name.lower()
    return any(key.lower() == lowered for key in headers)


def _drop_header(headers: dict[str, str], name: str) -> None:
    lowered = name.lower()
    for key in [key for key in headers if key.lower() == lowered]:
        del headers[key]


def _without_credentials(headers: Mapping[str, str], secrets: Sequence[str]) -> dict[str, str]:
    needles = [s for s in secrets if s]
    return {
        key: value
        for key, value in headers.items()
        if key.lower() not in SENSITIVE_KEYS and not any(needle in value for needle in needles)
    }


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _parse_body(body: bytes, text: str, content_type: str, *, truncated: bool) -> Any:
    if not body:
        return None
    looks_json = "json" in content_type.lower() or text.lstrip()[:1] in ("{", "[")
    if looks_json and not truncated:
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError:
            pass
    return text
