"""A build's console: one progress line per report with rows/s and an ETA (a bar on a terminal), and none of
Ray's own log lines, which go to <output_root>/logs/ray.log."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.progress import StageProgress, format_duration
from pipelines.stderr_filter import split_native

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\[(\w+)\] (\d+)/(\d+) units, ([\d,]+) rows, ([\d,.]+) rows/s, ETA (\d+:\d\d(?::\d\d)?)$")
NATIVE = b"[2026-12-03 12:50:27,010 E 11393 11393] core_worker.cc:2465: Actor with class name: 'X' has ...\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_lines_carry_rate_and_eta_and_are_throttled() -> None:
    clock, lines = Clock(), []
    progress = StageProgress("faces", 5, interval_s=10.0, tty=False, log=lines.append, clock=clock)
    for seconds, rows in [(4, 100), (5, 100), (15, 100), (20, 100), (25, 50)]:
        clock.now = 100.0 + seconds
        progress.advance(rows)
    progress.close()
    # the first unit reports at once; the second is within 10 s of it; the last unit leaves it to the summary
    assert lines == [
        "[faces] 1/5 units, 100 rows, 25.0 rows/s, ETA 0:16",
        "[faces] 3/5 units, 300 rows, 20.0 rows/s, ETA 0:10",
    ]
    assert all(LINE.match(line) for line in lines)


def test_on_a_terminal_a_bar_counts_units_and_prints_no_lines() -> None:
    stream, lines = io.StringIO(), []
    progress = StageProgress("ner", 3, tty=True, log=lines.append, stream=stream)
    for _ in range(3):
        progress.advance(1000)
    progress.close()
    assert lines == [] and "\r" in stream.getvalue() and "3/3" in stream.getvalue()
    assert "3,000 rows" in stream.getvalue()


def test_disabled_progress_shows_nothing() -> None:
    stream, lines = io.StringIO(), []
    progress = StageProgress("ner", 3, enabled=False, tty=True, log=lines.append, stream=stream)
    progress.advance(5)
    progress.close()
    assert lines == [] and stream.getvalue() == "" and progress.rows == 5


def test_durations_read_as_clock_times() -> None:
    assert [format_duration(s) for s in (0, 59.6, 61, 3600 + 62)] == ["0:00", "1:00", "1:01", "1:01:02"]


def test_the_stderr_filter_moves_native_ray_lines_and_passes_the_rest_at_once() -> None:
    traceback = b"Traceback (most recent call last):\n  File x\nValueError: bad\n"
    console, log, rest = split_native(b"warning: x\n" + NATIVE + traceback + b"\rfaces:  40%|###")
    assert console == b"warning: x\n" + traceback + b"\rfaces:  40%|###" and log == NATIVE and rest == b""
    # a native line cut mid-way waits for its end; a "[" line that cannot be one is not held back
    console, log, rest = split_native(NATIVE[:30])
    assert (console, log, rest) == (b"", b"", NATIVE[:30])
    assert split_native(rest + NATIVE[30:]) == (b"", NATIVE, b"")
    plain = b"[faces] this is not a Ray C++ line, and it is long enough to tell"
    assert split_native(plain) == (plain, b"", b"")
    assert split_native(NATIVE[:30], at_eof=True) == (NATIVE[:30], b"", b"")  # at the end, nothing is held


NATIVE_WRITER = """
import os, sys
from pathlib import Path
from pipelines.runtime import native_stderr_to
with native_stderr_to(Path(sys.argv[1])):
    os.write(2, b"native: kept\\n" + {native!r})
    print("python stderr is a tty:", sys.stderr.isatty(), file=sys.stderr)
print("after: back on fd 2", file=sys.stderr)
"""


def test_native_stderr_lines_go_to_the_log_and_a_terminal_stays_a_terminal(tmp_path: Path) -> None:
    """Under a pseudo-terminal: Ray's C++ line lands in the log, the rest on the terminal, the bar's tty intact."""
    import pty

    log = tmp_path / "ray.log"
    controller, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", NATIVE_WRITER.format(native=NATIVE), str(log)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        cwd=REPO,
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: every writer is gone
            break
        if not chunk:
            break
        seen += chunk
    assert child.wait(timeout=60) == 0
    os.close(controller)
    text = seen.decode().replace("\r\n", "\n")
    assert (
        "native: kept\n" in text and "python stderr is a tty: True" in text and "after: back on fd 2" in text
    )
    assert "core_worker" not in text
    assert log.read_bytes() == NATIVE


@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_run_prints_stage_lines_only_and_keeps_rays_log_lines_in_the_run(tmp_path: Path) -> None:
    """Piped output (no terminal): the stage's lines, no Ray line at any level; Ray's lines are in ray.log."""
    out = tmp_path / "out"
    sets = [
        f"run.output_root={out}",
        "sample_server.serve_dir=null",
        "ingest.rows_per_unit=2000",
        "ingest.concurrency=1",
        "ray.num_cpus=1",
        "ray.progress_interval_s=0.001",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(stage: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipelines", "run", stage, "--config", "configs/sample.yaml"]
            + [arg for s in sets for arg in ("--set", s)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    proc = run("ingest")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    progress = [LINE.match(line) for line in lines if LINE.match(line)]
    units = [int(m.group(2)) for m in progress]
    assert units == [1, 2, 3] and {m.group(3) for m in progress} == {"4"}  # 4 units: every one but the last
    rows = [int(m.group(4).replace(",", "")) for m in progress]
    assert rows == sorted(rows) and rows[0] > 0
    assert re.search(r"^\[ingest\] done in [\d.]+s \([\d,.]+ rows/s\): rows in 9680,", proc.stdout, re.M)
    assert rows[-1] < 9680
    assert len(lines) == 2 + len(progress) + 2  # where Ray logs go, units planned, progress, done, finished
    # ingest runs as plain Ray tasks; ner is a Ray Data actor pool, whose INFO lines must go to ray.log too
    proc = run("ner")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""
    assert not re.search(r"streaming_executor|core_worker| INFO | WARNING ", proc.stdout)  # no Ray line
    ray_log = (out / "logs" / "ray.log").read_text()
    assert "Starting execution of Dataset" in ray_log  # Ray Data's INFO lines
    # Ray 2.60's C++ core logs an error-level line for every actor pool (ray-project/ray#53727): filtered here
    assert re.search(r"^\[\d{4}-\d\d-\d\d [\d:,]+ E \d+ \d+\] core_worker", ray_log, re.M)
