"""Address checks that keep a crawler of untrusted URLs off internal networks (SSRF defence).

A LAION URL is attacker-controlled input: it may name ``169.254.169.254`` (cloud metadata), a private
service, or a hostname whose DNS answer points at one, and any redirect may do the same. So the check runs
on the *resolved* address, the connection is then made to exactly that address (``resolve_checked`` returns
it; the fetcher pins it, so a second DNS answer cannot rebind the host), and it runs again on every
redirect hop. img2dataset has no such layer: its ``download_image`` lets urllib resolve and redirect freely.

Reasons returned here: ``bad_scheme`` (not http/https), ``bad_url`` (no host, bad port), ``dns`` (name did
not resolve), ``blocked_address`` (every resolved address is non-public).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> list of IP strings; raises socket.gaierror (or OSError) when the name does not resolve.
Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = ("http", "https")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped ``::ffff:a.b.c.d`` or NAT64), judged on its own."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_loopback_address(ip: str | IPAddress) -> bool:
    """127.0.0.0/8 or ::1 (also as an IPv4-mapped IPv6 address): the only range ``allow_loopback`` opens."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_ipv4(addr)
        if inner is not None:
            return inner.is_loopback
    return addr.is_loopback


def is_public_address(ip: str | IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    Refuses loopback, private (RFC 1918, ULA), link-local (incl. 169.254.169.254), multicast, reserved,
    unspecified and shared (100.64/10) space; IPv6 addresses embedding an IPv4 address are judged by it.
    """
    try:
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_ipv4(addr)
        if inner is not None:
            return is_public_address(inner)
    return addr.is_global and not (
        addr.is_multicast or addr.is_reserved or addr.is_link_local or addr.is_loopback or addr.is_private
    )


def is_allowed_address(ip: str, allow_loopback: bool = False) -> bool:
    return is_public_address(ip) or (allow_loopback and is_loopback_address(ip))


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses the system resolver gives for ``host`` (TCP), in its preference order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
    return list(seen)


def split_url(url: str) -> tuple[str | None, SplitResult | None, int]:
    """(reason or None, parsed URL, port). Refuses non-http(s) schemes and URLs without a host."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            return "bad_scheme", None, 0
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:  # bad port, bad IPv6 literal
        return "bad_url", None, 0
    if not parts.hostname:
        return "bad_url", None, 0
    return None, parts, port


def resolve_checked(
    url: str, allow_loopback: bool = False, resolver: Resolver = system_resolver
) -> tuple[str | None, str | None]:
    """(reason, None) when ``url`` must not be fetched, else (None, the checked IP to connect to).

    IP literals are judged without any lookup. A hostname is resolved once; the first allowed address is
    returned, so a name with mixed public/private answers is only ever reached on a public one.
    """
    reason, parts, port = split_url(url)
    if reason is not None or parts is None:
        return reason, None
    host = parts.hostname or ""
    try:
        candidates = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            candidates = resolver(host, port)
        except (OSError, UnicodeError):  # socket.gaierror is an OSError; bad IDNA labels raise UnicodeError
            return "dns", None
        if not candidates:
            return "dns", None
    for ip in candidates:
        if is_allowed_address(ip, allow_loopback):
            return None, ip
    return "blocked_address", None


def check_url(url: str, allow_loopback: bool = False, resolver: Resolver = system_resolver) -> str | None:
    """A failure reason for ``url`` or None when it may be fetched.

    For filtering and reporting only: a fetch must connect to the address ``resolve_checked`` returned,
    not resolve the name again (that second answer could differ).
    """
    return resolve_checked(url, allow_loopback, resolver)[0]
