"""Download stage library: one batch of (sample_id, url, caption, names) rows -> stored images + failures.

What is img2dataset's (1.47, reused as is, not forked):
- ``img2dataset.downloader.is_disallowed``: the X-Robots-Tag opt-out check (noai, noimageai, noindex,
  noimageindex by default), applied to every image response for our own token and for img2dataset's.
- ``img2dataset.resizer.Resizer``: resize to the longest side, ratio kept, JPEG/WebP encode (see ``images``).

What is ours, because img2dataset's ``download_image`` (plain ``urllib.urlopen``) cannot provide it:
- SSRF safety (``netsafety``): the host is resolved once, every address checked, and the connection pinned
  to the checked IP (no DNS rebinding); redirects followed by hand, bounded, each hop checked again; only
  http(s). urllib resolves and redirects on its own, out of reach of any check.
- A response byte cap and a whole-body deadline (urllib reads an unbounded body, with per-read timeouts only).
- Reasons per failure instead of an exception string; bounded retries of transient errors with exponential
  backoff and a capped Retry-After on 429/503 (img2dataset's default is no retry); per-host concurrency and
  a host-wide pause on Retry-After, kept by a scheduler that never leaves a thread waiting on a busy host
  (``HostScheduler``), over a stream of sub-batches (``iter_batches``).
- A name opt-out list applied before any request (``filter_opted_out``).
- Image validation before the Resizer: pixel cap, truncation, first frame, EXIF rotation (see ``images``).

Failure reasons (one per failed sample; ``counts`` also holds ``ok``):
  opted_out_name      a name in the row (or its caption) is on the opt-out list; never requested
  bad_scheme          not http/https                  bad_url         empty, no host, bad port, control
                                                      characters, not UTF-8, over ``max_url_chars``
  dns                 the host did not resolve (not retried: at LAION scale that is nearly always a dead domain)
  blocked_address     resolves only to non-public addresses (loopback too, unless ``allow_loopback``)
  timeout             connect/read timed out, or the body was not read within the deadline   (retried)
  connection          refused, reset, bad HTTP, closed early                                 (retried)
  tls                 TLS handshake or certificate failure
  http_429 / http_5xx rate-limited / server error, still so after the retries                (retried)
  http_<code>         any other non-200 final status, e.g. http_404, http_403, http_204
  too_many_redirects  more than ``max_redirects`` hops (a redirect without Location is http_<code>)
  opted_out_header    X-Robots-Tag forbids use (img2dataset's check)
  not_image           non-image content type (text/html, json, ...) or markup where an image was expected
  too_large           body over ``max_bytes``          bomb            more pixels than ``max_pixels``
  decode_error        truncated, corrupt or unrecognised image data
  internal_error      a bug met on this sample (counted, the batch goes on)
"""

from __future__ import annotations

import email.utils
import heapq
import http.client
import io
import socket
import ssl
import threading
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from img2dataset.downloader import is_disallowed

from laioncele.config import DownloadConfig
from laioncele.download.images import EncodedImage, ImageEncoder, ImageRejected
from laioncele.download.netsafety import Resolver, resolve_checked, system_resolver
from laioncele.io import schema

TRANSIENT_REASONS = frozenset({"timeout", "connection", "http_429", "http_5xx"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NON_IMAGE_TYPES = (
    "text/",
    "application/json",
    "application/xhtml",
    "application/xml",
    "application/javascript",
)
_CHUNK = 64 * 1024


class FetchFailure(Exception):
    """One failed attempt; ``reason`` is a documented reason, ``retry_after`` the server's wish in seconds."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


class DownloadResult(NamedTuple):
    ok: pa.Table  # schema.DOWNLOAD
    failures: pa.Table  # schema.DOWNLOAD_FAILURES
    counts: Counter[str]  # reason -> samples, "ok" included


@dataclass(frozen=True)
class _Outcome:
    image: EncodedImage | None
    reason: str
    attempts: int
    detail: str = ""


# --- name opt-out ---------------------------------------------------------------------------------------


def normalise_name(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form: "Zoë  Saldaña" == "zoe_saldana" == "ZOE-SALDANA"."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in stripped).split())


class OptOutMatcher:
    """Matches rows naming an opted-out person, in the ``names`` list or anywhere in the caption."""

    def __init__(self, opt_out_names: Iterable[str]) -> None:
        self.names = {n for n in (normalise_name(x) for x in opt_out_names) if n}
        self._lengths = sorted({len(n.split()) for n in self.names})

    def matches(self, names: Iterable[str] | None, caption: str | None) -> bool:
        if not self.names:
            return False
        if any(normalise_name(n) in self.names for n in names or ()):
            return True
        tokens = normalise_name(caption or "").split()
        return any(
            " ".join(tokens[i : i + k]) in self.names
            for k in self._lengths
            for i in range(len(tokens) - k + 1)
        )


def filter_opted_out(table: pa.Table, opt_out_names: Iterable[str]) -> tuple[pa.Table, pa.Table]:
    """(rows to download, rows removed) for an opt-out list; uses ``names`` and ``caption`` when present."""
    matcher = OptOutMatcher(opt_out_names)
    if not matcher.names or table.num_rows == 0:
        return table, table.slice(0, 0)
    names = table.column("names").to_pylist() if "names" in table.column_names else [None] * table.num_rows
    captions = table.column("caption").to_pylist() if "caption" in table.column_names else [None] * len(names)
    removed = pa.array([matcher.matches(n, c) for n, c in zip(names, captions, strict=True)], pa.bool_())
    return table.filter(pc.invert(removed)), table.filter(removed)


# --- one HTTP request, pinned to a checked address -------------------------------------------------------


class _DeadlineSocket:
    """A connected socket whose every send and receive fits in what is left of one deadline.

    A socket timeout bounds a single ``recv``: a slowloris server that sends a byte just inside it holds a
    plain socket for as long as it likes. Here each operation gets ``min(timeout_s, time left)`` and fails
    with ``TimeoutError`` once the deadline is spent, so a hop's connect, TLS handshake, request and headers
    take at most ``timeout_s`` together, and its body (``restart`` before reading it) another ``timeout_s``,
    whatever pace the server keeps. http.client reads through ``makefile``; ``close`` leaves the socket to
    the fetcher (``Downloader._fetch_once`` closes ``raw`` when the hop ends).
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.raw: socket.socket | None = None

    def restart(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s

    def arm(self, sock: socket.socket) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"deadline of {self.timeout_s:g}s passed")
        sock.settimeout(min(self.timeout_s, left))

    def sendall(self, data: bytes) -> None:
        assert self.raw is not None
        self.arm(self.raw)
        self.raw.sendall(data)

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int:
        assert self.raw is not None
        self.arm(self.raw)
        return self.raw.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *_args: Any, **_kwargs: Any) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"only 'rb' is supported, not {mode!r}")
        return io.BufferedReader(_DeadlineReader(self), buffer_size=_CHUNK)

    def close(self) -> None:
        """http.client calls this when the response takes the connection over; the fetcher closes ``raw``."""

    def shutdown_now(self) -> None:
        if self.raw is not None:
            self.raw.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self.sock.recv_into(memoryview(buffer))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to ``pinned_ip`` while sending ``host`` in the Host header; every step within the deadline."""

    def __init__(self, host: str, port: int, pinned_ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_ip = pinned_ip
        self.guard = _DeadlineSocket(timeout)

    def _open(self) -> socket.socket:
        left = self.guard.deadline - time.monotonic()
        sock = socket.create_connection((self.pinned_ip, self.port), max(0.001, min(self.timeout, left)))
        self.guard.raw = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connect(self) -> None:
        self._open()
        self.sock = self.guard


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """TLS to ``pinned_ip`` with SNI and certificate verification against ``host``."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, pinned_ip: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, pinned_ip, timeout)
        self.tls_context = context

    def connect(self) -> None:
        sock = self._open()
        self.guard.arm(sock)  # the whole handshake within what is left (CPython keeps one deadline for it)
        self.guard.raw = self.tls_context.wrap_socket(sock, server_hostname=self.host)
        self.sock = self.guard


def tls_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The client TLS context: the system store, plus ``ca_bundle``'s CAs when given; always verifying.

    ``create_default_context`` keeps CERT_REQUIRED and check_hostname on; the extra bundle is loaded next to
    the system store (``cafile=`` would replace it), so a private mirror's CA does not cost the public web.
    """
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def _request_target(url: str) -> str:
    """Path and query, percent-encoding what http.client refuses (spaces, non-ASCII) and keeping escapes."""
    parts = urlsplit(url)
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return target


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _classify_status(status: int, retry_after: float | None) -> FetchFailure:
    if status == 429:
        return FetchFailure("http_429", "rate limited", retry_after)
    if status >= 500:
        return FetchFailure("http_5xx", f"status {status}", retry_after if status == 503 else None)
    return FetchFailure(f"http_{status}", f"status {status}")


# --- which URL a free thread takes next -----------------------------------------------------------------

Item = TypeVar("Item")


def host_key(url: str | None) -> str:
    """The politeness key of a URL: its host name, lower-cased ("" when there is none)."""
    try:
        return (urlsplit(url.strip()).hostname or "").lower() if url else ""
    except ValueError:
        return ""


class HostScheduler(Generic[Item]):
    """Hands each free download thread the oldest item whose host has a free slot and is not paused.

    Per-host politeness used to be a semaphore taken inside the thread: a thread whose URL's host was busy
    (``max_per_host`` requests in flight, e.g. a slow host) sat blocked while other hosts' URLs waited behind
    it. Here a thread only ever takes runnable work; the others are parked per host, in order, until a slot
    frees or the host's Retry-After pause (``pause``) ends, and no thread waits on them. A slot is held from
    ``take`` to ``done``: the whole download of the item, its retries' waits included (stricter than the old
    semaphore, released while backing off). ``take`` returns None once ``close`` was called and nothing is
    left to hand out.
    """

    def __init__(self, max_per_host: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_per_host = max_per_host
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, Item]] = deque()  # runnable as far as known, oldest first
        self._parked: dict[str, deque[Item]] = {}  # host -> items waiting for a slot or for its pause to end
        self._active: Counter[str] = Counter()  # host -> items taken and not done
        self._paused_until: dict[str, float] = {}
        self._wakeups: list[tuple[float, str]] = []  # heap of (pause end, host)
        self._closed = False

    def add(self, host: str, item: Item) -> None:
        with self._cond:
            self._queue.append((host, item))
            self._cond.notify()

    def close(self) -> None:
        """No more items: threads return once the rest is handed out."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """Drop what was not handed out yet and close (the consumer stopped early)."""
        with self._cond:
            self._queue.clear()
            self._parked.clear()
            self._closed = True
            self._cond.notify_all()

    def pause(self, host: str, seconds: float) -> None:
        """Hand out no new item of ``host`` for ``seconds`` (items already taken go on)."""
        with self._cond:
            until = self.clock() + seconds
            if until > self._paused_until.get(host, 0.0):
                self._paused_until[host] = until
                heapq.heappush(self._wakeups, (until, host))

    def done(self, host: str) -> None:
        with self._cond:
            self._active[host] -= 1
            if not self._active[host]:
                del self._active[host]
            self._unpark(host, self.clock())
            self._cond.notify_all()

    def take(self) -> tuple[str, Item] | None:
        """(host, item) to work on now, waiting while everything left is parked; None when drained."""
        with self._cond:
            while True:
                now = self.clock()
                self._wake(now)
                while self._queue:
                    host, item = self._queue.popleft()
                    if self._runnable(host, now):
                        self._active[host] += 1
                        return host, item
                    self._parked.setdefault(host, deque()).append(item)
                if self._closed and not self._parked:
                    return None
                timeout = max(0.0, self._wakeups[0][0] - now) if self._wakeups else None
                self._cond.wait(timeout)

    def _runnable(self, host: str, now: float) -> bool:
        return self._active[host] < self.max_per_host and self._paused_until.get(host, 0.0) <= now

    def _unpark(self, host: str, now: float) -> None:
        """Put as many of ``host``'s parked items back at the queue's front as it has free slots."""
        parked = self._parked.get(host)
        if not parked or self._paused_until.get(host, 0.0) > now:
            return
        free = max(0, self.max_per_host - self._active[host])
        back = [(host, parked.popleft()) for _ in range(min(free, len(parked)))]
        self._queue.extendleft(reversed(back))
        if not parked:
            del self._parked[host]

    def _wake(self, now: float) -> None:
        while self._wakeups and self._wakeups[0][0] <= now:
            _until, host = heapq.heappop(self._wakeups)
            if self._paused_until.get(host, 0.0) <= now:
                self._paused_until.pop(host, None)
                self._unpark(host, now)


class _Slice:
    """One slice of a batch stream: its rows, and the outcome of each distinct URL as threads finish them."""

    def __init__(self, removed: pa.Table, rows: list[dict[str, Any]], urls: list[str | None]) -> None:
        self.removed = removed
        self.rows = rows
        self.urls = urls
        self.distinct = list(dict.fromkeys(urls))  # a URL repeated in the slice is fetched once
        self.outcomes: dict[str | None, _Outcome] = {}
        self._lock = threading.Lock()
        self.finished = threading.Event()
        if not self.distinct:
            self.finished.set()

    def record(self, url: str | None, outcome: _Outcome) -> None:
        with self._lock:
            self.outcomes[url] = outcome
            if len(self.outcomes) == len(self.distinct):
                self.finished.set()


# --- the batch downloader -------------------------------------------------------------------------------


class Downloader:
    """Per-batch download, made for a Ray Data actor: build once (``__init__``), call per batch.

    ``opt_out_names``: people removed before any request (pass ``config.names.opt_out_names``).
    ``resolver``: host -> addresses; the system resolver unless a test or a caching resolver is given.
    """

    def __init__(
        self,
        config: DownloadConfig | None = None,
        opt_out_names: Iterable[str] = (),
        resolver: Resolver = system_resolver,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config or DownloadConfig()
        self.encoder = ImageEncoder(self.config)
        self.opt_out_names = list(opt_out_names)
        self.resolver = resolver
        self.sleep = sleep
        self.tls_context = tls_context(self.config.ca_bundle)
        self.ua_tokens = [t.strip().lower() for t in self.config.user_agent_tokens if t.strip()]
        self.directives = {d.strip().lower() for d in self.config.disallowed_header_directives if d.strip()}
        self.pool = ThreadPoolExecutor(max_workers=self.config.thread_count, thread_name_prefix="download")

    # one request ------------------------------------------------------------------------------------------

    def _connection(self, url: str, ip: str) -> _PinnedHTTPConnection:
        parts = urlsplit(url)
        host = parts.hostname or ""
        timeout = self.config.timeout_s
        if parts.scheme.lower() == "https":
            return _PinnedHTTPSConnection(host, parts.port or 443, ip, timeout, self.tls_context)
        return _PinnedHTTPConnection(host, parts.port or 80, ip, timeout)

    def _is_disallowed(self, headers: http.client.HTTPMessage) -> bool:
        if not self.directives:
            return False
        return any(is_disallowed(headers, token, self.directives) for token in self.ua_tokens or [None])

    def _read_body(self, response: http.client.HTTPResponse, guard: _DeadlineSocket) -> bytes:
        """The body, within ``max_bytes`` and one deadline (``guard`` bounds every receive, see above)."""
        declared = response.getheader("Content-Length")
        if declared and declared.strip().isdigit() and int(declared) > self.config.max_bytes:
            raise FetchFailure("too_large", f"Content-Length {declared}")
        guard.restart()
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = response.read1(_CHUNK)
            except TimeoutError as err:
                raise FetchFailure("timeout", f"body not read within the deadline ({err})") from None
            if not chunk:
                if response.length:  # read1 returns b"" when the server closes before Content-Length
                    raise FetchFailure("connection", f"closed {response.length} bytes before Content-Length")
                return b"".join(chunks)
            size += len(chunk)
            if size > self.config.max_bytes:
                raise FetchFailure("too_large", f"over {self.config.max_bytes} bytes")
            chunks.append(chunk)

    def _fetch_once(self, url: str) -> bytes:
        """One attempt: follow redirects by hand, checking and pinning every hop's address."""
        current = url
        for _hop in range(self.config.max_redirects + 1):
            reason, ip = resolve_checked(current, self.config.allow_loopback, self.resolver)
            if reason is not None or ip is None:
                raise FetchFailure(reason or "blocked_address", current)
            connection = self._connection(current, ip)
            try:
                headers = {
                    "User-Agent": self.config.user_agent,
                    "Accept": "image/avif,image/webp,image/*;q=0.9,*/*;q=0.5",
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                }
                connection.request("GET", _request_target(current), headers=headers)
                response = connection.getresponse()
                status = response.status
                if status in REDIRECT_STATUSES:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchFailure(f"http_{status}", "redirect without Location")
                    current = urljoin(current, location.strip())
                    continue
                if status != 200:
                    raise _classify_status(status, parse_retry_after(response.getheader("Retry-After")))
                if self._is_disallowed(response.headers):
                    raise FetchFailure("opted_out_header", str(response.headers.get_all("X-Robots-Tag")))
                content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
                if content_type.startswith(_NON_IMAGE_TYPES):
                    raise FetchFailure("not_image", f"Content-Type {content_type}")
                encoding = (response.getheader("Content-Encoding") or "identity").strip().lower()
                if encoding not in ("", "identity"):  # asked for identity: never inflate (gzip bombs)
                    raise FetchFailure("decode_error", f"Content-Encoding {encoding} (identity was asked)")
                return self._read_body(response, connection.guard)
            except FetchFailure:
                raise
            except TimeoutError as err:
                raise FetchFailure("timeout", str(err)) from None
            except ssl.SSLError as err:
                raise FetchFailure("tls", str(err)) from None
            except (http.client.InvalidURL, UnicodeError, ValueError) as err:
                raise FetchFailure("bad_url", str(err)) from None
            except (OSError, http.client.HTTPException) as err:
                raise FetchFailure("connection", f"{type(err).__name__}: {err}") from None
            finally:
                connection.close()
                connection.guard.shutdown_now()
        raise FetchFailure("too_many_redirects", f"over {self.config.max_redirects} hops")

    # one sample -------------------------------------------------------------------------------------------

    def download_one(self, url: str, on_retry_after: Callable[[float], None] | None = None) -> _Outcome:
        """Fetch with bounded retries of transient failures, then validate and re-encode.

        ``on_retry_after``: told each (capped) Retry-After the host sends, so the caller can hold the host's
        other URLs back too (``iter_batches`` pauses the host in its scheduler).
        """
        attempts = 0
        while True:
            attempts += 1
            try:
                data = self._fetch_once(url)
                break
            except FetchFailure as failure:
                if failure.retry_after is not None and on_retry_after is not None:
                    on_retry_after(min(failure.retry_after, self.config.max_host_pause_s))
                if failure.reason not in TRANSIENT_REASONS or attempts > self.config.max_retries:
                    return _Outcome(None, failure.reason, attempts, failure.detail)
                wait = failure.retry_after
                if wait is None:
                    wait = self.config.backoff_s * 2 ** (attempts - 1)
                self.sleep(min(wait, self.config.max_retry_after_s))
        try:
            return _Outcome(self.encoder.encode(data), "ok", attempts)
        except ImageRejected as rejected:
            return _Outcome(None, rejected.reason, attempts, rejected.detail)

    def _safe_download_one(
        self, url: str | None, on_retry_after: Callable[[float], None] | None = None
    ) -> _Outcome:
        """A bug on one hostile URL must not end the batch: count it and carry on."""
        if url is None:
            return _Outcome(None, "bad_url", 0, "missing or not UTF-8")
        url = url.strip()  # split_url checks the stripped form: fetch exactly that
        if len(url) > self.config.max_url_chars:
            return _Outcome(None, "bad_url", 0, f"{len(url)} characters, over {self.config.max_url_chars}")
        try:
            return self.download_one(url, on_retry_after)
        except Exception as err:  # noqa: BLE001
            return _Outcome(None, "internal_error", 1, f"{type(err).__name__}: {err}")

    def _work(self, scheduler: HostScheduler[tuple[_Slice, str | None]]) -> None:
        """One pool thread: take runnable URLs until the scheduler is drained."""
        while (task := scheduler.take()) is not None:
            host, (piece, url) = task
            outcome = _Outcome(None, "internal_error", 1, "the download thread stopped")
            try:
                pause = (lambda seconds, h=host: scheduler.pause(h, seconds)) if host else None
                outcome = self._safe_download_one(url, pause)
            finally:
                scheduler.done(host)
                piece.record(url, outcome)

    # a stream of batches ----------------------------------------------------------------------------------

    def iter_batches(self, table: pa.Table | Mapping[str, Any], batch_rows: int) -> Iterator[DownloadResult]:
        """One ``DownloadResult`` per ``batch_rows`` slice of ``table``, in order, with the threads kept busy.

        Calling the downloader slice by slice left every thread idle while each slice waited for its slowest
        URL (a 10 s timeout, a slow host); here the next slice's URLs are already being fetched meanwhile, so
        at most two slices' images are held at once. Politeness (``max_per_host``) and Retry-After pauses
        hold across the whole stream, per host, without holding a thread (``HostScheduler``). The stream
        takes the whole thread pool: exhaust or ``close()`` it before starting another.
        """
        table = as_table(table)
        pieces = [table.slice(s, batch_rows) for s in range(0, table.num_rows, batch_rows)] or [table]
        scheduler: HostScheduler[tuple[_Slice, str | None]] = HostScheduler(self.config.max_per_host)
        admitted: deque[_Slice] = deque()

        def admit(index: int) -> None:
            piece = self._slice(pieces[index])
            admitted.append(piece)
            for url in piece.distinct:
                scheduler.add(host_key(url), (piece, url))
            if index == len(pieces) - 1:
                scheduler.close()

        ahead = 2  # slices in flight
        for index in range(min(ahead, len(pieces))):
            admit(index)
        workers = [self.pool.submit(self._work, scheduler) for _ in range(self.config.thread_count)]
        try:
            for index in range(len(pieces)):
                piece = admitted.popleft()
                piece.finished.wait()
                if index + ahead < len(pieces):
                    admit(index + ahead)
                yield self._result(piece)
        finally:
            scheduler.cancel()
            for worker in workers:
                worker.result()

    def __call__(self, batch: pa.Table | Mapping[str, Any]) -> DownloadResult:
        table = as_table(batch)
        results = self.iter_batches(table, max(1, table.num_rows))
        try:
            return next(results)
        finally:
            results.close()

    def _slice(self, table: pa.Table) -> _Slice:
        kept, removed = filter_opted_out(table, self.opt_out_names)
        rows = kept.to_pylist()
        urls = [_url_text(r["url"]) for r in rows]
        for row in rows:  # the tables hold text: a non-UTF-8 URL is kept readable, with escapes
            if isinstance(row["url"], bytes):
                row["url"] = row["url"].decode("utf-8", "backslashreplace")
        return _Slice(removed, rows, urls)

    def _result(self, piece: _Slice) -> DownloadResult:
        counts: Counter[str] = Counter()
        ok_rows: list[dict[str, Any]] = []
        failure_rows: list[dict[str, Any]] = []
        for row in piece.removed.select(["sample_id", "url"]).to_pylist():
            failure_rows.append(_failure_row(row, "opted_out_name", 0, "name on the opt-out list"))
            counts["opted_out_name"] += 1
        for row, url in zip(piece.rows, piece.urls, strict=True):
            outcome = piece.outcomes[url]
            counts[outcome.reason] += 1
            if outcome.image is None:
                failure_rows.append(_failure_row(row, outcome.reason, outcome.attempts, outcome.detail))
                continue
            image = outcome.image
            ok_rows.append(
                {
                    "sample_id": row["sample_id"],
                    "url": row["url"],
                    "caption": row.get("caption"),
                    "names": row.get("names"),
                    "image": image.data,
                    "image_format": image.format,
                    "width": image.width,
                    "height": image.height,
                    "original_width": image.original_width,
                    "original_height": image.original_height,
                    "sha256": image.sha256,
                    "attempts": outcome.attempts,
                }
            )
        ok = pa.Table.from_pylist(ok_rows, schema=schema.DOWNLOAD)
        failures = pa.Table.from_pylist(failure_rows, schema=schema.DOWNLOAD_FAILURES)
        return DownloadResult(ok, failures, counts)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _url_text(value: Any) -> str | None:
    """A row's URL as text; None when missing or not UTF-8 (then ``bad_url``, never requested)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _failure_row(row: Mapping[str, Any], reason: str, attempts: int, detail: str) -> dict[str, Any]:
    return {
        "sample_id": row["sample_id"],
        "url": row["url"],
        "reason": reason,
        "attempts": attempts,
        "retryable": reason in TRANSIENT_REASONS,
        "detail": detail[:500],
    }


def as_table(batch: pa.Table | Mapping[str, Any]) -> pa.Table:
    """A Ray Data batch (pyarrow Table, or dict of columns as lists / NumPy arrays) as a pyarrow Table."""
    if isinstance(batch, pa.Table):
        return batch
    columns: dict[str, list[Any]] = {}
    for name, values in batch.items():
        columns[name] = [v.tolist() if hasattr(v, "tolist") else v for v in values]
    return pa.Table.from_pydict(columns)
