"""HTTP/1.1 on one keep-alive connection: the request written in one piece, the answer parsed by httptools.

The pool (app.http.pool) keeps these per origin. httpcore's `AsyncHTTP11Connection` did the
same job through h11, a parser written in Python: its events, state machine and per-request
objects cost about a fifth of a worker's CPU when every turn calls a webhook (anchor
benchmark). httptools (llhttp, the parser uvicorn serves our own requests with) reads the
answer in C; what is left here is the bookkeeping of one exchange.

The stream is httpcore's network-stream interface (app.http.stream, or the address guard's
stream around it), and failures are httpcore's exceptions, so callers classify them as before:
`LocalProtocolError` for a request we must not send (a header with a line break),
`RemoteProtocolError` for an answer that breaks HTTP or a connection closed mid-answer, and
the stream's own `ReadTimeout` / `ReadError` / `WriteError`.
"""

from __future__ import annotations

import re
import time

import httpcore
import httptools

READ_SIZE = 64 * 1024
# What h11 refused to send: a field name that is not a token, a value with a line break or NUL.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
_NO_BODY_STATUS = frozenset({204, 304})


class Reply:
    """The parser's callbacks collect one answer here."""

    __slots__ = (
        "chunks",
        "complete",
        "headers",
        "headers_done",
        "keep_alive",
        "limit",
        "parser",
        "size",
        "truncated",
    )

    def __init__(self, limit: int | None) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.limit = limit
        self.on_message_begin()

    def on_message_begin(self) -> None:
        # Again after an interim answer (100 Continue, 103 Early Hints): the final one replaces it.
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.truncated:
            return
        if self.limit is not None and self.size + len(body) > self.limit:
            self.chunks.append(body[: self.limit - self.size])
            self.size = self.limit
            self.truncated = True
            return
        self.chunks.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        # Read here: once the message is complete the parser resets for the next one.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = self.parser.get_status_code() >= 200

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Http11Connection:
    """One request at a time; reusable after an answer read whole that did not ask to close."""

    def __init__(self, stream: httpcore.AsyncNetworkStream, *, keepalive_expiry_s: float) -> None:
        self._stream = stream
        self._keepalive_expiry_s = keepalive_expiry_s
        self._idle_since: float | None = time.monotonic()
        self._closed = False

    def is_idle(self) -> bool:
        return self._idle_since is not None and not self._closed

    def has_expired(self) -> bool:
        """Past its keep-alive, closed, or the server closed it (or sent something unasked) meanwhile."""
        if self._closed or self._idle_since is None:
            return True
        if time.monotonic() - self._idle_since > self._keepalive_expiry_s:
            return True
        return bool(self._stream.get_extra_info("is_readable"))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._idle_since = None
            await self._stream.aclose()

    async def exchange(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
        *,
        timeout_s: float,
        max_body_bytes: int | None,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        """Send the request and read its answer: (status, headers, body, truncated).

        The connection stays open for the next request only when the answer was read whole and
        neither side asked to close; otherwise it is closed here.
        """
        self._idle_since = None
        head = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
                await self.aclose()
                raise httpcore.LocalProtocolError(f"illegal header {name!r}: {value!r}")
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        await self._stream.write(b"".join(head) + content, timeout=timeout_s)

        reply = Reply(max_body_bytes)
        parser = reply.parser
        bodyless = method == b"HEAD"
        while True:
            data = await self._stream.read(READ_SIZE, timeout=timeout_s)
            if not data:
                if reply.headers_done and not reply.complete and _read_until_close(parser, reply):
                    reply.complete = True  # no length and not chunked: the body ends with the connection
                    break
                await self.aclose()
                raise httpcore.RemoteProtocolError(
                    "server disconnected without sending a complete response"
                    if reply.headers_done
                    else "server disconnected without sending a response"
                )
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                await self.aclose()
                raise httpcore.RemoteProtocolError(f"malformed response: {exc}") from exc
            if reply.headers_done and parser.get_status_code() < 200:
                continue  # an interim answer; the final one follows
            if reply.complete or reply.truncated or (bodyless and reply.headers_done):
                break
        status = parser.get_status_code()
        reusable = reply.complete and not reply.truncated and reply.keep_alive
        if reusable:
            self._idle_since = time.monotonic()
        else:
            await self.aclose()
        return status, reply.headers, b"".join(reply.chunks), reply.truncated


def _read_until_close(parser: httptools.HttpResponseParser, reply: Reply) -> bool:
    """Whether an answer whose connection just closed was complete: one with neither a length nor
    chunks ends with the connection (RFC 9112 6.3); one that said its length or chunks was cut."""
    if parser.get_status_code() in _NO_BODY_STATUS:
        return True
    return (
        reply.header(b"content-length") is None
        and b"chunked" not in (reply.header(b"transfer-encoding") or b"").lower()
    )
