"""The training loop, shared by the in-process trainer and every Ray Train worker (see ``encoder_training.train``)."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from encoder_training.checkpoints import latest_checkpoint, save_checkpoint, trainable_state, training_hash
from encoder_training.data import SPLIT_NAMES, SPLIT_TRAIN, SPLIT_VAL_IDENTITY, SPLIT_VAL_IMAGE, Identities
from encoder_training.evaluate import name_metrics, summarize
from encoder_training.export import export_model
from encoder_training.inputs import Examples, InputBuilder, RowGatherer, batch_rows, load_examples
from encoder_training.metrics_logger import MetricsLogger
from encoder_training.model import NameEncoder, NameHead, load_tower_features, set_trainable_blocks
from encoder_training.plan import TrainPaths
from laioncele.config import TrainingConfig

LOG_EVERY = 10


EVAL_TRAIN_ROWS = 512


STATS_SAMPLE_ROWS = 256


def cosine_schedule(warmup_steps: int, total_steps: int, min_lr_ratio: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@dataclass
class TrainResult:
    step: int
    metrics: dict[str, dict[str, float]]
    history: list[tuple[int, float]]  # (step, train loss) of every step this call ran
    drops: dict[str, int]
    export_dir: str | None
    mode: str
    train_seconds: float = 0.0  # wall time of the optimizer steps alone (no eval, checkpoint or export)
    samples: int = 0  # training samples this worker processed
    step_seconds: list[float] = field(default_factory=list)  # per step: for robust (median) throughput


def build_model(
    tc: TrainingConfig, sources: list[str], mode: str, in_dim: int | None, identities: Identities
) -> NameEncoder:
    torch.manual_seed(tc.seed)
    features = None
    if mode == "end_to_end":
        features = load_tower_features(sources, normalize=tc.normalize_features)
        for tower in features.towers:
            set_trainable_blocks(tower, tc.unfreeze_last_blocks)
        in_dim = features.out_dim
    head = NameHead(int(in_dim), tc.hidden_dim, identities.num_tokens, identities.embedding_dim)
    return NameEncoder(features, head)


@torch.no_grad()
def set_feature_stats(
    model: NameEncoder, examples: Examples, train_rows: np.ndarray, tc: TrainingConfig, device: torch.device
) -> None:
    """Standardise the head's input with training-feature statistics (a sample of crops in end-to-end mode)."""
    if examples.features is not None:
        model.head.set_input_stats(torch.from_numpy(examples.features[train_rows]))
        return
    sample = np.sort(np.random.default_rng([tc.seed, 7]).permutation(len(train_rows))[:STATS_SAMPLE_ROWS])
    builder = InputBuilder(examples, model, tc, device)
    feats = []
    for start in range(0, len(sample), tc.batch_size):
        inputs, used = builder(train_rows[sample[start : start + tc.batch_size]])
        if len(used):
            feats.append(model.features(inputs).float().cpu())
    if feats:
        model.head.set_input_stats(torch.cat(feats))


@torch.no_grad()
def evaluate(
    model: NameEncoder,
    builder: InputBuilder,
    examples: Examples,
    device: torch.device,
    batch_size: int,
    bf16: bool,
) -> dict[str, dict[str, float]]:
    """Metrics per split (a fixed sample of training rows, held-out images, held-out identities)."""
    was_training = model.training
    model.eval()
    targets = torch.from_numpy(examples.identities.targets).to(device)
    results: dict[str, dict[str, float]] = {}
    for split in (SPLIT_TRAIN, SPLIT_VAL_IMAGE, SPLIT_VAL_IDENTITY):
        rows = examples.rows(split)
        if split == SPLIT_TRAIN:
            rows = rows[:: max(1, len(rows) // EVAL_TRAIN_ROWS)][:EVAL_TRAIN_ROWS]
        if len(rows) == 0:
            continue
        predictions, used_all = [], []
        for start in range(0, len(rows), batch_size):
            inputs, used = builder(rows[start : start + batch_size])
            if len(used) == 0:
                continue
            with _autocast(device, bf16):
                out = model.head(inputs) if examples.features is not None else model(inputs)
            predictions.append(out.float())
            used_all.append(used)
        if predictions:
            index = torch.from_numpy(examples.identity_index[np.concatenate(used_all)]).to(device)
            results[SPLIT_NAMES[split]] = name_metrics(torch.cat(predictions), index, targets)
    model.train(was_training)
    return results


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"
    )


def train_loop(
    tc: TrainingConfig,
    paths: TrainPaths,
    sources: list[str],
    mode: str,
    *,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | None = None,
    wrap_model=None,
) -> TrainResult:
    """Train until the end of the schedule (or ``max_steps``); rank 0 checkpoints, evaluates, logs and exports."""
    device = device or torch.device(tc.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    is_main = rank == 0
    cached = mode == "cached"
    examples = load_examples(tc, paths, mode)
    in_dim = examples.features.shape[1] if cached else None
    model = build_model(tc, sources, mode, in_dim, examples.identities).to(device)
    train_rows = examples.rows(SPLIT_TRAIN)
    global_batch = tc.batch_size * world_size
    steps_per_epoch = max(1, math.ceil(len(train_rows) / global_batch))
    total_steps = tc.epochs * steps_per_epoch
    last_step = min(total_steps, tc.max_steps or total_steps)

    set_feature_stats(model, examples, train_rows, tc, device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_schedule(tc.warmup_steps, total_steps, tc.min_lr_ratio)
    )
    run_hash = training_hash(tc, sources)
    step = 0
    checkpoint = latest_checkpoint(paths.checkpoints) if tc.resume else None
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["training_hash"] != run_hash:
            raise ValueError(
                f"checkpoint {checkpoint} was written with another training config: "
                "set training.resume=false (or another training.output_dir) to start over"
            )
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step = int(state["step"])
    elif is_main and paths.checkpoints.exists():
        shutil.rmtree(paths.checkpoints)  # a fresh run never mixes with an old run's checkpoints

    # What DDP wraps is what trains: the head alone on cached features, else the whole encoder.
    trained: torch.nn.Module = model.head if cached else model
    if wrap_model is not None:
        trained = wrap_model(trained)
    builder = InputBuilder(examples, model, tc, device)
    target_rows = RowGatherer(examples.identities.targets, device)
    logger = (
        MetricsLogger(Path(paths.output_dir), step if checkpoint is not None else None) if is_main else None
    )

    def checkpoint_state() -> dict[str, Any]:
        return {
            "step": step,
            "model": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "training_hash": run_hash,
            "mode": mode,
        }

    history: list[tuple[int, float]] = []
    metrics: dict[str, dict[str, float]] = {}
    evaluated_at = -1
    running: list[float] = []
    trained.train()
    train_seconds, samples, step_seconds = 0.0, 0, []
    bar = tqdm(
        total=last_step, initial=step, desc="train", unit="step", disable=not (is_main and tc.progress_bars)
    )
    while step < last_step:
        started = time.perf_counter()
        epoch, rows = batch_rows(
            train_rows, tc.seed, step, steps_per_epoch, global_batch, rank, tc.batch_size
        )
        inputs, used = builder(rows, epoch)
        if len(used) == 0:  # a whole batch of undecodable images: keep the step count aligned across workers
            step += 1
            scheduler.step()
            continue
        targets = target_rows(examples.identity_index[used])
        with _autocast(device, tc.bf16):
            predictions = trained(inputs)
        loss = torch.nn.functional.mse_loss(predictions.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        value = float(loss.detach())  # synchronises with the device: the step is done
        step_seconds.append(time.perf_counter() - started)
        train_seconds += step_seconds[-1]
        samples += len(used)
        history.append((step, value))
        running.append(value)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4g}", epoch=epoch)
        if logger is not None and (step % LOG_EVERY == 0 or step == last_step):
            logger.log(
                step, epoch, "train", {"loss": float(np.mean(running)), "lr": scheduler.get_last_lr()[0]}
            )
            running = []
        end_of_epoch = step % steps_per_epoch == 0
        if is_main and (
            (tc.eval_every and step % tc.eval_every == 0) or (not tc.eval_every and end_of_epoch)
        ):
            metrics = evaluate(model, builder, examples, device, tc.batch_size, tc.bf16)
            evaluated_at = step
            for split, values in metrics.items():
                logger.log(step, epoch, split, values)
        if is_main and step % tc.checkpoint_every == 0:
            save_checkpoint(paths.checkpoints, step, checkpoint_state())
    bar.close()

    export_dir = None
    if is_main:
        if evaluated_at != step:
            metrics = evaluate(model, builder, examples, device, tc.batch_size, tc.bf16)
        print(summarize(metrics))
        save_checkpoint(paths.checkpoints, step, checkpoint_state())
        if step >= total_steps:
            export_dir = str(_export(tc, paths, sources, model, examples, step, metrics))
        logger.close()
    drops = dict(examples.drops + builder.drops)
    return TrainResult(step, metrics, history, drops, export_dir, mode, train_seconds, samples, step_seconds)


def _export(
    tc: TrainingConfig,
    paths: TrainPaths,
    sources: list[str],
    model: NameEncoder,
    examples: Examples,
    step: int,
    metrics,
) -> Path:
    if paths.export.exists():
        shutil.rmtree(paths.export)
    local_towers = tc.towers == "tiny" or tc.unfreeze_last_blocks > 0
    features = model.features
    if local_towers and features is None:
        model = NameEncoder(load_tower_features(sources, normalize=tc.normalize_features), model.head)
    return export_model(
        paths.export,
        model,
        tower_sources=sources,
        save_towers=local_towers,
        normalize_features=tc.normalize_features,
        crop_margin=tc.crop_margin,
        mean_embedding=examples.mean,
        towers_not_meaningful=tc.towers == "tiny",
        extra={
            "step": step,
            "metrics": metrics,
            "identities": len(examples.identities.ids),
            "training": tc.model_dump(mode="json"),
        },
    )
