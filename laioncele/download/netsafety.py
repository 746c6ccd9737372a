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
import re
import socket
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> list of IP strings; raises socket.gaierror (or OSError) when the name does not resolve.
Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = ("http", "https")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: low 32 bits are the IPv4 address
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use prefix, same layout
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (RFC 4291 2.5.5.1)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, each to be judged on its own.

    IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 (both prefixes), 6to4
    ``2002:AABB:CCDD::/48`` and Teredo ``2001:0::/32`` (its server and its de-obfuscated client address):
    a relay or a dual-stack host turns each back into IPv4, so ``2002:a00:1::`` is 10.0.0.1.
    """
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip in _NAT64 or ip in _NAT64_LOCAL or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]  # ::1 and :: are judged as themselves
    return []


def is_loopback_address(ip: str | IPAddress) -> bool:
    """127.0.0.0/8 or ::1 (also as an IPv4-mapped IPv6 address): the only range ``allow_loopback`` opens."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback  # the one embedding the local stack itself answers
    return addr.is_loopback


def is_public_address(ip: str | IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    Refuses loopback, private (RFC 1918, ULA), link-local (incl. 169.254.169.254), multicast, reserved,
    unspecified and shared (100.64/10) space; an IPv6 address embedding IPv4 addresses (mapped, compatible,
    NAT64, 6to4, Teredo) is public only when every one it carries is.
    """
    try:
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_ipv4(addr)
        if inner:
            return all(is_public_address(v4) for v4 in inner)
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
    """(reason or None, parsed URL, port). Refuses non-http(s) schemes, URLs without a host, and URLs with
    control characters (urlsplit would silently drop a CR/LF/tab, so what is checked would not be what
    the row says)."""
    if not isinstance(url, str) or not url.strip():
        return "bad_url", None, 0
    url = url.strip()
    if _CONTROL_CHARS.search(url):
        return "bad_url", None, 0
    try:
        parts = urlsplit(url)
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
        # gaierror is an OSError; bad IDNA labels raise UnicodeError, a ValueError.
        except (OSError, ValueError):
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
