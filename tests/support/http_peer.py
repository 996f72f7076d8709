"""A real HTTP/1.1 server on 127.0.0.1 that plays the other side (a webhook, Graph API, OpenAI) in tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import msgspec
import pytest_asyncio

MAX_HEADER_BYTES = 64 * 1024


class PeerRequest(msgspec.Struct, kw_only=True):
    """One request as the peer received it."""

    method: str
    target: str
    """The raw request target, e.g. "/orders/a%20b?x=1"."""
    path: str
    """The target without its query, still percent-encoded."""
    query: str
    headers: dict[str, str]
    """Lower-cased names; repeated headers joined with ", "."""
    body: bytes
    connection_id: int
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)

    def query_params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)


class PeerResponse(msgspec.Struct, kw_only=True):
    """What a handler answers; `delay_s` waits before the status line is written."""

    status: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0

    @classmethod
    def json(cls, value: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> PeerResponse:
        return cls(
            status=status,
            headers={"Content-Type": "application/json", **(headers or {})},
            body=json.dumps(value).encode(),
        )

    @classmethod
    def text(cls, value: str, *, status: int = 200, headers: dict[str, str] | None = None) -> PeerResponse:
        return cls(
            status=status,
            headers={"Content-Type": "text/plain; charset=utf-8", **(headers or {})},
            body=value.encode(),
        )


Handler = Callable[[PeerRequest], Awaitable[PeerResponse]]


class HttpPeer:
    """An asyncio-streams HTTP/1.1 server with keep-alive, routes and a request log.

    Use `async with HttpPeer() as peer:` or the `http_peer` fixture; register routes with
    `peer.route("POST", "/hook", handler)`, `peer.reply(...)` or `peer.sequence(...)`.
    Unknown routes answer 404 (and are recorded like every other request).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[PeerRequest] = []
        self.connections_accepted = 0
        self._routes: dict[tuple[str, str], Handler] = {}
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._changed = asyncio.Condition()

    # routes

    def route(self, method: str, path: str, handler: Handler | None = None) -> Any:
        """Register `handler` for (method, path); without a handler, works as a decorator."""

        def register(fn: Handler) -> Handler:
            self._routes[(method.upper(), path)] = fn
            return fn

        return register if handler is None else register(handler)

    def reply(self, method: str, path: str, response: PeerResponse) -> None:
        """Always answer `response` on (method, path)."""

        async def handler(_request: PeerRequest) -> PeerResponse:
            return response

        self.route(method, path, handler)

    def sequence(self, method: str, path: str, responses: Iterable[PeerResponse]) -> None:
        """Answer these responses in order; the last one repeats."""
        queue = list(responses)

        async def handler(_request: PeerRequest) -> PeerResponse:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.route(method, path, handler)

    # lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"{self.base_url}{path}"

    async def start(self) -> HttpPeer:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> HttpPeer:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # inspection

    def requests_to(self, path: str, *, method: str | None = None) -> list[PeerRequest]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method.upper())]

    async def wait_for_requests(self, count: int, *, timeout_s: float = 5.0) -> list[PeerRequest]:
        """Wait (up to a deadline) until at least `count` requests were received."""
        async with asyncio.timeout(timeout_s):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    # protocol

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Our own task (not the one asyncio.streams makes) so that stop() can cancel it quietly.
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections_accepted += 1
        connection_id = self.connections_accepted
        try:
            while True:
                request = await self._read_request(reader, connection_id)
                if request is None:
                    break
                await self._record(request)
                handler = self._routes.get((request.method, request.path))
                if handler is None:
                    response = PeerResponse.text(f"no route for {request.method} {request.path}", status=404)
                else:
                    response = await handler(request)
                if response.delay_s > 0:
                    await asyncio.sleep(response.delay_s)
                keep_alive = request.headers.get("connection", "").lower() != "close"
                writer.write(self._encode_response(response, keep_alive=keep_alive, method=request.method))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            # The client went away or spoke garbage: this connection is over, the server goes on.
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _record(self, request: PeerRequest) -> None:
        async with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    async def _read_request(self, reader: asyncio.StreamReader, connection_id: int) -> PeerRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                raise
            return None
        if len(head) > MAX_HEADER_BYTES:
            raise ValueError("request head too large")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        path, _, query = target.partition("?")
        return PeerRequest(
            method=method.upper(),
            target=target,
            path=path,
            query=query,
            headers=headers,
            body=body,
            connection_id=connection_id,
            received_at=time.time(),
        )

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # Trailers end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    @staticmethod
    def _encode_response(response: PeerResponse, *, keep_alive: bool, method: str) -> bytes:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Status"
        headers = {k.lower(): (k, v) for k, v in response.headers.items()}
        headers.setdefault("content-length", ("Content-Length", str(len(response.body))))
        headers.setdefault("connection", ("Connection", "keep-alive" if keep_alive else "close"))
        head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.values()
        )
        body = b"" if method == "HEAD" else response.body
        return head.encode("latin-1") + b"\r\n" + body


@contextlib.asynccontextmanager
async def running_peer(*, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[HttpPeer]:
    """`async with running_peer() as peer:` -- started on entry, stopped on exit."""
    async with HttpPeer(host=host, port=port) as peer:
        yield peer


@pytest_asyncio.fixture
async def http_peer() -> AsyncIterator[HttpPeer]:
    """Pytest fixture: `from tests.support.http_peer import http_peer` in a test module, then ask for it."""
    async with running_peer() as peer:
        yield peer
