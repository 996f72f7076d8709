"""An httpcore network backend on asyncio streams that sends each request in one write.

httpcore writes a request as separate pieces (the head, each body chunk, the end of the
message) and, on its default AnyIO backend, every piece is a send system call wrapped in
cancel scopes. Here writes are held until the connection next reads, which httpcore
always does right after sending a request, so a request leaves in one system call; large
bodies are still written as they come (past `FLUSH_BYTES`) with back-pressure.

Used by the Graph API sender and, under the address guard, by webhook calls
(app.services.netguard).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

FLUSH_BYTES = 64 * 1024


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def _flush(self) -> None:
        if self._pending:
            self._writer.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_bytes = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            self._flush()
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "timed out reading the response") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._pending.append(buffer)
        self._pending_bytes += len(buffer)
        if self._pending_bytes < FLUSH_BYTES:
            return
        try:
            self._flush()
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "timed out sending the request") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._pending.clear()
        self._writer.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            self._flush()
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "timed out in the TLS handshake") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # The transport reads eagerly: an idle connection the server closed shows as EOF.
            return self._reader.at_eof() or self._writer.transport.is_closing()
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"timed out connecting to {path}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def connection_pool(*, limits: httpx.Limits, ssl_context: ssl.SSLContext,
                    network_backend: httpcore.AsyncNetworkBackend | None = None) -> httpcore.AsyncConnectionPool:
    """httpcore's HTTP/1.1 pool with httpx's limits, connecting through `network_backend`."""
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=network_backend or AsyncioBackend(),
    )


class ShardPicker:
    """Chooses one of several connection pools: an origin's home pool while it is idle, else the least busy.

    httpcore's pool rescans all its connections for every queued request on every state
    change (encode/httpcore#1035, encode/httpx#3215): with 100 concurrent calls to one host
    a single 256-connection pool spends most of the CPU there, requests queue for hundreds
    of milliseconds and throughput collapses. Pools of a few connections keep each scan
    short. Each origin has a home pool so that, at low load, its calls keep landing on the
    same warm keep-alive connections; under load they spill to the idlest pool.
    """

    def __init__(self, count: int) -> None:
        self.in_flight = [0] * count

    def pick(self, origin: tuple[Any, ...]) -> int:
        home = hash(origin) % len(self.in_flight)
        if self.in_flight[home] == 0:
            return home
        return self.in_flight.index(min(self.in_flight))


class ShardedConnectionPool:
    """Small httpcore pools behind a ShardPicker, for trusted endpoints whose answers are read whole.

    Requests skip httpx's request and response models (URL parsing, header objects, stream
    wrappers: a quarter of the Graph API sender's CPU); that is all this adds to httpcore.
    """

    def __init__(self, *, max_connections: int, connections_per_pool: int = 4, keepalive_expiry_s: float = 30.0,
                 network_backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        per_pool = max(1, connections_per_pool)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool,
                              keepalive_expiry=keepalive_expiry_s)
        ssl_context = httpx.create_ssl_context(trust_env=False)
        self._pools = [connection_pool(limits=limits, ssl_context=ssl_context, network_backend=network_backend)
                       for _ in range(max(1, max_connections // per_pool))]
        self._picker = ShardPicker(len(self._pools))

    async def request(self, method: bytes, url: httpcore.URL, *, headers: list[tuple[bytes, bytes]],
                      content: bytes, timeout_s: float) -> httpcore.Response:
        """Send and read the whole answer; httpcore's exceptions (ConnectError, ReadTimeout, ...) pass through."""
        index = self._picker.pick((url.scheme, url.host, url.port))
        self._picker.in_flight[index] += 1
        try:
            return await self._pools[index].request(
                method, url, headers=headers, content=content,
                extensions={"timeout": {"connect": timeout_s, "read": timeout_s, "write": timeout_s,
                                        "pool": timeout_s}})
        finally:
            self._picker.in_flight[index] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()
