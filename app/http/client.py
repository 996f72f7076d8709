"""One outbound webhook attempt: sent through the guarded pool, redirects re-checked, body capped, classified."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import httpcore
import httpx
import msgspec

from app.http.guard import BlockedURLError, GuardedBackend, IPNetwork, Resolver, validate_url
from app.http.pool import KeepAlivePool, tls_context
from app.http.request import (
    BODYLESS_METHODS,
    SENSITIVE_KEYS,
    HttpMethod,
    WebhookRequest,
    drop_header,
    has_header,
    mask_secrets,
)
from app.http.retry import AttemptStatus, classify_status, parse_retry_after

logger = logging.getLogger(__name__)

DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024


def _version() -> str:
    try:
        return metadata.version("switchboard")
    except metadata.PackageNotFoundError:
        # Running from a checkout that was never pip-installed.
        return "dev"


USER_AGENT = f"Switchboard/{_version()}"


REDIRECT_STATUS_CODES = frozenset({301, 302, 303, 307, 308})
REDIRECTS_TO_GET = frozenset({301, 302, 303})


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
    """One per process: keep-alive connections, address-guarded, one call of attempt() = one attempt.

    Requests go to the pool directly rather than through an httpx.AsyncClient: a client's
    cookie jar is shared by every request it sends, so one customer's endpoint could set
    cookies that would then ride along on another workspace's calls; and its redirect and
    auth machinery is replaced by ours anyway.
    """

    def __init__(
        self,
        *,
        max_connections: int = 256,
        keepalive_expiry_s: float = 30.0,
        retry_after_cap_seconds: float = 60.0,
        max_redirects: int = 3,
        response_text_chars: int = 16 * 1024,
        allowed_networks: Sequence[IPNetwork] = (),
        resolver: Resolver | None = None,
        user_agent: str = USER_AGENT,
        verify_tls: bool = True,
    ) -> None:
        self.retry_after_cap_seconds = retry_after_cap_seconds
        self.max_redirects = max_redirects
        self.response_text_chars = response_text_chars
        self._user_agent = user_agent
        tls = tls_context(verify=verify_tls)
        # Two pools: a connection opened without the guard must never serve a guarded request.
        self._guarded = KeepAlivePool(
            max_connections=max_connections,
            keepalive_expiry_s=keepalive_expiry_s,
            ssl_context=tls,
            network_backend=GuardedBackend(allowed_networks=allowed_networks, resolver=resolver),
        )
        self._open = KeepAlivePool(
            max_connections=max_connections, keepalive_expiry_s=keepalive_expiry_s, ssl_context=tls
        )

    async def aclose(self) -> None:
        await self._guarded.aclose()
        await self._open.aclose()

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
        """Send the request once (following up to max_redirects re-checked redirects) and classify the outcome.

        Never raises for network, HTTP or guard failures: they come back as a result with
        `retryable` set, so the caller can log the attempt and schedule the next one.
        """
        started = time.perf_counter()
        method = HttpMethod(request.method)
        headers = {"User-Agent": self._user_agent, "Accept": "application/json, */*;q=0.5"}
        headers.update(request.headers)
        drop_header(headers, "Idempotency-Key")
        headers["Idempotency-Key"] = request.idempotency_key
        body: bytes | None = None
        if method not in BODYLESS_METHODS and request.json_body is not None:
            body = msgspec.json.encode(request.json_body)
            if not has_header(headers, "Content-Type"):
                headers["Content-Type"] = "application/json"
        sent = {
            "method": method.value,
            "url": request.url,
            "headers": headers,
            "body": request.json_body if body is not None else None,
        }
        try:
            async with asyncio.timeout(request.timeout_seconds):
                exchange = await self._exchange(
                    method,
                    request.url,
                    headers,
                    body,
                    secrets=request.secret_values,
                    pool=self._open if allow_private else self._guarded,
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
        except (TimeoutError, httpcore.TimeoutException):
            reason = f"timed out after {request.timeout_seconds:g} s"
            return self._failure(request, sent, started, AttemptStatus.TIMEOUT, reason, True)
        except (httpcore.LocalProtocolError, httpcore.UnsupportedProtocol, httpx.InvalidURL) as exc:
            # Our request was malformed (a bad header value, say): sending it again cannot help.
            reason = f"invalid request: {exc}"
            return self._failure(request, sent, started, AttemptStatus.FAILED, reason, False)
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            reason = f"connection failed: {exc or type(exc).__name__}"
            return self._failure(request, sent, started, AttemptStatus.FAILED, reason, True)

        status_code = exchange.status_code
        status, retryable = classify_status(status_code)
        text = _decode(exchange.body, exchange.charset)
        response = _parse_body(exchange.body, text, exchange.content_type, truncated=exchange.truncated)
        retry_after: float | None = None
        if retryable and exchange.retry_after is not None:
            parsed = parse_retry_after(exchange.retry_after)
            retry_after = None if parsed is None else min(parsed, self.retry_after_cap_seconds)
        error: str | None = None
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
            final_url=mask_secrets(exchange.final_url, request.secret_values),
            redirects=exchange.redirects,
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
        pool: KeepAlivePool,
        max_response_bytes: int,
        timeout_s: float,
    ) -> _Exchange:
        current = validate_url(url)
        redirects = 0
        while True:
            answer = await pool.request(
                method.value.encode(),
                _core_url(current),
                headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
                content=body or b"",
                timeout_s=timeout_s,
                max_body_bytes=max_response_bytes,
            )
            location = answer.header("location")
            if answer.status in REDIRECT_STATUS_CODES and location:
                if redirects >= self.max_redirects:
                    raise _TooManyRedirects(
                        f"more than {self.max_redirects} redirects; call the final URL directly"
                    )
                # Checked like the first URL; its addresses are checked when the pool connects.
                next_url = validate_url(current.join(location))
                if answer.status in REDIRECTS_TO_GET:
                    method, body = HttpMethod.GET, None
                    headers = {
                        k: v
                        for k, v in headers.items()
                        if k.lower() not in {"content-type", "content-length"}
                    }
                if _origin(next_url) != _origin(current):
                    # Credentials were meant for the first host, not for wherever it points us.
                    headers = _without_credentials(headers, secrets)
                current = next_url
                redirects += 1
                continue
            content_type = answer.header("content-type") or ""
            return _Exchange(
                status_code=answer.status,
                content_type=content_type,
                charset=_charset(content_type),
                body=answer.content,
                truncated=answer.truncated,
                final_url=str(current),
                redirects=redirects,
                retry_after=answer.header("retry-after"),
            )


def _without_credentials(headers: Mapping[str, str], secrets: Sequence[str]) -> dict[str, str]:
    needles = [s for s in secrets if s]
    return {
        key: value
        for key, value in headers.items()
        if key.lower() not in SENSITIVE_KEYS and not any(needle in value for needle in needles)
    }


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _core_url(url: httpx.URL) -> httpcore.URL:
    return httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path)


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"').strip()
    return None


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
