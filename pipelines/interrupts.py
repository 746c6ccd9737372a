"""Ctrl-C and SIGTERM stop a build with one line: where it stopped, and that rerunning resumes.

Every unit commits atomically (``pipelines.runner``), so an interrupt loses at most the units in flight; the
user needs to know that, not a 60-line traceback or a C stack dump. SIGTERM (a scheduler, ``kill``, ``timeout``)
is turned into the same exception as Ctrl-C, so one handler in the CLI covers both.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with the signal and, once known, where the run stopped."""

    def __init__(self, signum: int = signal.SIGINT, where: str = "") -> None:
        super().__init__(signum, where)
        self.signum, self.where = signum, where

    @classmethod
    def at(cls, exc: KeyboardInterrupt, where: str) -> Interrupted:
        """``exc`` (a plain KeyboardInterrupt or an Interrupted) with ``where`` set, unless already set
        deeper down, where more is known."""
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        return cls(signum, exc.where if isinstance(exc, Interrupted) and exc.where else where)

    @property
    def exit_code(self) -> int:
        """The shell's convention for death by signal: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + self.signum

    def message(self) -> str:
        how = "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name
        where = f" in {self.where}" if self.where else ""
        return (
            f"interrupted ({how}){where}; committed units are kept: rerun the same command to resume "
            f"(it redoes only the units that were in flight)"
        )


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Interrupted`` in the main thread, like Ctrl-C raises
    KeyboardInterrupt; the previous handler is back afterwards (the CLI also runs in-process, in tests)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def reclaim_sigterm(previous: signal.Handlers | object) -> None:
    """Call after ``ray.init``: it replaces the driver's SIGTERM handler (with one that calls sys.exit), and
    Ray's core library then installs a C handler over that one, which prints a C stack dump and aborts
    (exit 134). Reinstall the Python-level handler: ``previous`` (the caller's) when it was one, else Ray's."""
    if threading.current_thread() is not threading.main_thread():
        return
    handler = previous if callable(previous) else signal.getsignal(signal.SIGTERM)
    if callable(handler):
        signal.signal(signal.SIGTERM, handler)
