"""Progress of one stage in the driver: a bar on a terminal, one plain line at a time in a log.

Ray Data's own progress display is switched off (``pipelines.runtime``): it redraws per-operator bars on a
terminal and, when output is piped, logs a multi-line block every few seconds. A stage's unit of progress is a
committed unit of work, which the driver sees as each one finishes, with the rows it read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``: short and unambiguous in a log line."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StageProgress:
    """Counts a stage's finished units and the rows they read, and shows it.

    On a terminal (``tty``) a tqdm bar over units, with the row rate; otherwise one line per report:
    ``[faces] 3/40 units, 150 rows, 41.2 rows/s, ETA 2:35``, printed for the first finished unit (an early
    ETA) and then at most every ``interval_s``, never for the last unit (the stage's summary line follows).
    The ETA scales the elapsed time by the units left: units are planned to be of similar size.
    """

    def __init__(
        self,
        stage: str,
        total_units: int,
        *,
        enabled: bool = True,
        interval_s: float = 10.0,
        tty: bool | None = None,
        log: Callable[[str], None] = print,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage, self.total_units = stage, total_units
        self.units = self.rows = 0
        self.enabled, self.interval_s, self.log, self.clock = enabled, interval_s, log, clock
        stream = stream or sys.stderr
        self.tty = stream.isatty() if tty is None else tty
        self.started = clock()
        self.last_line: float | None = None
        self.bar = (
            tqdm(total=total_units, desc=stage, unit="unit", file=stream, dynamic_ncols=True)
            if enabled and self.tty
            else None
        )

    def rows_per_s(self) -> float:
        elapsed = self.clock() - self.started
        return self.rows / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float | None:
        if not self.units:
            return None
        return (self.clock() - self.started) * (self.total_units - self.units) / self.units

    def line(self) -> str:
        eta = self.eta_s()
        return (
            f"[{self.stage}] {self.units}/{self.total_units} units, {self.rows:,} rows, "
            f"{self.rows_per_s():,.1f} rows/s, ETA {format_duration(eta) if eta is not None else '?'}"
        )

    def advance(self, rows: int) -> None:
        """One more unit finished, having read ``rows`` input rows."""
        self.units += 1
        self.rows += rows
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.rows:,} rows, {self.rows_per_s():,.1f} rows/s", refresh=False)
            self.bar.update(1)
            return
        now = self.clock()
        due = self.last_line is None or now - self.last_line >= self.interval_s
        if due and self.units < self.total_units:
            self.log(self.line())
            self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
