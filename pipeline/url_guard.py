"""Webhook URLs are untrusted: which ones we may POST to, checked at registration and again before every delivery.

A URL must be absolute `https` (`http` only with WEBHOOK_ALLOW_HTTP), carry no credentials, and its host must
resolve only to public addresses: loopback, private, link-local (cloud metadata at 169.254.169.254 included),
shared, multicast, reserved and unspecified ones are refused, as are the IPv6 metadata addresses
(fd00:ec2::254) and IPv4 addresses mapped into IPv6. A host named in WEBHOOK_ALLOWED_HOSTS (or an address of it
listed there) is let through: the local stack and the tests receive on 127.0.0.1.

`check` answers the address to connect to, so the caller can pin the connection to what was checked (a DNS
answer that changes between the check and the connect cannot point the request elsewhere).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not private per `ipaddress`, not public either
MAX_URL_CHARS = 2048


class UnsafeUrl(ValueError):
    """A webhook URL we refuse to call; the message says why, for the shop to read."""


@dataclass(frozen=True)
class Target:
    """A checked URL: its parts, and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (IPv4 and IPv6)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeUrl(f"the host {host!r} does not resolve") from error
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def check(url: str, *, allow_http: bool, allowed_hosts: Iterable[str], resolve: Resolver = system_resolver) -> Target:
    """The URL as a Target if we may POST to it now; UnsafeUrl otherwise."""
    parts = parse(url, allow_http)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    allowed = {name.strip().lower().strip("[]") for name in allowed_hosts}
    addresses = [ipaddress.ip_address(literal)] if (literal := ip_literal(host)) else None
    if addresses is None:
        addresses = [ipaddress.ip_address(found.split("%", 1)[0]) for found in resolve(host, port)]
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} does not resolve")
    if host not in allowed:
        refused = [str(address) for address in addresses if str(address) not in allowed and not public(address)]
        if refused:
            raise UnsafeUrl(f"the host {host!r} resolves to a non-public address ({', '.join(refused)})")
    return Target(url, parts.scheme, host, port, str(addresses[0]))


def parse(url: str, allow_http: bool) -> SplitResult:
    """The URL's parts if it is absolute http(s) with a host and no credentials; UnsafeUrl otherwise."""
    if len(url) > MAX_URL_CHARS or any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise UnsafeUrl("the URL is too long or contains spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError as error:
        raise UnsafeUrl(f"the URL does not parse: {error}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeUrl(f"the URL must use {' or '.join(schemes)}")
    if not parts.hostname:
        raise UnsafeUrl("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL must not carry credentials")
    if parts.fragment:
        raise UnsafeUrl("the URL must not have a fragment")
    return parts


def ip_literal(host: str) -> str | None:
    """The host if it is an IP address written out (IPv6 without brackets), else None."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host


def public(address: Address) -> bool:
    """True for an address on the public internet (what a shop's endpoint may resolve to)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return public(mapped)
    if address in METADATA or (isinstance(address, ipaddress.IPv4Address) and address in SHARED):
        return False
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )
