"""The address guard: refuse outbound HTTP to addresses a customer's flow must not reach (SSRF).

Checked once per connection, at connect time, by `GuardedBackend` under the pool
(app.http.pool): the name is resolved once, every address it resolves to is checked, and
the connection goes to a checked address. URLs themselves (scheme, credentials, host) are
checked without DNS by `validate_url`, before the first request and before each redirect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

import httpcore
import httpx

from app.http.stream import AsyncioBackend

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> IP addresses as strings; the default asks the OS via loop.getaddrinfo."""

ALLOWED_SCHEMES = frozenset({"http", "https"})

# 100.64/10 is neither "private" nor "global" in ipaddress' eyes, so it is named here.
CGNAT_NETWORK = ipaddress.ip_network("100.64.0.0/10")
# NAT64 gateways forward 64:ff9b::a.b.c.d to the embedded IPv4 address, private or not.
NAT64_NETWORK = ipaddress.ip_network("64:ff9b::/96")
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

ALLOW_PRIVATE_HINT = "set SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE=1 only if the service must call internal hosts"


class BlockedURLError(Exception):
    """The URL or an address it resolves to is not allowed; `reason` says why, for logs and users."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResolutionError(OSError):
    """The host name did not resolve (a transient failure as far as retries are concerned)."""


def address_block_reason(ip: IPAddress) -> str | None:
    """What kind of non-public address `ip` is ("a loopback address"), or None for a public unicast one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped
        if embedded is None and ip in NAT64_NETWORK:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_block_reason(embedded)
            return f"an IPv6 form of {embedded}, {inner}" if inner else None
    if ip in METADATA_ADDRESSES:
        return "the cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT_NETWORK:
        return "a shared (CGNAT) address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-global address"
    return None


def check_address(
    host: str, address: str, *, allow_private: bool, allowed_networks: Sequence[IPNetwork] = ()
) -> None:
    """Raise BlockedURLError when `address` (which `host` resolved to) may not be contacted."""
    if allow_private:
        return
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if any(ip in network for network in allowed_networks):
        return
    reason = address_block_reason(ip)
    if reason is not None:
        shown = address if _is_literal(host) else f"{host} resolves to {address}, which"
        raise BlockedURLError(
            f"{shown} is {reason}; webhooks may only call public addresses ({ALLOW_PRIVATE_HINT})"
        )


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse an operator allow-list such as ["10.1.2.0/24", "192.168.0.7"]."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


async def resolve_host(host: str, port: int) -> list[str]:
    """All A/AAAA addresses of `host`, in the resolver's order, without duplicates."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        # A literal needs no lookup; skipping the executor round trip keeps the hot path cheap.
        return [str(ip) if "%" not in host else host]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ResolutionError(f"could not resolve {host}: {exc.strerror or exc}") from exc
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ResolutionError(f"could not resolve {host}: no addresses")
    return addresses


def validate_url(url: str | httpx.URL) -> httpx.URL:
    """Parse with httpx's parser and refuse what no webhook may call (no DNS: the pool checks addresses)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise BlockedURLError(f"{url!r} is not a valid URL: {exc}") from exc
    scheme = parsed.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise BlockedURLError(f"only http and https URLs can be called, not {scheme or 'a relative URL'!r}")
    if parsed.userinfo:
        raise BlockedURLError("the URL contains credentials; put them in the action's auth settings instead")
    if not parsed.raw_host:
        raise BlockedURLError(f"{str(parsed)!r} has no host")
    return parsed


async def checked_addresses(
    host: str,
    port: int,
    *,
    allowed_networks: Sequence[IPNetwork] = (),
    resolver: Resolver | None = None,
) -> list[str]:
    """Resolve `host` once and refuse it unless every address it resolves to may be contacted.

    All addresses are checked, not just the first: a name with one public and one private
    record would otherwise reach the private one whenever the connector picks it.
    `allowed_networks` lets an operator open specific internal ranges without allow_private.
    """
    addresses = await (resolver or resolve_host)(host, port)
    for address in addresses:
        check_address(host, address, allow_private=False, allowed_networks=allowed_networks)
    return addresses


HostPort = tuple[str, int]


def host_port(url: str) -> HostPort | None:
    """(host, port) of a URL, host lower-cased, the scheme's port when none is given; None when empty."""
    if not url:
        return None
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if not parsed.host:
        return None
    return parsed.host.lower(), parsed.port or (443 if parsed.scheme == "https" else 80)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that resolves, checks, and connects to the checked address itself.

    Why here and not in a pre-flight check: a name can resolve to a public address when the
    URL is checked and to 127.0.0.1 a millisecond later when the connector resolves it again
    (DNS rebinding). One lookup, the check and the connect in one place leave no gap. TLS
    still uses the URL's host name for SNI and certificate checks (the pool passes the
    origin's host to start_tls).

    `operator_hosts` are the (host, port) pairs the operator configured in the environment
    (the Graph API, the LLM, our own public URL): reached wherever they point, because the
    operator, not a tenant, chose them. Every other host is checked.
    """

    def __init__(
        self,
        *,
        allowed_networks: Sequence[IPNetwork] = (),
        resolver: Resolver | None = None,
        operator_hosts: Iterable[HostPort] = (),
    ) -> None:
        self._allowed_networks = tuple(allowed_networks)
        self._resolver = resolver or resolve_host
        self._operator_hosts = frozenset(operator_hosts)
        self._inner = AsyncioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            if (host.lower(), port) in self._operator_hosts:
                addresses = await self._resolver(host, port)
            else:
                addresses = await checked_addresses(
                    host, port, allowed_networks=self._allowed_networks, resolver=self._resolver
                )
        except ResolutionError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address.split("%", 1)[0],
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedURLError("unix sockets are not allowed for outbound calls")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def check_url(
    url: str | httpx.URL,
    *,
    allow_private: bool,
    allowed_networks: Sequence[IPNetwork] = (),
    resolver: Resolver | None = None,
) -> httpx.URL:
    """A save-time check that tells a user at once when a URL could never be called (e.g. an LLM base URL).

    Requests do not rely on it: the pool's GuardedBackend checks again at connect time.
    """
    parsed = validate_url(url)
    if not allow_private:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        await checked_addresses(
            parsed.raw_host.decode("ascii"), port, allowed_networks=allowed_networks, resolver=resolver
        )
    return parsed
