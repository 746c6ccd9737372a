"""Training: one loop for the in-process trainer and for every Ray Train (TorchTrainer) worker.

Determinism is by construction, which is what makes resume exact: the model is initialised from ``seed``; the data
order of epoch e is a permutation seeded by (seed, e) and the position in it is ``step % steps_per_epoch``;
augmentations draw from a per-sample generator seeded by (seed, epoch, sample). A checkpoint therefore needs only
the step, the trainable weights, the optimizer and scheduler states (plus torch's RNG state, saved for any
stochastic layer a variant adds). With W workers each step takes W * batch_size samples and worker r trains on its
r-th slice; DDP averages the gradients, so the trajectory is that of one worker with the global batch.

Outputs under ``training.output_dir`` (default ``<run.output_root>/encoder``)::

    features/        cached tower features (stage directory, schema training_features)
    checkpoints/     step-<n>.pt, the newest two kept
    metrics.csv      step, epoch, split, metric, value
    tensorboard/     TensorBoard event files (tensorboardX)
    export/          the final model, see encoder_training.export

The jobs live in their own modules, re-exported here (the names callers have always imported from here):
``plan`` (paths, mode, towers, feature cache), ``inputs`` (examples, data order, device gathering), ``loop``
(``train_loop``, evaluation, export), ``checkpoints``, ``metrics_logger``, ``ray_train`` (TorchTrainer wiring).
"""

from __future__ import annotations

from encoder_training.checkpoints import (
    KEEP_CHECKPOINTS,
    RESUME_FREE_KEYS,
    latest_checkpoint,
    save_checkpoint,
    trainable_state,
    training_hash,
)
from encoder_training.inputs import (
    DEVICE_TABLE_FREE_FRACTION,
    Examples,
    InputBuilder,
    RowGatherer,
    batch_rows,
    epoch_permutation,
    load_examples,
)
from encoder_training.loop import (
    EVAL_TRAIN_ROWS,
    LOG_EVERY,
    STATS_SAMPLE_ROWS,
    TrainResult,
    build_model,
    cosine_schedule,
    evaluate,
    set_feature_stats,
    train_loop,
)
from encoder_training.metrics_logger import MetricsLogger
from encoder_training.plan import TrainPaths, prepare, resolve_mode, resolve_paths, tower_sources
from encoder_training.ray_train import train_with_ray
from laioncele.config import Config

__all__ = [
    "DEVICE_TABLE_FREE_FRACTION",
    "EVAL_TRAIN_ROWS",
    "KEEP_CHECKPOINTS",
    "LOG_EVERY",
    "RESUME_FREE_KEYS",
    "STATS_SAMPLE_ROWS",
    "Examples",
    "InputBuilder",
    "MetricsLogger",
    "RowGatherer",
    "TrainPaths",
    "TrainResult",
    "batch_rows",
    "build_model",
    "cosine_schedule",
    "epoch_permutation",
    "evaluate",
    "latest_checkpoint",
    "load_examples",
    "prepare",
    "resolve_mode",
    "resolve_paths",
    "save_checkpoint",
    "set_feature_stats",
    "tower_sources",
    "train",
    "train_loop",
    "train_with_ray",
    "trainable_state",
    "training_hash",
]


def train(config: Config) -> TrainResult:
    """Train the encoder as ``config.training`` says (in-process or Ray Train) and export it."""
    tc = config.training
    if tc.trainer == "local":
        paths, sources, mode = prepare(config, use_ray_for_features=False)
        return train_loop(tc, paths, sources, mode)
    paths, sources, mode = prepare(config, use_ray_for_features=True)
    return train_with_ray(tc, paths, sources, mode)
