"""Loaded by every Python process of the img2dataset comparison (``bench/download_vs_img2dataset.py`` puts this
folder first on PYTHONPATH), so the spawned workers of both downloaders inherit it.

- Names under ``.bench.test`` resolve to 127.0.0.1: the corpus spreads its URLs over many host names (per-host
  politeness and connection handling act on names) while one loopback server answers them all.
- A connect guard: any connect to a non-loopback address raises, so a mistake in the bench can never send
  a packet off this machine.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_BENCH_SUFFIX = ".bench.test"
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _bench_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().endswith(_BENCH_SUFFIX):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, port, *args, **kwargs)


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        loopback = ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConnectionRefusedError(f"bench connect guard: {host!r} is not a loopback address")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


socket.getaddrinfo = _bench_getaddrinfo
socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
