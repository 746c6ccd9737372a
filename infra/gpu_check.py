"""One-shot GPU acceptance check: the real training and inference code on a CUDA device, with timings.

Runs, on ``cuda`` when there is one (else on CPU, with a note: use ``--quick`` there):

1. ``train``: ``encoder_training.train.train`` on a synthetic dataset in the real shard format with tiny random
   CLIP towers: the feature-cache pass, a few hundred cached-feature steps under bf16 autocast (the loss must
   fall), a short end-to-end run (augmentation, last tower block unfrozen), the export, and the exported encoder
   loaded by ``inference.encoder.load_name_encoder`` on the device (predictions must match the CPU's).
2. ``ddp``: ``train_loop`` under ``torchrun --nproc_per_node=1`` with NCCL (gloo on CPU) and the head wrapped in
   ``DistributedDataParallel``: what Ray Train's ``prepare_model`` does on each worker.
3. ``throughput_head``: cached-feature training samples/s with the production head (768 + 1280 -> 2048 ->
   2048 -> 8 x 2048) through the real loop, bf16 and fp32, against the head's pure-compute ceiling.
4. ``throughput_towers``: images/s of the feature cache's ``FeatureExtractor`` over randomly initialised ViT-L/14-
   and ViT-bigG/14-sized CLIP vision towers (at ``training.feature_precision``'s default and at fp32, with the
   default's cosine to fp32; a whole shard through ``extract`` incl. JPEG decode), per-tower bf16, fp16/bf16
   weights, end-to-end forward+backward with the last two blocks trainable, and the CPU preprocessing rate.
5. ``inference``: a tiny random SDXL pipeline (``inference/tiny.py``) in fp16 on the device: text and
   encoder-predicted name embeddings, recalibration and 2-step name-prepended generation; timing of
   ``prepend_name`` + ``recalibrate`` at SDXL width.

Results go to ``<out>/gpu_check.json`` (rewritten after every check, so a timeout keeps what finished)::

    PYTHONUNBUFFERED=1 python3 -m infra.gpu_check --out /tmp/gpucheck             # on the GPU machine
    .venv/bin/python -m infra.gpu_check --out /tmp/gpucheck --quick                # CPU smoke run of the same

Each check is a module of ``infra/gpu_checks/``; this file is the entry point and re-exports their names.
Run as a file (``python infra/gpu_check.py``) it re-executes itself as the module, from the project root, so the
project's packages import without any edit of ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Run as a file, its folder and not the project root is on sys.path: re-execute as the module, from the root.
if __name__ == "__main__" and not __package__:
    _root = str(Path(__file__).resolve().parents[1])
    _env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (_root, os.environ.get("PYTHONPATH"))))}
    os.execve(sys.executable, [sys.executable, "-m", "infra.gpu_check", *sys.argv[1:]], _env)

from infra.gpu_checks.cli import main, versions  # noqa: E402
from infra.gpu_checks.common import (  # noqa: E402
    NAME_TOKENS,
    QUICK_TOWERS,
    ROOT,
    SDXL_DIM,
    SDXL_WIDTHS,
    Checks,
    loss_drop,
    median_seconds,
    sync,
    training_config,
)
from infra.gpu_checks.ddp import check_ddp, ddp_worker  # noqa: E402
from infra.gpu_checks.head import check_head_throughput  # noqa: E402
from infra.gpu_checks.inference import check_inference  # noqa: E402
from infra.gpu_checks.towers import check_tower_throughput  # noqa: E402
from infra.gpu_checks.training import check_train  # noqa: E402

__all__ = [
    "NAME_TOKENS",
    "QUICK_TOWERS",
    "ROOT",
    "SDXL_DIM",
    "SDXL_WIDTHS",
    "Checks",
    "check_ddp",
    "check_head_throughput",
    "check_inference",
    "check_tower_throughput",
    "check_train",
    "ddp_worker",
    "loss_drop",
    "main",
    "median_seconds",
    "sync",
    "training_config",
    "versions",
]

if __name__ == "__main__":
    raise SystemExit(main())
