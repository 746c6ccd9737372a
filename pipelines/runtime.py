"""Start or join Ray once per process, configured from ``config.ray``; keep Ray's own log lines off the console."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ray

from laioncele.config import Config, RayConfig
from laioncele.io.storage import is_object_uri
from laioncele.offline_env import OFFLINE_ENV, apply_offline_defaults
from pipelines.interrupts import reclaim_sigterm

# Variables that keep workers offline and quiet; workers inherit them through the runtime env.
WORKER_ENV = dict(OFFLINE_ENV)
# Whether a Ray started here prints its workers' stdout/stderr on this console (off inside ``ray_logs_to``).
_worker_output_to_console = True


def ensure_ray(config: RayConfig) -> None:
    """Connect to ``config.address`` (or ``RAY_ADDRESS``) when given, else start a new local instance.

    ``address="local"`` keeps a build without an address from silently joining whatever cluster
    ``ray start`` last left on this machine (``ray.init()``'s default behaviour).
    """
    apply_offline_defaults()
    if ray.is_initialized():
        return
    previous_sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it
    address = config.address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": _worker_output_to_console}
    if address:
        ray.init(address=address, runtime_env={"env_vars": WORKER_ENV}, **kwargs)
    else:
        # No job runtime_env here: this process starts the local raylet, whose workers inherit this process's
        # environment, which holds WORKER_ENV's keys (apply_offline_defaults above; a value the user exported
        # wins, as for the driver). A job-level runtime_env would make Ray start new workers for the job's first
        # tasks and discard the ones it prestarts during ray.init: the first stage would wait for fresh
        # workers to start (ingest at 1M rows spent most of its Ray overhead there).
        ray.init(
            address="local",
            num_cpus=config.num_cpus,
            num_gpus=config.num_gpus,
            include_dashboard=False,
            **kwargs,
        )
    reclaim_sigterm(previous_sigterm)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows each stage's progress itself (pipelines.progress)
    ctx.execution_options.verbose_progress = False


def stop_ray() -> None:
    """Shut down this process's Ray connection (and the local instance it started), if any."""
    if ray.is_initialized():
        ray.shutdown()


# Ray's Python loggers that write to the console: the core ("ray": start-up notices such as the token-auth
# warning) and Ray Data (execution plans, "Starting execution", its progress blocks when output is piped).
RAY_CONSOLE_LOGGERS = ("ray", "ray.data")


def ray_log_file(config: Config) -> Path:
    """``<output_root>/logs/ray.log``; for an object-store output_root, ``logs/<run.name>/ray.log`` here."""
    if is_object_uri(config.output_root):
        return Path("logs") / config.run.name / "ray.log"
    return Path(config.output_root) / "logs" / "ray.log"


@contextlib.contextmanager
def ray_logs_to(log_file: Path) -> Iterator[Path]:
    """Send Ray's own log lines to ``log_file`` while the block runs; the console keeps Ray's errors only.

    A build's console then shows the stages' lines; Ray's INFO/WARNING lines stay available in
    ``log_file`` (and in Ray's session directory, as before). A Ray started inside the block does not forward
    its workers' stdout/stderr (library chatter such as absl's "RAW: Lock blocking"): that stays in the
    session directory's ``logs/worker-*`` files; a failed unit's error reaches the driver in its record.
    Enter it before ``ensure_ray``: some warnings come from ``ray.init``. Everything is restored on exit.
    """
    global _worker_output_to_console
    import ray.data  # noqa: F401  (configures the "ray.data" logger's handlers, which are adjusted below)

    log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file, encoding="utf-8")
    to_file.setLevel(logging.INFO)
    to_file.setFormatter(
        logging.Formatter("%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s")
    )
    saved: list[tuple[logging.Handler, int]] = []
    for name in RAY_CONSOLE_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                saved.append((handler, handler.level))
                handler.setLevel(max(handler.level, logging.ERROR))
        logger.addHandler(to_file)
    _worker_output_to_console = False  # workers' own output stays in Ray's session dir (logs/worker-*)
    try:
        yield log_file
    finally:
        _worker_output_to_console = True
        for name in RAY_CONSOLE_LOGGERS:
            logging.getLogger(name).removeHandler(to_file)
        for handler, level in saved:
            handler.setLevel(level)
        to_file.close()


@contextlib.contextmanager
def native_stderr_to(log_file: Path) -> Iterator[None]:
    """While the block runs, Ray's C++ log lines written to this process's stderr go to ``log_file``.

    Native code writes to file descriptor 2, so fd 2 is pointed at a filter child process
    (``pipelines.stderr_filter``) that forwards everything but Ray's C++ log lines to the original stderr.
    Python's ``sys.stderr`` (tracebacks, progress bars, Ray's Python errors) writes to the original stderr
    directly: a terminal stays a terminal (``isatty``) and nothing Python prints waits on the filter.
    Everything is restored on exit; the child ends when the last writer of the pipe closes it.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    original = os.dup(2)
    child = subprocess.Popen(
        [sys.executable, "-m", "pipelines.stderr_filter", str(log_file)],
        stdin=subprocess.PIPE,
        stdout=original,
    )
    assert child.stdin is not None
    python_stderr = sys.stderr
    os.dup2(child.stdin.fileno(), 2)
    sys.stderr = open(  # noqa: SIM115  (closed in finally; closefd=False leaves `original` to us)
        original, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
    )
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(original, 2)
        os.close(original)
        child.stdin.close()
        # Ray processes started meanwhile may still hold the pipe: the child then ends when they do.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
