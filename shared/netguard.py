"""The egress policy (SSRF guard): every outbound connection — feeds, webhooks, Apprise's
HTTP plugins, SMTP — may only reach public addresses, unless allowed.

A feed URL, a webhook or a notification URL is user input; without this check it could
make newswatch read cloud metadata (169.254.169.254) or poke services on the private network.
Private, loopback, link-local, multicast and reserved targets are refused unless their network
is listed in ``allow_networks``. The host is resolved and checked when the connection is made
(redirect hops included), and the connection goes to that very address, so a name that
resolves elsewhere later (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import ipaddress
import re
import smtplib
import socket
import sys
import threading
import time
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

    def allows(self, address: IPAddress) -> bool:
        return address_allowed(address, self._allow)

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


# --- the same policy for connections made by other libraries -----------------------------


class _Blocked(OSError):
    """Raised inside a library's connect (an OSError, so the library reports a failed
    connection as usual); the guard also notes it, see ``blocked_since``."""


_noted = threading.local()
_blocks: dict[str, tuple[float, str]] = {}  # host → (monotonic time, why), the latest refusal
_blocks_lock = threading.Lock()


def blocked_here() -> str | None:
    """The last address the guard refused on this thread since ``clear_blocked`` (how a channel
    built on a library that swallows errors tells "blocked" from "unreachable")."""
    found: str | None = getattr(_noted, "blocked", None)
    return found


def clear_blocked() -> None:
    _noted.blocked = None


def blocked_since(started: float, host: str) -> str | None:
    """Why the guard refused ``host`` at or after ``started`` (monotonic), in any thread: a
    library that connects from its own worker threads (Apprise) is covered too."""
    with _blocks_lock:
        found = _blocks.get(host.lower())
    return found[1] if found is not None and found[0] >= started else None


def guarded_connect(
    guard: NetGuard, host: str, port: int, timeout: float | None, source: tuple[str, int] | None = None
) -> socket.socket:
    """A TCP connection to ``host`` made only to the address the guard vetted."""
    try:
        address = guard.check(host, port)
    except BlockedAddressError as exc:
        _noted.blocked = str(exc)
        with _blocks_lock:
            if len(_blocks) > 1000:
                _blocks.clear()
            _blocks[host.lower()] = (time.monotonic(), str(exc))
        raise _Blocked(str(exc)) from exc
    return socket.create_connection((address, port), timeout, source)


def install_urllib3_guard(guard: NetGuard) -> None:
    """Routes every connection urllib3 makes in this process (the ``requests`` library under
    Apprise's HTTP plugins) through the guard, so a chat or JSON notification URL cannot
    reach an address the policy refuses, whatever its name resolves to at send time."""
    from urllib3.util import connection  # noqa: PLC0415 - only the notifier sends through urllib3

    def create_connection(
        address: tuple[str, int],
        timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
        source_address: tuple[str, int] | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> socket.socket:
        host, port = address
        sock = guarded_connect(guard, host.strip("[]"), port, timeout, source_address)
        for option in socket_options or ():
            sock.setsockopt(*option)
        return sock

    connection.create_connection = create_connection


class GuardedSMTP(smtplib.SMTP):
    """``smtplib.SMTP`` connecting only to an address the guard vetted (STARTTLS still checks
    the certificate against the host name)."""

    def __init__(self, guard: NetGuard, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(**kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self._host = host  # STARTTLS checks the certificate against this name
        return guarded_connect(self._guard, host, port, timeout, _source(self.source_address))


class GuardedSMTPSSL(smtplib.SMTP_SSL):
    """``smtplib.SMTP_SSL`` (implicit TLS) connecting only to an address the guard vetted."""

    def __init__(self, guard: NetGuard, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(**kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self._host = host
        sock = guarded_connect(self._guard, host, port, timeout, _source(self.source_address))
        return self.context.wrap_socket(sock, server_hostname=host)


def _source(address: Any) -> tuple[str, int] | None:
    return (str(address[0]), int(address[1])) if isinstance(address, tuple) else None


@functools.cache
def apprise_http_schemes() -> frozenset[str]:
    """Apprise's URL schemes whose plugin sends with ``requests`` (so through urllib3, which the
    egress guard covers); the others (SMTP, MQTT, XMPP, IRC, syslog, desktop …) connect their
    own way and are refused."""
    from apprise.manager_plugins import NotificationManager  # noqa: PLC0415 - Apprise's registry

    calls = re.compile(r"requests\.(?:post|get|put|request|delete|patch)\(")
    manager = NotificationManager()  # type: ignore[no-untyped-call]
    found = set()
    for schema in manager.schemas():  # type: ignore[no-untyped-call]
        plugin = manager[schema]
        modules = {k.__module__ for k in plugin.__mro__ if k.__module__.startswith("apprise.plugins")}
        with contextlib.suppress(OSError, TypeError):
            if any(calls.search(inspect.getsource(sys.modules[m])) for m in modules):
                found.add(schema.lower())
    return frozenset(found)


def apprise_refusal(url: str) -> str | None:
    """Why an Apprise notification URL may not be used, or None: only plugins that send over
    HTTP, whose connections the guard checks (see ``install_urllib3_guard``)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in apprise_http_schemes():
        return f"{scheme}:// notifications are not supported (only Apprise plugins that send over HTTP)"
    return None
