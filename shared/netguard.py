"""SSRF guard: feeds and webhooks may only reach public addresses, unless allowed.

A feed URL or webhook is user input; without this check it could make newswatch read
cloud metadata (169.254.169.254) or poke services on the private network. Private,
loopback, link-local, multicast and reserved targets are refused unless their network is
listed in ``allow_networks``. Checked on every request, redirects included.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

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


class NetGuard:
    """Checks that a host resolves only to permitted addresses."""

    def __init__(self, allow: Sequence[IPNetwork], resolver: Resolver = system_resolver) -> None:
        self._allow = tuple(allow)
        self._resolver = resolver

    def check(self, host: str, port: int) -> None:
        """Raise BlockedAddressError if any address of ``host`` is not permitted."""
        host = host.strip("[]")
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self._resolver(host, port)]
        for address in addresses:
            if not address_allowed(address, self._allow):
                raise BlockedAddressError(
                    f"{host} resolves to {address}, which is not a public address; "
                    f"add its network to allow_networks to permit it"
                )
