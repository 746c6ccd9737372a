"""A static HTTP server on 127.0.0.1 for the embedded sample's images, started and stopped by the CLI."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


@contextlib.contextmanager
def serve_directory(root: Path, port: int) -> Iterator[str]:
    """Serve ``root`` at ``http://127.0.0.1:port`` (loopback only) for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise RuntimeError(
            f"cannot serve the sample on 127.0.0.1:{port} ({exc}); free the port or set sample_server.port and "
            "regenerate the sample metadata"
        ) from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="sample-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
