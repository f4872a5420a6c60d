"""Which network addresses the federation may connect to, and a network backend that connects only to those.

A peer names URLs; without this guard it could point the forum at its own loopback, the private network behind it
or a cloud metadata service. `GuardedBackend.connect_tcp` is where every outgoing connection is made: it resolves
the name itself, checks every address the name resolves to, and connects to a checked address. The socket layer
never resolves the name again, so an answer that changes between check and connect (DNS rebinding) cannot slip by.

The error types of outgoing HTTP live here because the guard raises them deep inside the HTTP stack:
`FetchError` is what every caller of the guarded client catches, `AddressRefused` (a `FetchError`) says the target
was refused by policy before any connection was made.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves `(host, port)` to IP address strings; the default is `resolve_host`."""

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# `is_global` alone is not enough: depending on the Python release it calls NAT64, 6to4 or IPv4-mapped addresses
# global although they lead to any IPv4 address, including loopback. These lists are checked first; `is_global`
# then catches whatever IANA adds later.
_REFUSED_V4 = tuple(
    (ipaddress.IPv4Network(network), label)
    for network, label in (
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_REFUSED_V6 = tuple(
    (ipaddress.IPv6Network(network), label)
    for network, label in (
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b::/96", "NAT64"),
        ("64:ff9b:1::/48", "local NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignments"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class FetchError(Exception):
    """An outgoing request that gave no usable answer: `reason` says why, `status` is the HTTP status if one came."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason if status is None else f"{reason} (HTTP {status})")
        self.reason = reason
        self.status = status


class AddressRefused(FetchError):
    """The target is one the forum must not contact (address, scheme or host); nothing was sent to it."""


def check_address(ip: str, *, allow_private: bool) -> None:
    """Raise `AddressRefused` unless the forum may connect to `ip`.

    Only global unicast addresses pass. With `allow_private` (tests and local labs) loopback, private and every
    other unicast address pass too; unspecified and multicast addresses never do.
    """
    refusal = _verdict(ip, allow_private)
    if refusal is not None:
        raise AddressRefused(refusal)


@functools.lru_cache(maxsize=8192)
def _verdict(ip: str, allow_private: bool) -> str | None:
    """Why `ip` is refused, or None; kept per address, as a fan-out connects to the same ones again and again."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    label = _refusal(address, allow_private=allow_private)
    return None if label is None else f"refused address {ip} ({label})"


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, through the system resolver, in its order and without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(host: str, port: int, *, allow_private: bool, resolver: Resolver) -> list[str]:
    """The addresses to connect to for `host`, all checked; an IP literal is checked as it is, never resolved.

    A name is refused as a whole when any of its addresses is refused: a name that mixes a public address with a
    private one is a rebinding attempt or a mistake, and trying the public one first would still hand the attacker
    the private one on the first connection error.
    """
    host = host.removeprefix("[").removesuffix("]")
    if _is_ip_literal(host):
        check_address(host, allow_private=allow_private)
        return [host]
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise FetchError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    if not addresses:
        raise FetchError(f"{host} resolves to no address")
    for address in addresses:
        try:
            check_address(address, allow_private=allow_private)
        except AddressRefused as exc:
            raise AddressRefused(f"{host}: {exc.reason}") from None
    return addresses


class GuardedBackend(httpcore.AnyIOBackend):
    """httpcore's anyio backend, connecting only to addresses `checked_addresses` let through.

    httpcore hands the URL's host to `connect_tcp`; TLS (SNI, certificate check) and the `Host` header still use
    that name, only the socket goes to the checked IP.
    """

    def __init__(self, *, allow_private: bool, resolver: Resolver) -> None:
        self._allow_private = allow_private
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await checked_addresses(host, port, allow_private=self._allow_private, resolver=self._resolver)
        for address in addresses[:-1]:
            try:
                return await super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                continue
        return await super().connect_tcp(addresses[-1], port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not allowed")


@functools.lru_cache(maxsize=8192)
def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _refusal(address: _Address, *, allow_private: bool) -> str | None:
    """Why `address` is refused, or None when the forum may connect to it."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        inner = _refusal(embedded, allow_private=allow_private)
        if inner is not None:
            return f"carries {embedded}, {inner}"
    if allow_private:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        for network4, label in _REFUSED_V4:
            if address in network4:
                return label
    else:
        for network6, label in _REFUSED_V6:
            if address in network6:
                return label
    return None if address.is_global else "not globally routable"


def _embedded_ipv4(address: _Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to (mapped, NAT64, 6to4), which must pass the same check."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
