"""The one keep-alive connection pool every outbound request goes through.

Each connection speaks HTTP/1.1 through app.http.connection (httptools parses the answers);
the pool replaces httpcore's `AsyncConnectionPool`, whose locks, request queue and rescans
of every connection for every queued request (encode/httpcore#1035, encode/httpx#3215)
cost about a third of each request's CPU at 64 concurrent (bench: 300 -> 215 us per
request) and collapse throughput with a hundred calls to one host. Here a request takes
the most recently used idle connection to its origin, or opens one while fewer than
`max_connections` are busy, and puts it back when the exchange ended cleanly.

Connections are opened through a network backend: `AsyncioBackend` for trusted endpoints
(the Graph API, the LLM), or `GuardedBackend` (app.http.guard), which resolves, checks and
connects to the checked address in one step, once per connection. A keep-alive connection
stays bound to the address it was checked for.
"""

from __future__ import annotations

import asyncio
import ssl

import certifi
import httpcore
import msgspec

from app.http.connection import Http11Connection
from app.http.stream import AsyncioBackend


class Answer(msgspec.Struct, frozen=True):
    """An HTTP answer read whole (or up to a cap)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    content: bytes
    truncated: bool = False  # the body was longer than the cap and was cut there

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None


def tls_context(*, verify: bool = True) -> ssl.SSLContext:
    """One context per pool: loading the CA bundle takes tens of milliseconds."""
    context = ssl.create_default_context(cafile=certifi.where())  # the bundle httpx uses
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


Origin = tuple[bytes, bytes, int | None]


class KeepAlivePool:
    """Keep-alive HTTP/1.1 connections, one request at a time on each."""

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry_s: float = 30.0,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_connections
        self._idle_count = 0
        self._keepalive_expiry_s = keepalive_expiry_s
        self._backend = network_backend or AsyncioBackend()
        self._ssl_context = ssl_context or tls_context()
        self._idle: dict[Origin, list[Http11Connection]] = {}

    async def request(
        self,
        method: bytes,
        url: httpcore.URL,
        *,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
        timeout_s: float,
        max_body_bytes: int | None = None,
    ) -> Answer:
        """Send and read the answer (at most `max_body_bytes` of its body).

        httpcore's exceptions (ConnectError, ReadTimeout, ...) and the guard's refusal pass
        through. A connection whose body was cut short is closed, never reused.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpcore.PoolTimeout(f"no free connection within {timeout_s} s") from exc
        try:
            connection = await self._connection(url, timeout_s)
            try:
                status, answer_headers, body, truncated = await connection.exchange(
                    method,
                    url.target,
                    [*_request_headers(method, url, content), *headers],
                    content,
                    timeout_s=timeout_s,
                    max_body_bytes=max_body_bytes,
                )
            except BaseException:
                await connection.aclose()  # its state is unknown: never reuse it
                raise
            if connection.is_idle() and self._idle_count < self._max_idle:
                self._idle.setdefault(_origin(url), []).append(connection)
                self._idle_count += 1
            else:
                await connection.aclose()
            return Answer(status=status, headers=answer_headers, content=body, truncated=truncated)
        finally:
            self._slots.release()

    async def _connection(self, url: httpcore.URL, timeout_s: float) -> Http11Connection:
        idle = self._idle.get(_origin(url), [])
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()  # past its keep-alive, or closed by the server
        # About to open one: close what other origins left idle past its keep-alive (a webhook
        # host called once would otherwise hold its socket until it is called again).
        await self._close_expired()
        host = url.host.decode("ascii")
        port = url.port or (443 if url.scheme == b"https" else 80)
        stream = await self._backend.connect_tcp(host, port, timeout=timeout_s)
        if url.scheme == b"https":
            try:
                stream = await stream.start_tls(self._ssl_context, server_hostname=host, timeout=timeout_s)
            except BaseException:
                await stream.aclose()
                raise
        return Http11Connection(stream, keepalive_expiry_s=self._keepalive_expiry_s)

    async def _close_expired(self) -> None:
        stale: list[Http11Connection] = []
        for origin, connections in list(self._idle.items()):
            keep = [c for c in connections if c.is_idle() and not c.has_expired()]
            if len(keep) < len(connections):
                stale.extend(c for c in connections if c not in keep)
                if keep:
                    self._idle[origin] = keep
                else:
                    del self._idle[origin]
        self._idle_count -= len(stale)
        for connection in stale:  # after the bookkeeping: closing awaits, and others may run meanwhile
            await connection.aclose()

    def idle_connections(self, url: httpcore.URL) -> list[Http11Connection]:
        """The idle keep-alive connections to the URL's origin (for tests and diagnostics)."""
        return list(self._idle.get(_origin(url), []))

    async def aclose(self) -> None:
        idle, self._idle, self._idle_count = self._idle, {}, 0
        for connections in idle.values():
            for connection in connections:
                await connection.aclose()


def _origin(url: httpcore.URL) -> Origin:
    return url.scheme, url.host, url.port


_BODYLESS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})


def _request_headers(method: bytes, url: httpcore.URL, content: bytes) -> list[tuple[bytes, bytes]]:
    default_port = 443 if url.scheme == b"https" else 80
    host = url.host if url.port in (None, default_port) else b"%b:%d" % (url.host, url.port)
    if not content and method in _BODYLESS:
        return [(b"Host", host)]
    return [(b"Host", host), (b"Content-Length", b"%d" % len(content))]
