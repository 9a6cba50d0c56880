"""SSRF guard: feeds and webhooks may only reach public addresses, unless allowed.

A feed URL or webhook is user input; without this check it could make newswatch read
cloud metadata (169.254.169.254) or poke services on the private network. Private,
loopback, link-local, multicast and reserved targets are refused unless their network is
listed in ``allow_networks``. Checked on every request, redirects included.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio.to_thread
import httpcore
import httpx

from newswatch.shared.errors import BlockedAddressError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses ``host`` resolves to (the one we connect to is among them)."""
    try:
        infos: list[Any] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedAddressError(f"cannot resolve {host!r}: {exc.strerror}") from exc
    return sorted({str(info[4][0]) for info in infos})


def address_allowed(address: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    """Public unicast addresses pass; anything else only when inside an allowed network."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == net.version and address in net for net in allow):
        return True
    return address.is_global and not address.is_multicast


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class NetGuard:
    """Checks that a host resolves only to permitted addresses."""

    def __init__(self, allow: Sequence[IPNetwork], resolver: Resolver = system_resolver) -> None:
        self._allow = tuple(allow)
        self._resolver = resolver

    def check(self, host: str, port: int) -> str:
        """The address to connect to; BlockedAddressError if any address of ``host`` is not permitted."""
        host = host.strip("[]")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self._resolver(host, port)]
        if not addresses:
            raise BlockedAddressError(f"{host} resolves to no address")
        for address in addresses:
            if not address_allowed(address, self._allow):
                raise BlockedAddressError(
                    f"{host} resolves to {address}, which is not a public address; "
                    f"add its network to allow_networks to permit it"
                )
        return str(addresses[0])


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves and vets the host itself, then connects to that very address.

    Checking a name and letting the HTTP library resolve it again leaves a window (DNS
    rebinding: public at the check, 127.0.0.1 at the connect). Here the checked address is
    the connected one, for every connection, redirects included. TLS still verifies the
    certificate against the host name (httpcore passes it separately as SNI).
    """

    def __init__(self, guard: NetGuard, inner: httpcore.NetworkBackend | None = None) -> None:
        self._guard = guard
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        address = self._guard.check(host, port)
        return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise BlockedAddressError(f"unix socket {path} refused")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """GuardedBackend for async clients; name resolution runs in a worker thread."""

    def __init__(self, guard: NetGuard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if _is_address(host):  # nothing to look up: checked here, no thread needed
            address = self._guard.check(host, port)
            return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout):  # the connect timeout covers the lookup too
                address = await anyio.to_thread.run_sync(
                    self._guard.check, host, port, abandon_on_cancel=True
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout}s") from exc
        return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError(f"unix socket {path} refused")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_async_transport(guard: NetGuard, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An async httpx transport whose every connection goes through AsyncGuardedBackend."""
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(  # see guarded_transport
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncGuardedBackend(guard),
    )
    return transport


def guarded_transport(guard: NetGuard, limits: httpx.Limits) -> httpx.HTTPTransport:
    """An httpx transport whose every connection goes through GuardedBackend."""
    transport = httpx.HTTPTransport(limits=limits)
    # httpx builds its connection pool without a backend parameter; rebuild it with ours
    # (same settings). httpx is pinned below 0.29 for this.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(guard),
    )
    return transport
