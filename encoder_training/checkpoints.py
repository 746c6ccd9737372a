"""Checkpoints: what one holds (trainable weights, optimizer, scheduler, torch RNG), where, and when it may resume.

A run resumes only from a checkpoint whose ``training_hash`` matches: keys in ``RESUME_FREE_KEYS`` may change
between a run and its resumption because they do not change what is computed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from encoder_training.model import NameEncoder
from laioncele.config import TrainingConfig

# Keys that may change between a run and its resumption without changing what is computed.
RESUME_FREE_KEYS = frozenset(
    {
        "resume",
        "progress_bars",
        "trainer",
        "feature_concurrency",
        "feature_num_gpus",
        "feature_batch_size",
        "device",
        "use_gpu",
        "max_steps",
        "checkpoint_every",
        "eval_every",
        "output_dir",
        "dataset_dir",
    }
)


KEEP_CHECKPOINTS = 2


def training_hash(tc: TrainingConfig, sources: list[str]) -> str:
    payload = {k: v for k, v in tc.model_dump(mode="json").items() if k not in RESUME_FREE_KEYS}
    payload["sources"] = sources
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    found = sorted(checkpoint_dir.glob("step-*.pt"))
    return found[-1] if found else None


def save_checkpoint(
    checkpoint_dir: Path, step: int, state: dict[str, Any], keep: int = KEEP_CHECKPOINTS
) -> Path:
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_dir / f"step-{step:09d}.pt"
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(checkpoint_dir.glob("step-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def trainable_state(model: NameEncoder) -> dict[str, torch.Tensor]:
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {
        k: v.detach().cpu().clone()
        for k, v in model.state_dict().items()
        if k.startswith("head.") or k in trainable
    }
