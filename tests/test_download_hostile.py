"""Hostile servers and hostile rows against the download stage, on 127.0.0.1 only.

Network rule: before any case runs, this module wraps ``socket.socket.connect``/``connect_ex`` and
``socket.create_connection``: every TCP connect is recorded, and one to a non-loopback address is refused
*before* the kernel sees it and recorded in ``NON_LOOPBACK``. So a failing SSRF check shows up as a
recorded, failed assertion, never as a packet. ``socket.getaddrinfo`` is stubbed too: numeric forms
(``127.1``, ``0x7f000001``) go to the real resolver with ``AI_NUMERICHOST`` (no lookup is ever sent), any
hostname is answered from ``DNS`` (``evil.test`` -> 10.0.0.1) or fails like NXDOMAIN. The downloader runs
with its real system resolver, so these cases exercise the production path end to end.

Every case asserts its outcome (the named reason, or ``ok``), that the row was counted with it, the time
it took to give up (an upper bound: the guard's contract, e.g. "within timeout_s + margin", never a speed
figure) and the memory it took (peak Python heap, ``tracemalloc``). The per-case table is printed at the
end of the module's run. Redirect, response and row cases run with ``allow_loopback=True`` (the sample's
mode), so the first hop to the local server is allowed and every other guard must still hold.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import os
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from laioncele.config import DownloadConfig
from laioncele.download.fetch import Downloader, DownloadResult
from laioncele.download.netsafety import check_url
from laioncele.testing.http_fixture import LocalHTTPServer, Response

MARGIN_S = 2.0  # slack on every time bound: a loaded CI box, thread start-up; not a speed target
TIMEOUT_S = 1.0  # DownloadConfig.timeout_s for these cases
MAX_BYTES = 1_000_000
NO_NETWORK_WAIT_S = MARGIN_S  # a row refused before any connect waits on nothing
ONE_HOP_S = 2 * TIMEOUT_S + MARGIN_S  # headers within timeout_s, then the body within another timeout_s
SMALL_HEAP = 1 << 20  # a refused row, or a response refused before its body, costs well under 1 MiB
BODY_HEAP = 4 * MAX_BYTES  # a body read (at most max_bytes), then decoded and re-encoded


# --- the connect guard and the DNS stub (installed before any case) -----------------------------------------

CONNECTS: list[str] = []  # every TCP connect this module's code attempted, loopback included
NON_LOOPBACK: list[str] = []  # connects the guard refused (each one is a failed SSRF check)
DNS: dict[str, list[list[str]]] = {}  # hostname -> the answer to each lookup in turn (the last repeats)
LOOKUPS: Counter[str] = Counter()  # hostname -> lookups made

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _refuse_unless_loopback(sock_family: int, address: Any) -> None:
    if sock_family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = str(address[0])
    CONNECTS.append(host)
    if not _is_loopback(host):
        NON_LOOPBACK.append(host)
        raise ConnectionRefusedError(f"test guard: connect to non-loopback {host} refused before sending")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _refuse_unless_loopback(self.family, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _refuse_unless_loopback(self.family, address)
    return _real_connect_ex(self, address)


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    host = str(address[0])
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not _is_loopback(host):  # refuse before even a socket exists
        CONNECTS.append(host)
        NON_LOOPBACK.append(host)
        raise ConnectionRefusedError(f"test guard: connect to non-loopback {host} refused before sending")
    return _real_create_connection(address, *args, **kwargs)  # its sock.connect is guarded too


def _stub_getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> list[Any]:  # noqa: A002 - socket's own parameter names
    if host is None:
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    name = host.decode() if isinstance(host, bytes) else str(host)
    try:  # numeric forms only: AI_NUMERICHOST never sends a query
        return _real_getaddrinfo(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass
    key = name.lower().rstrip(".")
    answers = DNS.get(key)
    LOOKUPS[key] += 1
    if answers is None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test DNS)")
    ips = answers[min(LOOKUPS[key] - 1, len(answers) - 1)]
    number = int(port or 0)
    infos = []
    for ip in ips:
        if ":" in ip:
            infos.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, number, 0, 0)))
        else:
            infos.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, number)))
    return infos


@pytest.fixture(scope="module", autouse=True)
def _network_guard() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _guarded_connect)
        patch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
        patch.setattr(socket, "create_connection", _guarded_create_connection)
        patch.setattr(socket, "getaddrinfo", _stub_getaddrinfo)
        yield
    assert NON_LOOPBACK == [], f"non-loopback connects were attempted (and refused): {NON_LOOPBACK}"


def test_guard_refuses_and_records_a_non_loopback_connect() -> None:
    """The guard itself: a real connect to 10.0.0.1 or via a name resolving there is refused and recorded."""
    DNS["guard.test"] = [["10.0.0.1"]]
    for target in [("10.0.0.1", 80), ("guard.test", 80)]:
        with pytest.raises(ConnectionRefusedError, match="test guard"):
            socket.create_connection(target, timeout=0.1)
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="test guard"):
        sock.connect(("169.254.169.254", 80))
    assert NON_LOOPBACK == ["10.0.0.1", "10.0.0.1", "169.254.169.254"]
    NON_LOOPBACK.clear()  # recorded, refused, nothing sent: the guard works, clear it for the real cases
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("not-in-the-table.test", 80)


# --- per-case measurement and the table --------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFigure:
    case: str
    outcome: str
    seconds: float
    bound_s: float
    peak_kib: float
    bound_kib: float


FIGURES: list[CaseFigure] = []


@pytest.fixture(scope="module", autouse=True)
def _figure_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not FIGURES:
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "",
        f"hostile download cases: time to give up and peak Python heap (tracemalloc); load average {load}",
        f"{'case':<46} {'outcome':<20} {'s':>6} {'<= s':>6} {'KiB':>9} {'<= KiB':>8}",
    ]
    lines += [
        f"{f.case[:46]:<46} {f.outcome[:20]:<20} {f.seconds:6.2f} {f.bound_s:6.1f} {f.peak_kib:9.1f} "
        f"{f.bound_kib:8.0f}"
        for f in FIGURES
    ]
    # Module teardown runs inside the last test's capture: step out of it so the table reaches the terminal.
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:  # pragma: no cover - plain python runs
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        for line in lines:
            reporter.write_line(line)


def config(**overrides: Any) -> DownloadConfig:
    settings: dict[str, Any] = dict(
        image_size=64,
        allow_loopback=True,
        timeout_s=TIMEOUT_S,
        max_retries=0,
        backoff_s=0.01,
        max_retry_after_s=5.0,
        max_bytes=MAX_BYTES,
        thread_count=4,
        max_redirects=3,
    )
    settings.update(overrides)
    return DownloadConfig(**settings)


def rows(urls: list[Any], url_type: pa.DataType | None = None) -> pa.Table:
    return pa.table(
        {
            "sample_id": [f"s{i}" for i in range(len(urls))],
            "url": pa.array(urls, url_type or pa.string()),
            "caption": ["a photo"] * len(urls),
            "names": [[] for _ in urls],
        }
    )


def run_case(
    case: str,
    urls: Any,
    expect: str | dict[str, int],
    bound_s: float,
    bound_bytes: int = SMALL_HEAP,
    cfg: DownloadConfig | None = None,
    sleep: Callable[[float], None] | None = None,
) -> DownloadResult:
    """Download ``urls`` (one URL, a list, or a table), measure, and assert outcome, count, time and memory."""
    table = urls if isinstance(urls, pa.Table) else rows(urls if isinstance(urls, list) else [urls])
    expected = Counter({expect: table.num_rows} if isinstance(expect, str) else expect)
    downloader = Downloader(cfg or config(), sleep=sleep or (lambda _s: None))
    NON_LOOPBACK.clear()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = time.monotonic()
        result = downloader(table)
        seconds = time.monotonic() - start
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        downloader.close()
    outcome = ",".join(f"{k}:{v}" if v > 1 else k for k, v in sorted(result.counts.items()))
    FIGURES.append(CaseFigure(case, outcome, seconds, bound_s, peak / 1024, bound_bytes / 1024))
    assert NON_LOOPBACK == [], f"{case}: connect to a non-loopback address attempted: {NON_LOOPBACK}"
    assert result.counts == expected, (case, result.failures.to_pylist())
    assert result.ok.num_rows + result.failures.num_rows == table.num_rows
    failure_reasons = Counter(result.failures.column("reason").to_pylist())
    assert failure_reasons == Counter({k: v for k, v in expected.items() if k != "ok"})
    assert seconds <= bound_s, f"{case}: gave up after {seconds:.2f}s, bound {bound_s}s"
    assert peak <= bound_bytes, f"{case}: peak heap {peak} bytes, bound {bound_bytes}"
    return result


# --- servers ------------------------------------------------------------------------------------------------


def jpeg(width: int = 96, height: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def png_bomb(side: int = 30_000) -> bytes:
    """A PNG declaring ``side`` x ``side`` grey pixels (900 MB decoded at 30000), a few KB on the wire."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(9)
    rows_data = deflate.compress(bytes(side + 1) * 64) + deflate.flush(zlib.Z_SYNC_FLUSH)  # first rows only
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows_data) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def web() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as server:
        server.image("/good.jpg", jpeg())
        yield server


@pytest.fixture(scope="module")
def web2() -> Iterator[LocalHTTPServer]:
    """A second server (another port on 127.0.0.1): redirects across ports, other hosts."""
    with LocalHTTPServer() as server:
        server.image("/good.jpg", jpeg(seed=1))
        yield server


# Built before any measurement: the servers run in this process, so their own allocations would count.
LIAR_BODY = jpeg(400, 300) + bytes(5_000_000)
CHUNK_PIECE = b"10000\r\n" + bytes(0x10000) + b"\r\n"

Handler = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """A TCP server on 127.0.0.1 whose every connection runs ``handler(conn, stopping)`` in its own thread.

    For the misbehaviours http.server cannot script: slow bytes, lies about lengths, resets, silence.
    """

    def __init__(self, handler: Handler, accept: bool = True) -> None:
        self.handler = handler
        self.accept = accept
        self.connections = 0
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def url(self, path: str = "/a.jpg") -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}{path}"

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            if not self.accept:  # listen only: the kernel completes the handshake, nobody ever reads
                self.stopping.wait(0.1)
                continue
            try:
                conn, _addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5.0)
            self.handler(conn, self.stopping)
        except OSError:
            pass  # the client gave up: expected
        finally:
            conn.close()

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stopping.set()
        self._thread.join(timeout=5)
        self.sock.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def head(*lines: str) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n").encode()


def slowloris_body(conn: socket.socket, stopping: threading.Event) -> None:
    """Content-Length 100000, then one byte every 0.3 s (gives up after 12 s so a regression fails, not hangs)."""
    read_request(conn)
    conn.sendall(head("Content-Type: image/jpeg", "Content-Length: 100000"))
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and not stopping.wait(0.3):
        conn.sendall(b"\xff")


def slowloris_headers(conn: socket.socket, stopping: threading.Event) -> None:
    """A status line, then one header byte every 0.3 s (for at most 12 s)."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and not stopping.wait(0.3):
        conn.sendall(b"a")


def never_answer(conn: socket.socket, stopping: threading.Event) -> None:
    stopping.wait(12)


def declares_over_cap(conn: socket.socket, stopping: threading.Event) -> None:
    """Declares 10 GiB and then sends nothing: refused on the header, without waiting for a byte."""
    read_request(conn)
    conn.sendall(head("Content-Type: image/jpeg", f"Content-Length: {10 << 30}"))
    stopping.wait(12)


def declares_less_sends_more(conn: socket.socket, stopping: threading.Event) -> None:
    """Content-Length 1000, then 5 MB: only the declared bytes may be read."""
    read_request(conn)
    conn.sendall(head("Content-Type: image/jpeg", "Content-Length: 1000"))
    conn.sendall(LIAR_BODY)


def declares_more_sends_less(conn: socket.socket, stopping: threading.Event) -> None:
    """Content-Length 100000, ten bytes, then a clean close: the body ended early."""
    read_request(conn)
    conn.sendall(head("Content-Type: image/jpeg", "Content-Length: 100000") + LIAR_BODY[:10])


def endless_chunked(conn: socket.socket, stopping: threading.Event) -> None:
    read_request(conn)
    conn.sendall(head("Content-Type: image/jpeg", "Transfer-Encoding: chunked"))
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and not stopping.is_set():
        conn.sendall(CHUNK_PIECE)


def reset_mid_body(conn: socket.socket, stopping: threading.Event) -> None:
    read_request(conn)
    conn.sendall(head("Content-Type: image/jpeg", "Content-Length: 100000") + LIAR_BODY[:5000])
    time.sleep(0.05)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST


# --- addresses: the first hop's host, as literals and encoded forms ---------------------------------------

# Refused with or without allow_loopback: nothing to connect to, no DNS query (numeric forms only).
PRIVATE_LITERALS = [
    "http://10.0.0.1/a.jpg",
    "http://172.16.0.1/a.jpg",
    "http://172.31.255.254/a.jpg",
    "http://192.168.1.1/a.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/a.jpg",  # carrier-grade NAT
    "http://0.0.0.0/a.jpg",  # Linux connects this to the local host
    "http://[::]/a.jpg",
    "http://224.0.0.1/a.jpg",  # multicast
    "http://[ff02::1]/a.jpg",
    "http://255.255.255.255/a.jpg",
    "http://[fd00::1]/a.jpg",
    "http://[fe80::1]/a.jpg",
    "http://[fe80::1%25eth0]/a.jpg",  # zone id
    "http://[::ffff:10.0.0.1]/a.jpg",  # IPv4-mapped
    "http://[::ffff:169.254.169.254]/a.jpg",
    "http://[::10.0.0.1]/a.jpg",  # IPv4-compatible (deprecated)
    "http://[64:ff9b::a00:1]/a.jpg",  # NAT64 of 10.0.0.1
    "http://[64:ff9b:1::a00:1]/a.jpg",  # local-use NAT64
    "http://[2002:a00:1::]/a.jpg",  # 6to4 of 10.0.0.1
    "http://[2002:a9fe:a9fe::1]/a.jpg",  # 6to4 of 169.254.169.254
    "http://[2001:0:808:808::f5ff:fffe]/a.jpg",  # Teredo: public server, client 10.0.0.1
    "http://167772161/a.jpg",  # 10.0.0.1 as one decimal number
    "http://0xa9fea9fe/latest/",  # 169.254.169.254 in hex
    "http://0251.0376.0251.0376/latest/",  # ... in octal
    "http://10.1/a.jpg",  # 10.0.0.1, short form
    "http://0x0a.0.0.1/a.jpg",
    "http://127.0.0.1:80@10.0.0.1/a.jpg",  # user@host: the host is 10.0.0.1
    "http://evil.test@10.0.0.1/a.jpg",
]
LOOPBACK_FORMS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.1"]


@pytest.mark.parametrize("allow_loopback", [False, True], ids=["strict", "loopback_allowed"])
@pytest.mark.parametrize("url", PRIVATE_LITERALS)
def test_private_addresses_are_refused_before_connecting(url: str, allow_loopback: bool) -> None:
    CONNECTS.clear()
    mode = "loopback" if allow_loopback else "strict"
    run_case(
        f"addr {url[7:40]} [{mode}]",
        url,
        "blocked_address",
        NO_NETWORK_WAIT_S,
        cfg=config(allow_loopback=allow_loopback),
    )
    assert CONNECTS == []


@pytest.mark.parametrize("form", [*LOOPBACK_FORMS, "[::1]", "[::ffff:127.0.0.1]", "127.8.9.10"])
def test_loopback_forms_are_refused_unless_allowed(web: LocalHTTPServer, form: str) -> None:
    CONNECTS.clear()
    before = web.total_requests
    run_case(
        f"loopback {form} [strict]",
        f"http://{form}:{web.port}/good.jpg",
        "blocked_address",
        NO_NETWORK_WAIT_S,
        cfg=config(allow_loopback=False),
    )
    assert CONNECTS == [] and web.total_requests == before


@pytest.mark.parametrize("form", LOOPBACK_FORMS)
def test_encoded_loopback_is_judged_on_the_address_it_names(web: LocalHTTPServer, form: str) -> None:
    """With loopback allowed, every spelling of 127.0.0.1 reaches the local server, and only it."""
    CONNECTS.clear()
    run_case(f"loopback {form} [loopback]", f"http://{form}:{web.port}/good.jpg", "ok", ONE_HOP_S)
    assert CONNECTS == ["127.0.0.1"]


@pytest.mark.parametrize(
    "template",
    [
        "http://evil.test@127.0.0.1:{port}/good.jpg",  # userinfo that looks like a host
        "http://10.0.0.1@127.0.0.1:{port}/good.jpg",
        "http://10.0.0.1%40@127.0.0.1:{port}/good.jpg",
        "http://10.0.0.1\\@127.0.0.1:{port}/good.jpg",  # WHATWG would read host 10.0.0.1; we check what we dial
    ],
)
def test_userinfo_tricks_connect_only_to_the_checked_host(web: LocalHTTPServer, template: str) -> None:
    url = template.format(port=web.port)
    CONNECTS.clear()
    run_case(f"userinfo {url[7:30]} [loopback]", url, "ok", ONE_HOP_S)
    assert CONNECTS == ["127.0.0.1"]
    CONNECTS.clear()
    run_case(
        f"userinfo {url[7:30]} [strict]",
        url,
        "blocked_address",
        NO_NETWORK_WAIT_S,
        cfg=config(allow_loopback=False),
    )
    assert CONNECTS == []


# --- hostnames: resolving private, mixed answers, rebinding ----------------------------------------------


@pytest.mark.parametrize(
    ("host", "answers"),
    [
        ("evil.test", ["10.0.0.1"]),
        ("metadata.test", ["169.254.169.254"]),
        ("ula.test", ["fd00::1"]),
        ("linklocal6.test", ["fe80::1"]),
        ("sixtofour.test", ["2002:a00:1::"]),
        ("mapped.test", ["::ffff:192.168.0.1"]),
        ("allprivate.test", ["10.0.0.1", "192.168.0.1", "fd00::2"]),
    ],
)
@pytest.mark.parametrize("allow_loopback", [False, True], ids=["strict", "loopback_allowed"])
def test_hostnames_resolving_private_are_refused(host: str, answers: list[str], allow_loopback: bool) -> None:
    DNS[host] = [answers]
    CONNECTS.clear()
    mode = "loopback" if allow_loopback else "strict"
    run_case(
        f"name {host} [{mode}]",
        f"http://{host}/a.jpg",
        "blocked_address",
        NO_NETWORK_WAIT_S,
        cfg=config(allow_loopback=allow_loopback),
    )
    assert CONNECTS == []


def test_mixed_answers_are_reached_only_on_an_allowed_address(web: LocalHTTPServer) -> None:
    DNS["mixed.test"] = [["10.0.0.1", "fd00::1", "127.0.0.1"]]
    CONNECTS.clear()
    run_case(
        "name mixed private+loopback [loopback]", f"http://mixed.test:{web.port}/good.jpg", "ok", ONE_HOP_S
    )
    assert CONNECTS == ["127.0.0.1"]
    CONNECTS.clear()
    run_case(
        "name mixed private+loopback [strict]",
        f"http://mixed.test:{web.port}/good.jpg",
        "blocked_address",
        NO_NETWORK_WAIT_S,
        cfg=config(allow_loopback=False),
    )
    assert CONNECTS == []


def test_unknown_hostname_is_dns_and_not_retried() -> None:
    result = run_case(
        "name nxdomain", "http://nxdomain.test/a.jpg", "dns", NO_NETWORK_WAIT_S, cfg=config(max_retries=3)
    )
    assert result.failures["attempts"].to_pylist() == [1]


def test_dns_rebinding_cannot_move_the_connect(web: LocalHTTPServer) -> None:
    """The name answers 127.0.0.1 to the check and 10.0.0.1 to any later lookup: the connect is pinned.

    The second half proves the rebinding resolver is real: a client that resolved again (a plain
    ``create_connection`` with the name) is sent to 10.0.0.1, which the guard refuses and records.
    """
    DNS["rebind.test"] = [["127.0.0.1"], ["10.0.0.1"]]
    LOOKUPS["rebind.test"] = 0
    CONNECTS.clear()
    run_case(
        "rebinding: check 127.0.0.1, then 10.0.0.1",
        f"http://rebind.test:{web.port}/good.jpg",
        "ok",
        ONE_HOP_S,
    )
    assert LOOKUPS["rebind.test"] == 1  # resolved once, for the check
    assert CONNECTS == ["127.0.0.1"]  # and dialled at exactly the checked address
    with pytest.raises(ConnectionRefusedError, match="test guard"):
        socket.create_connection(("rebind.test", web.port), timeout=0.5)
    assert NON_LOOPBACK == ["10.0.0.1"]
    NON_LOOPBACK.clear()


def test_dns_rebinding_on_a_redirect_hop_is_checked_again(web: LocalHTTPServer) -> None:
    """Each hop resolves once and is checked: the redirect's lookup gets the private answer and stops."""
    DNS["rebind2.test"] = [["127.0.0.1"], ["10.0.0.1"]]
    LOOKUPS["rebind2.test"] = 0
    web.route("/rebind-hop", Response(302, headers={"Location": f"http://rebind2.test:{web.port}/good.jpg"}))
    CONNECTS.clear()
    run_case(
        "rebinding on the 2nd hop", f"http://rebind2.test:{web.port}/rebind-hop", "blocked_address", ONE_HOP_S
    )
    assert LOOKUPS["rebind2.test"] == 2 and CONNECTS == ["127.0.0.1"]


# --- redirects (first hop on loopback, allowed) -------------------------------------------------------------

REDIRECT_PRIVATE = [
    "http://10.0.0.1/a.jpg",
    "http://172.16.0.1/a.jpg",
    "http://192.168.1.1/a.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/a.jpg",
    "http://[::]/a.jpg",
    "http://224.0.0.1/a.jpg",
    "http://[fd00::1]/a.jpg",
    "http://[fe80::1]/a.jpg",
    "http://[::ffff:10.0.0.1]/a.jpg",
    "http://[2002:a00:1::]/a.jpg",
    "http://167772161/a.jpg",
    "http://0xa9fea9fe/latest/",
    "http://evil.test/a.jpg",
    "//10.0.0.1/a.jpg",  # scheme-relative
    "http://user@10.0.0.1/a.jpg",
]
REDIRECT_SCHEMES = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_GET",
    "ftp://127.0.0.1/a.jpg",
    "dict://127.0.0.1:11211/stats",
    "data:image/png;base64,iVBORw0KGgo=",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_to_private_targets_are_refused(web: LocalHTTPServer, status: int) -> None:
    DNS["evil.test"] = [["10.0.0.1"]]
    urls = [
        web.route(f"/r{status}/{i}", Response(status, headers={"Location": target}))
        for i, target in enumerate(REDIRECT_PRIVATE)
    ]
    CONNECTS.clear()
    result = run_case(f"redirect {status} -> {len(urls)} private targets", urls, "blocked_address", ONE_HOP_S)
    assert result.failures["attempts"].to_pylist() == [1] * len(urls)
    assert Counter(CONNECTS) == Counter({"127.0.0.1": len(urls)})  # only each first hop was dialled
    assert all(web.requests[f"/r{status}/{i}"] == 1 for i in range(len(urls)))


@pytest.mark.parametrize("target", REDIRECT_SCHEMES)
def test_redirects_to_other_schemes_are_refused(web: LocalHTTPServer, target: str) -> None:
    path = f"/scheme/{abs(hash(target))}"
    url = web.route(path, Response(302, headers={"Location": target}))
    CONNECTS.clear()
    run_case(f"redirect -> {target[:24]}", url, "bad_scheme", ONE_HOP_S)
    assert CONNECTS == ["127.0.0.1"] and web.requests[path] == 1


def test_redirect_across_ports_is_followed_and_checked(web: LocalHTTPServer, web2: LocalHTTPServer) -> None:
    url = web.route("/to-web2", Response(302, headers={"Location": web2.url("/good.jpg")}))
    private_port = web.route(
        "/to-private-port", Response(302, headers={"Location": f"http://10.0.0.1:{web2.port}/"})
    )
    CONNECTS.clear()
    result = run_case(
        "redirect across ports (loopback)",
        [url, private_port],
        {"ok": 1, "blocked_address": 1},
        2 * ONE_HOP_S,
    )
    assert CONNECTS == ["127.0.0.1"] * 3
    assert result.ok["sha256"].to_pylist()  # the image came from the second server
    assert web2.requests["/good.jpg"] >= 1


def test_redirect_loops_and_long_chains_stop_at_the_limit(
    web: LocalHTTPServer, web2: LocalHTTPServer
) -> None:
    web.route("/loop", Response(302, headers={"Location": "/loop"}))
    web.route("/ping", Response(302, headers={"Location": web2.url("/pong")}))
    web2.route("/pong", Response(302, headers={"Location": web.url("/ping")}))
    for i in range(10):
        web.route(f"/chain/{i}", Response(302, headers={"Location": f"/chain/{i + 1}"}))
    web.image("/chain/10", jpeg())
    for i in range(3):
        web.route(f"/short/{i}", Response(302, headers={"Location": f"/short/{i + 1}"}))
    web.image("/short/3", jpeg())
    urls = [web.url("/loop"), web.url("/ping"), web.url("/chain/0"), web.url("/short/0")]
    run_case(
        "redirect loop, ping-pong, 10-hop chain, 3-hop",
        urls,
        {"too_many_redirects": 3, "ok": 1},
        4 * ONE_HOP_S,
        cfg=config(max_redirects=3),
    )
    assert web.requests["/loop"] == 4  # max_redirects=3: the first request and three hops, then stop
    assert web.requests["/ping"] + web2.requests["/pong"] == 4
    assert sum(web.requests[f"/chain/{i}"] for i in range(11)) == 4 and web.requests["/chain/10"] == 0
    assert web.requests["/short/3"] == 1  # exactly at the limit: fetched


# --- responses ------------------------------------------------------------------------------------------------


def test_decompression_bomb_png_is_refused_from_its_header(web: LocalHTTPServer) -> None:
    bomb = png_bomb(30_000)
    assert len(bomb) < 16_000  # a few KB on the wire, 900 M pixels declared
    url = web.image("/bomb.png", bomb, "image/png")
    run_case(
        "PNG 30000x30000, few KB (default max_pixels)",
        url,
        "bomb",
        ONE_HOP_S,
        cfg=config(max_pixels=DownloadConfig().max_pixels),
    )


def test_content_length_over_the_cap_is_refused_without_reading() -> None:
    with RawServer(declares_over_cap) as server:
        run_case("Content-Length 10 GiB, no body", server.url(), "too_large", ONE_HOP_S)


def test_lying_content_length_under_reads_only_what_it_declared() -> None:
    with RawServer(declares_less_sends_more) as server:
        run_case("Content-Length 1000, sends 5 MB", server.url(), "decode_error", ONE_HOP_S)


def test_lying_content_length_over_is_a_connection_failure() -> None:
    with RawServer(declares_more_sends_less) as server:
        result = run_case(
            "Content-Length 100000, sends 10 B",
            server.url(),
            "connection",
            2 * ONE_HOP_S,
            cfg=config(max_retries=1),
        )
        assert result.failures["attempts"].to_pylist() == [2] and server.connections == 2


def test_endless_chunked_body_stops_at_the_byte_cap() -> None:
    with RawServer(endless_chunked) as server:
        run_case("endless chunked body", server.url(), "too_large", ONE_HOP_S, bound_bytes=BODY_HEAP)


def test_gzip_bomb_is_never_inflated(web: LocalHTTPServer) -> None:
    bomb = gzip.compress(bytes(50_000_000), compresslevel=9)
    assert len(bomb) < 100_000  # ~50 KB that would inflate to 50 MB
    url = web.image("/bomb.gz.jpg", bomb, "image/jpeg", **{"Content-Encoding": "gzip"})
    run_case("gzip bomb (Content-Encoding: gzip)", url, "decode_error", ONE_HOP_S)


def test_slowloris_body_gives_up_at_the_deadline() -> None:
    """One byte every 0.3 s, well inside any per-read timeout: the whole-body deadline must still end it."""
    with RawServer(slowloris_body) as server:
        run_case("slowloris body (1 B / 0.3 s)", server.url(), "timeout", TIMEOUT_S * 2 + MARGIN_S)
    with RawServer(slowloris_body) as server:
        result = run_case(
            "slowloris body, 1 retry",
            server.url(),
            "timeout",
            2 * (2 * TIMEOUT_S) + MARGIN_S,
            cfg=config(max_retries=1),
        )
        assert result.failures["attempts"].to_pylist() == [2]


def test_slowloris_headers_give_up_at_the_deadline() -> None:
    with RawServer(slowloris_headers) as server:
        run_case("slowloris headers (1 B / 0.3 s)", server.url(), "timeout", TIMEOUT_S + MARGIN_S)


@pytest.mark.parametrize("accept", [True, False], ids=["accepts_never_answers", "never_accepts"])
def test_silent_server_times_out(accept: bool) -> None:
    with RawServer(never_answer, accept=accept) as server:
        name = "accepts, never answers" if accept else "listens, never accepts"
        run_case(name, server.url(), "timeout", TIMEOUT_S + MARGIN_S)


def test_reset_mid_body_is_a_bounded_connection_failure() -> None:
    with RawServer(reset_mid_body) as server:
        result = run_case(
            "reset mid-body (RST), 1 retry",
            server.url(),
            "connection",
            2 * ONE_HOP_S,
            cfg=config(max_retries=1),
        )
        assert result.failures["attempts"].to_pylist() == [2] and server.connections == 2


def test_html_as_jpeg_and_truncated_jpeg(web: LocalHTTPServer) -> None:
    html = web.image("/page.jpg", b"<!DOCTYPE html><html><body>Sorry</body></html>", "image/jpeg")
    whole = jpeg(400, 300)
    truncated = web.image("/half.jpg", whole[: len(whole) // 2], "image/jpeg")
    run_case("HTML served as image/jpeg", html, "not_image", ONE_HOP_S, bound_bytes=BODY_HEAP)
    run_case("truncated JPEG", truncated, "decode_error", ONE_HOP_S, bound_bytes=BODY_HEAP)


def test_retry_after_is_honoured_per_host_and_other_hosts_go_on() -> None:
    """429 (Retry-After: 3600) and 503 (Retry-After: 1) on host A: each URL waits before its retry, A's later
    URLs are held back until the pause ends although A has a free slot, both bounded by config (1 s here,
    not 3600), and host B's images are fetched meanwhile, with real sleeps."""
    DNS["slow-down.test"] = [["127.0.0.1"]]
    DNS["other.test"] = [["127.0.0.1"]]
    jpeg_type = {"Content-Type": "image/jpeg"}
    with (
        LocalHTTPServer(hostname="slow-down.test") as host_a,
        LocalHTTPServer(hostname="other.test") as host_b,
    ):
        body = jpeg()
        urls = [
            host_a.route(
                "/429.jpg", Response(429, b"", {"Retry-After": "3600"}), Response(200, body, jpeg_type)
            ),
            host_a.route(
                "/503.jpg", Response(503, b"", {"Retry-After": "1"}), Response(200, body, jpeg_type)
            ),
            host_a.route("/a1.jpg", Response(200, body, jpeg_type, delay_s=0.3)),
            host_a.route("/a2.jpg", Response(200, body, jpeg_type)),
            host_a.route("/a3.jpg", Response(200, body, jpeg_type)),
        ]
        urls += [host_b.route(f"/{i}.jpg", Response(200, body, jpeg_type, delay_s=0.05)) for i in range(6)]
        pause_s = 1.0
        result = run_case(
            "429 (3600) + 503 (1) Retry-After on A, 3 more on A, 6 images on B",
            urls,
            "ok",
            pause_s + 2 * ONE_HOP_S,
            cfg=config(
                max_retries=2,
                thread_count=6,
                max_per_host=3,
                max_retry_after_s=pause_s,
                max_host_pause_s=pause_s,
            ),
            sleep=time.sleep,
            bound_bytes=BODY_HEAP,
        )
        attempts = dict(zip(result.ok["url"].to_pylist(), result.ok["attempts"].to_pylist(), strict=True))
        assert attempts[urls[0]] == attempts[urls[1]] == 2
        a_times: dict[str, list[float]] = {}
        for path, when in host_a.request_log:
            a_times.setdefault(path, []).append(when)
        for path in ("/429.jpg", "/503.jpg"):
            first, retry = a_times[path]
            assert pause_s <= retry - first < pause_s + MARGIN_S  # waited out, and capped (not 3600 s)
        paused_at = min(a_times["/429.jpg"][0], a_times["/503.jpg"][0])
        for path in ("/a2.jpg", "/a3.jpg"):  # A had a free slot once a1 was done (0.3 s): the pause held them
            assert paused_at + pause_s <= a_times[path][0] < paused_at + pause_s + MARGIN_S
        assert len(host_b.request_log) == 6
        assert max(when for _path, when in host_b.request_log) < paused_at + pause_s  # B went on meanwhile


# --- rows ----------------------------------------------------------------------------------------------------


def test_bad_rows_are_counted_and_never_requested(web: LocalHTTPServer) -> None:
    good = web.url("/good.jpg")
    before = web.total_requests
    CONNECTS.clear()
    bad = {
        "": "bad_url",
        "   ": "bad_url",
        "http://": "bad_url",
        "http:///path-without-host": "bad_url",
        f"http://127.0.0.1:{web.port}/good.jpg\r\nX-Injected: 1": "bad_url",  # header injection
        f"http://127.0.0.1:{web.port}/go\nod.jpg": "bad_url",  # urlsplit would drop the newline
        f"http://127.0.0.1:{web.port}/good.jpg\x00.png": "bad_url",
        f"http://127.0.0.1\t:{web.port}/good.jpg": "bad_url",
        "http://127.0.0.1:99999/a.jpg": "bad_url",  # port out of range
        "http://[::1/a.jpg": "bad_url",  # broken IPv6 literal
        good + "?" + "a" * 10_000: "bad_url",  # a 10 KB URL
        "ftp://127.0.0.1/a.jpg": "bad_scheme",
        "file:///etc/passwd": "bad_scheme",
        "gopher://127.0.0.1/": "bad_scheme",
        "ws://127.0.0.1/": "bad_scheme",
        "data:image/png;base64,iVBORw0KGgo=": "bad_scheme",
        "javascript:alert(1)": "bad_scheme",
        "//127.0.0.1/a.jpg": "bad_scheme",  # no scheme at all
    }
    expected = Counter(bad.values())
    expected["bad_url"] += 1  # the null URL
    run_case(
        f"{len(bad) + 1} bad rows (empty, control, 10 KB, schemes, null)",
        rows([*bad, None]),
        dict(expected),
        NO_NETWORK_WAIT_S,
    )
    assert CONNECTS == [] and web.total_requests == before


def test_odd_but_valid_urls_are_fetched(web: LocalHTTPServer) -> None:
    urls = [
        f"HTTP://127.0.0.1:{web.port}/good.jpg",  # scheme case
        f"http://127.0.0.1:{web.port}/good.jpg?" + "a" * 7_000,  # long but under max_url_chars
        f"http://127.0.0.1:{web.port}/%FF%FE.jpg",  # non-UTF-8 escapes travel as they are: 404
        f"  http://127.0.0.1:{web.port}/good.jpg  ",  # surrounding blanks
    ]
    result = run_case(
        "odd valid URLs (case, 7 KB, %FF, blanks)", urls, {"ok": 3, "http_404": 1}, ONE_HOP_S * 2
    )
    assert result.failures["url"].to_pylist() == [urls[2]]


def test_non_utf8_url_bytes_are_bad_url_and_the_batch_goes_on(web: LocalHTTPServer) -> None:
    good = web.url("/good.jpg").encode()
    table = rows([good, b"http://127.0.0.1/\xff\xfe.jpg", b"\xc3\x28"], pa.binary())
    result = run_case("URL column as bytes, 2 not UTF-8", table, {"ok": 1, "bad_url": 2}, ONE_HOP_S)
    assert result.ok["url"].to_pylist() == [good.decode()]
    assert result.failures["url"].to_pylist() == ["http://127.0.0.1/\\xff\\xfe.jpg", "\\xc3("]


def test_duplicate_urls_are_fetched_once(web2: LocalHTTPServer) -> None:
    url = web2.image("/dup.jpg", jpeg(seed=5))
    result = run_case("same URL 3 times in a batch", [url, url, url], "ok", ONE_HOP_S)
    assert web2.requests["/dup.jpg"] == 1
    assert result.ok["sample_id"].to_pylist() == ["s0", "s1", "s2"]
    assert len(set(result.ok["sha256"].to_pylist())) == 1


# --- netsafety on its own: the embedded-IPv4 forms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[2002:a00:1::]/", "blocked_address"),  # 6to4 of 10.0.0.1 (passed before)
        ("http://[2002:c0a8:101::]/", "blocked_address"),  # 6to4 of 192.168.1.1
        ("http://[2002:7f00:1::]/", "blocked_address"),  # 6to4 of 127.0.0.1: not the local stack, refused
        ("http://[2001:0:a00:1::]/", "blocked_address"),  # Teredo, server 10.0.0.1
        ("http://[2001:0:808:808::f5ff:fffe]/", "blocked_address"),  # Teredo, client 10.0.0.1
        ("http://[::a00:1]/", "blocked_address"),  # IPv4-compatible 10.0.0.1
        ("http://[64:ff9b:1::a00:1]/", "blocked_address"),  # local-use NAT64
        ("http://[2002:808:808::]/", None),  # 6to4 of a public address stays public
        ("http://[2606:4700:4700::1111]/", None),
    ],
)
def test_check_url_judges_ipv6_by_the_ipv4_it_carries(url: str, reason: str | None) -> None:
    assert check_url(url) == reason
    assert check_url(url, allow_loopback=True) == reason
