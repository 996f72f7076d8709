"""The keep-alive pool and its asyncio streams, directly (Graph API sends, webhook calls) and under
httpx (app.http.transport: the LLM client, channel checks), against real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib

import httpcore
import httpx
import pytest

from app.http.guard import GuardedBackend, parse_networks
from app.http.pool import KeepAlivePool
from app.http.stream import HOLD_BYTES, AsyncioBackend
from app.http.transport import httpx_client
from tests.support.http_peer import HttpPeer, PeerRequest, PeerResponse
from tests.support.stack import wait_until


def guarded_pool(**options) -> KeepAlivePool:
    """A pool behind the address guard, with loopback opened as an operator's allow-list would."""
    backend = GuardedBackend(allowed_networks=parse_networks(["127.0.0.0/8"]))
    return KeepAlivePool(max_connections=4, network_backend=backend, **options)


@contextlib.asynccontextmanager
async def client(pool: KeepAlivePool | None = None):
    """An httpx client on a guarded pool, as the LLM client and channel checks get one."""
    pool = pool or guarded_pool()
    try:
        async with httpx_client(pool, timeout=httpx.Timeout(2.0)) as http:
            yield http
    finally:
        await pool.aclose()


class RawServer:
    """Answers every request with 200 "ok", recording what each read of each connection brought."""

    def __init__(self, *, close_after_response: bool = False) -> None:
        self.connections: list[list[bytes]] = []
        self.close_after_response = close_after_response
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reads: list[bytes] = []
        self.connections.append(reads)
        pending = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(1 << 20):
                reads.append(chunk)
                pending += chunk
                head, sep, rest = pending.partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                if len(rest) < length:
                    continue
                pending = rest[length:]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if self.close_after_response:
                    break
        writer.close()


class CountingWriter:
    """A StreamWriter that counts the writes reaching the transport."""

    def __init__(self, writer: asyncio.StreamWriter, writes: list[bytes]) -> None:
        self._writer = writer
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._writer.write(data)

    def __getattr__(self, name: str):
        return getattr(self._writer, name)


class CountingBackend(AsyncioBackend):
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ASYNC109
        stream = await super().connect_tcp(host, port, timeout, local_address, socket_options)
        stream._writer = CountingWriter(stream._writer, self.writes)
        return stream


async def test_a_request_leaves_in_one_write_and_connections_are_reused() -> None:
    backend = CountingBackend()
    pool = KeepAlivePool(max_connections=4, network_backend=backend)
    async with RawServer() as server:
        url = httpcore.URL(f"{server.url}/send")
        for i in range(3):
            response = await pool.request(
                b"POST",
                url,
                headers=[(b"Content-Type", b"application/json")],
                content=b'{"n": %d}' % i,
                timeout_s=2.0,
            )
            assert (response.status, response.content) == (200, b"ok")
        await pool.aclose()
    assert len(server.connections) == 1, "keep-alive connection was not reused"
    # Head and body of each request in one write (httpcore hands them over separately).
    assert len(backend.writes) == 3, backend.writes
    assert all(w.startswith(b"POST /send") and w.endswith(b"}") for w in backend.writes), backend.writes


async def test_the_pool_answers_concurrent_requests_within_its_connection_limit() -> None:
    async with RawServer() as server:
        pool = KeepAlivePool(max_connections=3)
        url = httpcore.URL(f"{server.url}/send")
        responses = await asyncio.gather(
            *(pool.request(b"POST", url, headers=[], content=b"%d" % i, timeout_s=5.0) for i in range(40))
        )
        await pool.aclose()
    assert [r.status for r in responses] == [200] * 40
    assert len(server.connections) <= 3, "more connections than the limit"


async def test_a_connection_closed_by_the_server_is_replaced() -> None:
    async with RawServer(close_after_response=True) as server:
        pool = KeepAlivePool(max_connections=2)
        url = httpcore.URL(f"{server.url}/x")
        for _ in range(3):
            response = await pool.request(b"GET", url, headers=[], content=b"", timeout_s=2.0)
            assert response.status == 200
            # The server's FIN reaches the idle connection before the next request.
            await wait_until(
                lambda: all(c.has_expired() for c in pool.idle_connections(url)),
                timeout_s=5,
                what="the idle connection to see the server's close",
            )
        await pool.aclose()
    assert len(server.connections) == 3


async def test_an_idle_connection_past_its_keep_alive_is_closed_when_another_origin_connects() -> None:
    """A webhook host called once must not keep its socket open until it is called again."""
    async with RawServer(close_after_response=True) as once, RawServer() as other:
        pool = KeepAlivePool(max_connections=4)
        first = httpcore.URL(f"{once.url}/x")
        await pool.request(b"GET", first, headers=[], content=b"", timeout_s=2.0)
        await wait_until(
            lambda: all(c.has_expired() for c in pool.idle_connections(first)),
            timeout_s=5,
            what="the idle connection to see the server's close",
        )
        assert len(pool.idle_connections(first)) == 1  # kept until something looks at it
        await pool.request(b"GET", httpcore.URL(f"{other.url}/y"), headers=[], content=b"", timeout_s=2.0)
        assert pool.idle_connections(first) == []
        await pool.aclose()


async def test_idle_connections_never_outnumber_the_pool() -> None:
    async with RawServer() as a, RawServer() as b, RawServer() as c:
        pool = KeepAlivePool(max_connections=2)
        urls = [httpcore.URL(f"{server.url}/x") for server in (a, b, c)]
        for url in urls:
            response = await pool.request(b"GET", url, headers=[], content=b"", timeout_s=2.0)
            assert response.status == 200
        assert sum(len(pool.idle_connections(url)) for url in urls) == 2
        await pool.aclose()


async def test_a_slow_answer_times_out_and_its_connection_is_not_reused() -> None:
    async def slow(_request: PeerRequest) -> PeerResponse:
        return PeerResponse(status=200, delay_s=0.5)

    async def fast(_request: PeerRequest) -> PeerResponse:
        return PeerResponse(status=200, body=b"fast")

    async with HttpPeer() as peer:
        peer.route("GET", "/slow", slow)
        peer.route("GET", "/fast", fast)
        pool = KeepAlivePool(max_connections=1)
        with pytest.raises(httpcore.ReadTimeout):
            await pool.request(
                b"GET", httpcore.URL(peer.url("/slow")), headers=[], content=b"", timeout_s=0.1
            )
        # The one connection slot came back, and the next request gets a clean connection.
        response = await pool.request(
            b"GET", httpcore.URL(peer.url("/fast")), headers=[], content=b"", timeout_s=2.0
        )
        await pool.aclose()
    assert response.content == b"fast"


async def test_a_large_body_arrives_whole() -> None:
    body = bytes(range(256)) * (3 * HOLD_BYTES // 256 + 7)
    seen: list[bytes] = []

    async def echo(request: PeerRequest) -> PeerResponse:
        seen.append(request.body)
        return PeerResponse(status=200, body=str(len(request.body)).encode())

    async with HttpPeer() as peer, client() as http:
        peer.route("POST", "/big", echo)
        response = await http.post(peer.url("/big"), content=body)
    assert response.text == str(len(body)) and seen == [body]


async def test_a_slow_answer_is_a_read_timeout() -> None:
    async def slow(_request: PeerRequest) -> PeerResponse:
        return PeerResponse(status=200, delay_s=1.0)

    async with HttpPeer() as peer, client() as http:
        peer.route("GET", "/slow", slow)
        with pytest.raises(httpx.ReadTimeout):
            await http.get(peer.url("/slow"), timeout=0.2)


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    pool = guarded_pool()
    async with RawServer(close_after_response=True) as server, client(pool) as http:
        url = httpcore.URL(f"{server.url}/x")
        for _ in range(3):
            response = await http.get(f"{server.url}/x")
            assert response.status_code == 200
            # The server's FIN reaches the idle connection before the next request.
            await wait_until(
                lambda: all(c.has_expired() for c in pool.idle_connections(url)),
                timeout_s=5,
                what="the idle connection to see the server's close",
            )
    assert len(server.connections) == 3


async def test_nothing_listening_is_a_connect_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


async def test_https_through_the_pool_directly_and_under_httpx(tmp_path) -> None:
    """The Graph API and most webhooks are HTTPS: the TLS handshake runs on these streams."""
    import ssl

    cert, key = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=cert)
    served: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                served.append(head.split(b"\r\n", 1)[0] + b" " + await reader.readexactly(length))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        pool = KeepAlivePool(max_connections=2, ssl_context=client_tls)
        url = httpcore.URL(f"https://127.0.0.1:{port}/106540/messages")
        answers = [
            await pool.request(b"POST", url, headers=[], content=b"{}", timeout_s=5.0) for _ in range(2)
        ]
        await pool.aclose()
        async with client(guarded_pool(ssl_context=client_tls)) as http:
            guarded = await http.post(f"https://127.0.0.1:{port}/hook", content=b"{}")
        # Nothing answers a client that does not trust the certificate.
        untrusting = KeepAlivePool(max_connections=1)
        with pytest.raises(httpcore.ConnectError):
            await untrusting.request(b"GET", url, headers=[], content=b"", timeout_s=5.0)
        await untrusting.aclose()
    finally:
        server.close()
        await server.wait_closed()
    assert [a.content for a in answers] == [b"secure", b"secure"] and guarded.text == "secure"
    assert served == [b"POST /106540/messages HTTP/1.1 {}"] * 2 + [b"POST /hook HTTP/1.1 {}"]


async def test_the_openai_sdk_sends_through_the_pool() -> None:
    """The LLM engine's client, built as the roots build it (app.http.transport on a KeepAlivePool)."""
    from app.services.ai.llm import LLMClient, LLMConfig
    from flows.runtime import IntentCandidate
    from flows.schema import TrainingExample
    from tests.support.fake_openai import API_KEY, fake_openai

    backend = CountingBackend()
    pool = KeepAlivePool(max_connections=2, network_backend=backend)
    async with fake_openai() as fake, client(pool) as http:
        fake.detect = {"action": "Create order", "confidence": 0.93, "reasons": "wants to buy"}
        llm = LLMClient(timeout_s=5, http_client=http)
        candidate = IntentCandidate(
            flow_id="f1",
            node_id="intent",
            display_name="Create order",
            description="The customer wants to buy something.",
            training_examples=[TrainingExample(text="I want 2 phones")],
        )
        config = LLMConfig(api_key=API_KEY, base_url=fake.base_url, model="gpt-test")
        detection, _ = await llm.detect(config, "three phones please", [candidate])
        await llm.aclose()
    assert detection.match is not None and detection.match.confidence == 0.93
    assert len(fake.calls) == 1 and backend.writes, "the request did not go through the pool"


class ScriptedServer:
    """Reads one request per connection and answers it with the given raw bytes, then closes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> httpcore.URL:
        return httpcore.URL(f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/x")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.answer)
            await writer.drain()
        writer.close()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            (200, b"abcde"),
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", (200, b"until the end")),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", (201, b"ok")),
        (b"HTTP/1.1 204 No Content\r\n\r\n", (204, b"")),
    ],
    ids=["chunked", "ended-by-close", "interim-100", "no-content"],
)
async def test_answers_are_read_whatever_their_framing(answer: bytes, expected: tuple[int, bytes]) -> None:
    pool = KeepAlivePool(max_connections=2)
    try:
        async with ScriptedServer(answer) as server:
            got = await pool.request(b"GET", server.url, headers=[], content=b"", timeout_s=2.0)
        assert (got.status, got.content) == expected
    finally:
        await pool.aclose()


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", b"", b"NOT HTTP AT ALL\r\n\r\n"],
    ids=["cut-short", "nothing", "malformed"],
)
async def test_a_broken_answer_is_a_remote_protocol_error(answer: bytes) -> None:
    pool = KeepAlivePool(max_connections=2)
    try:
        async with ScriptedServer(answer) as server:
            with pytest.raises(httpcore.RemoteProtocolError):
                await pool.request(b"GET", server.url, headers=[], content=b"", timeout_s=2.0)
    finally:
        await pool.aclose()


async def test_a_header_with_a_line_break_is_never_sent() -> None:
    pool = KeepAlivePool(max_connections=2)
    try:
        async with RawServer() as server:
            with pytest.raises(httpcore.LocalProtocolError):
                await pool.request(
                    b"GET",
                    httpcore.URL(server.url + "/x"),
                    headers=[(b"X-Evil", b"a\r\nInjected: 1")],
                    content=b"",
                    timeout_s=2.0,
                )
            assert server.connections == [[]] or all(not reads for reads in server.connections)
    finally:
        await pool.aclose()


async def test_a_body_past_the_cap_is_cut_and_its_connection_not_reused() -> None:
    pool = KeepAlivePool(max_connections=2)
    try:
        async with ScriptedServer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789") as server:
            got = await pool.request(
                b"GET", server.url, headers=[], content=b"", timeout_s=2.0, max_body_bytes=4
            )
            assert (got.content, got.truncated) == (b"0123", True)
            assert pool.idle_connections(server.url) == []
    finally:
        await pool.aclose()
