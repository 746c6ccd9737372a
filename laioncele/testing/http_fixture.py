"""A real HTTP server on 127.0.0.1 (ephemeral port) with scripted routes, for download tests and the bench.

Each route is a list of responses: the n-th request to a path gets the n-th response (the last one repeats),
so "429 then 200" is ``[Response(429, ...), Response(200, ...)]``. Every request is counted per path, which
lets tests prove that a refused URL was never requested and that retries are bounded.

With ``tls=`` (a server ``ssl.SSLContext``) it serves HTTPS: each accepted connection is wrapped in its
handler thread, the SNI name of every handshake attempt is recorded (``sni``), and a handshake the client
aborts (a certificate it refuses) is counted in ``tls_failures`` and never reaches a route.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (slow servers, timeouts, simulated latency)
    content_length: bool = True  # False: no Content-Length, body ends when the connection closes


class _TLSThreadingHTTPServer(ThreadingHTTPServer):
    """Wraps each connection in TLS inside its own thread, so a stalled handshake blocks no one else."""

    request_queue_size = 128  # socketserver's 5 drops connects when a bench opens dozens at once

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: LocalHTTPServer
    ):
        super().__init__(address, handler)
        self.owner = owner

    def finish_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        tls = self.owner.tls
        if tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(5.0)
        try:
            wrapped = tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with self.owner._lock:
                self.owner.tls_failures += 1
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class LocalHTTPServer:
    """``with LocalHTTPServer() as server: server.route("/a.jpg", Response(...)); server.url("/a.jpg")``.

    ``tls``: serve HTTPS with this server context (its ``sni_callback`` is taken over to record names).
    ``hostname``: the host that ``url`` puts in URLs (map it to 127.0.0.1 with a test resolver).
    """

    def __init__(self, tls: ssl.SSLContext | None = None, hostname: str = "127.0.0.1") -> None:
        self.routes: dict[str, list[Response]] = {}
        self.requests: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0  # most requests being answered at once (politeness tests)
        self.request_log: list[tuple[str, float]] = []  # (path, time.monotonic()) of every request, in order
        self.tls = tls
        self.hostname = hostname
        self.sni: list[str | None] = []  # the client's SNI name per TLS handshake attempt (None: none sent)
        self.tls_failures = 0  # handshakes that did not complete
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        if tls is not None:
            tls.sni_callback = self._record_sni
        self._server = _TLSThreadingHTTPServer(("127.0.0.1", 0), self._handler_class(), self)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.hostname}:{self.port}{path}"

    def _record_sni(
        self, _sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        with self._lock:
            self.sni.append(name)

    def route(self, path: str, *responses: Response) -> str:
        self.routes[path] = list(responses)
        return self.url(path)

    def image(self, path: str, body: bytes, content_type: str = "image/jpeg", **headers: str) -> str:
        return self.route(path, Response(200, body, {"Content-Type": content_type, **headers}))

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def _next_response(self, path: str) -> Response:
        with self._lock:
            index = self.requests[path]
            self.requests[path] += 1
            self.request_log.append((path, time.monotonic()))
        responses = self.routes.get(path) or [Response(404, b"not found", {"Content-Type": "text/plain"})]
        return responses[min(index, len(responses) - 1)]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                response = server._next_response(self.path.split("?", 1)[0])
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    stopping = bool(response.delay_s) and server._stopping.wait(response.delay_s)
                finally:
                    # Out of flight before the first byte goes out: once the client has its response it may
                    # start its next request, which must not find this one still counted.
                    with server._lock:
                        server.in_flight -= 1
                if not stopping:
                    self._answer(response)

            def _answer(self, response: Response) -> None:
                try:
                    self.send_response(response.status)
                    for key, value in response.headers.items():
                        self.send_header(key, value)
                    if response.content_length:
                        self.send_header("Content-Length", str(len(response.body)))
                    self.end_headers()
                    self.wfile.write(response.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test, size cap): expected

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep tests quiet
                pass

        return Handler

    def __enter__(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
