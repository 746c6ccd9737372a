"""Start or join Ray once per process, configured from ``config.ray``."""

from __future__ import annotations

import logging
import os

import ray

from laioncele.config import RayConfig
from laioncele.offline_env import OFFLINE_ENV, apply_offline_defaults

# Variables that keep workers offline and quiet; workers inherit them through the runtime env.
WORKER_ENV = dict(OFFLINE_ENV)


def ensure_ray(config: RayConfig) -> None:
    """Connect to ``config.address`` (or ``RAY_ADDRESS``) when given, else start a new local instance.

    ``address="local"`` keeps a build without an address from silently joining whatever cluster
    ``ray start`` last left on this machine (``ray.init()``'s default behaviour).
    """
    apply_offline_defaults()
    if ray.is_initialized():
        return
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
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = config.progress_bars
    ctx.execution_options.verbose_progress = False
