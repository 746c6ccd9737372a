"""The environment defaults every LaionCele entry point runs with, in one place.

Some dependencies act at import time: albumentations (pulled by img2dataset) checks for updates over the network
unless ``NO_ALBUMENTATIONS_UPDATE`` is set, and ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` into constants
when first imported. So the defaults must be in ``os.environ`` before those imports: importing this module sets
them, and the packages with entry points (``pipelines``, ``encoder_training``, ``inference``, ``bench``) import
it first thing in their ``__init__``. ``setdefault``: a value the user exported wins (e.g. ``HF_HUB_OFFLINE=0``
to let inference download a model). The Makefile exports the same values; Ray workers get them through
``pipelines.runtime.WORKER_ENV``.
"""

from __future__ import annotations

import os

OFFLINE_ENV: dict[str, str] = {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_MODE": "disabled",
}


def apply_offline_defaults() -> None:
    """Set every default the user has not set already (idempotent)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


apply_offline_defaults()
