"""Start or join Ray once per process, configured from ``config.ray``."""

from __future__ import annotations

import logging
import os
import signal

import ray

from laioncele.config import RayConfig
from pipelines.interrupts import reclaim_sigterm

# Variables that keep workers offline and quiet; workers inherit them through the runtime env.
WORKER_ENV = {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_MODE": "disabled",
}


def ensure_ray(config: RayConfig) -> None:
    """Connect to ``config.address`` (or ``RAY_ADDRESS``) when given, else start a new local instance.

    ``address="local"`` keeps a build without an address from silently joining whatever cluster
    ``ray start`` last left on this machine (``ray.init()``'s default behaviour).
    """
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        return
    previous_sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it
    address = config.address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {
        "runtime_env": {"env_vars": WORKER_ENV},
        "logging_level": logging.WARNING,
        "log_to_driver": True,
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(
            address="local",
            num_cpus=config.num_cpus,
            num_gpus=config.num_gpus,
            include_dashboard=False,
            **kwargs,
        )
    reclaim_sigterm(previous_sigterm)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = config.progress_bars
    ctx.execution_options.verbose_progress = False


def stop_ray() -> None:
    """Shut down this process's Ray connection (and the local instance it started), if any."""
    if ray.is_initialized():
        ray.shutdown()
