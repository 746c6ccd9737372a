"""Move Ray's C++ log lines out of a process's stderr into a log file; pass everything else through.

Ray's core worker (C++) in the driver writes its error-level lines straight to file descriptor 2, beyond the
reach of Python logging: e.g. "Actor ... has constructor arguments in the object store and max_restarts > 0"
for every Ray Data actor pool (ray-project/ray#53727, harmless here: a restarted actor re-reads them) or
"Failed to kill actor ... Socket closed" at shutdown. ``pipelines.runtime.native_stderr_to`` points fd 2 at
this filter, run as a child process: a child outlives the driver, so a traceback printed as the driver dies
still reaches the console. Partial lines (a progress bar's ``\\r`` updates) are forwarded at once.

``python -m pipelines.stderr_filter LOG_FILE``: reads stdin, writes the console part to stdout.
"""

from __future__ import annotations

import os
import re
import sys

# "[2026-12-03 12:50:27,010 E 11393 11393] core_worker.cc:2465: ..." (severity D/I/W/E/F, pid, tid).
NATIVE_LINE = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] ")
# Longer than any native prefix: a "[" partial line this long that does not match is not one.
PREFIX_LEN = 64


def split_native(buffer: bytes, at_eof: bool = False) -> tuple[bytes, bytes, bytes]:
    """Split ``buffer`` into (for the console, for the log file, still undecided: keep for the next read).

    Only a chunk that may be the start of a native line waits for its newline; everything else goes out now.
    Assumes ``buffer`` starts at a line start (the caller feeds back the undecided rest).
    """
    console, log = bytearray(), bytearray()
    while buffer:
        end = buffer.find(b"\n")
        if buffer.startswith(b"["):
            if end < 0:
                maybe_native = len(buffer) < PREFIX_LEN or NATIVE_LINE.match(buffer)
                if maybe_native and not at_eof:
                    break
                (log if NATIVE_LINE.match(buffer) else console).extend(buffer)
                buffer = b""
                break
            line, buffer = buffer[: end + 1], buffer[end + 1 :]
            (log if NATIVE_LINE.match(line) else console).extend(line)
        else:
            cut = len(buffer) if end < 0 else end + 1
            console.extend(buffer[:cut])
            buffer = buffer[cut:]
    return bytes(console), bytes(log), buffer


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main(log_path: str) -> int:
    rest = b""
    with open(log_path, "ab") as log_file:
        while True:
            chunk = os.read(0, 65536)
            console, log, rest = split_native(rest + chunk, at_eof=not chunk)
            if console:
                _write_all(1, console)
            if log:
                log_file.write(log)
                log_file.flush()
            if not chunk:
                return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
