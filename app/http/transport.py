"""httpx on the pool: `httpx_client()` for code that speaks httpx (the OpenAI SDK, channel checks).

An `httpx.AsyncClient` built here sends every request through a KeepAlivePool (and so
through its guard, when the pool has one), reading each answer whole. httpx's exceptions
are raised, so callers written for httpx need no change. Redirects are refused: the answer
reaches the client without its Location header, so no client follows it.
"""

from __future__ import annotations

import httpcore
import httpx

from app.http.guard import BlockedURLError
from app.http.pool import KeepAlivePool

# httpcore's exceptions as httpx's, most specific first (httpx keeps its own mapping private).
_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException),
]


class PoolTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose requests go through a KeepAlivePool."""

    def __init__(self, pool: KeepAlivePool, *, default_timeout_s: float = 30.0) -> None:
        self._pool = pool
        self._default_timeout_s = default_timeout_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        timeout_s = max((t for t in timeouts.values() if t is not None), default=self._default_timeout_s)
        url = request.url
        try:
            answer = await self._pool.request(
                request.method.encode(),
                httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
                headers=[
                    (k, v) for k, v in request.headers.raw if k.lower() not in (b"host", b"content-length")
                ],
                content=await request.aread(),
                timeout_s=timeout_s,
            )
        except BlockedURLError as exc:
            raise httpx.ConnectError(f"blocked: {exc.reason}", request=request) from exc
        except Exception as exc:
            for core, mapped in _ERRORS:
                if isinstance(exc, core):
                    raise mapped(str(exc) or type(exc).__name__, request=request) from exc
            raise
        headers = answer.headers
        if 300 <= answer.status < 400:
            # The OpenAI SDK follows redirects by default: a 307 from a tenant's LLM URL would send
            # the customer's text and the API key wherever it points, resolved again. Without a
            # Location header no client follows, and the caller sees the 3xx.
            headers = [(key, value) for key, value in headers if key.lower() != b"location"]
        return httpx.Response(status_code=answer.status, headers=headers, content=answer.content)

    async def aclose(self) -> None:
        """The pool belongs to whoever built it (one per process): closing a client leaves it open."""


def httpx_client(pool: KeepAlivePool, **options: object) -> httpx.AsyncClient:
    """An httpx client on `pool`; no environment proxies (a proxy would bypass the pool's guard)."""
    return httpx.AsyncClient(transport=PoolTransport(pool), trust_env=False, **options)  # type: ignore[arg-type]
