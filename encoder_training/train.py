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
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from encoder_training.data import (
    SPLIT_NAMES,
    SPLIT_TRAIN,
    SPLIT_VAL_IDENTITY,
    SPLIT_VAL_IMAGE,
    Identities,
    assign_splits,
    augmentation_rng,
    decode_image,
    face_crop,
    load_identities,
    load_mean_embedding,
    require_dataset,
    valid_bbox,
)
from encoder_training.evaluate import name_metrics, summarize
from encoder_training.export import export_model
from encoder_training.features import cache_features, read_features
from encoder_training.model import (
    NameEncoder,
    NameHead,
    build_tiny_towers,
    load_tower_features,
    set_trainable_blocks,
)
from laioncele.config import Config, TrainingConfig
from laioncele.shards import read_shards

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
LOG_EVERY = 10
EVAL_TRAIN_ROWS = 512
STATS_SAMPLE_ROWS = 256
# A host table goes to the GPU whole when under this share of its free memory.
DEVICE_TABLE_FREE_FRACTION = 0.25


@dataclass(frozen=True)
class TrainPaths:
    dataset_dir: str
    output_dir: str

    @property
    def features(self) -> Path:
        return Path(self.output_dir) / "features"

    @property
    def checkpoints(self) -> Path:
        return Path(self.output_dir) / "checkpoints"

    @property
    def export(self) -> Path:
        return Path(self.output_dir) / "export"

    @property
    def tiny_towers(self) -> Path:
        return Path(self.output_dir) / "tiny_towers"


def resolve_paths(config: Config) -> TrainPaths:
    """Absolute paths (Ray workers may run elsewhere; multi-node runs need these on shared storage)."""
    tc = config.training
    dataset_dir = tc.dataset_dir or str(Path(config.run.output_root) / "dataset")
    output_dir = tc.output_dir or str(Path(config.run.output_root) / "encoder")
    return TrainPaths(str(Path(dataset_dir).resolve()), str(Path(output_dir).resolve()))


def resolve_mode(tc: TrainingConfig) -> str:
    needs_end_to_end = tc.augment or tc.unfreeze_last_blocks > 0
    if tc.mode == "cached" and needs_end_to_end:
        raise ValueError("training.mode=cached cannot augment or unfreeze tower blocks: use end_to_end")
    if tc.mode == "auto":
        return "end_to_end" if needs_end_to_end else "cached"
    return tc.mode


def tower_sources(tc: TrainingConfig, paths: TrainPaths) -> list[str]:
    if tc.towers == "tiny":
        return build_tiny_towers(paths.tiny_towers, seed=tc.seed)
    return list(tc.tower_models)


def training_hash(tc: TrainingConfig, sources: list[str]) -> str:
    payload = {k: v for k, v in tc.model_dump(mode="json").items() if k not in RESUME_FREE_KEYS}
    payload["sources"] = sources
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- examples


@dataclass
class Examples:
    """Per-image inputs of one run: cached features or encoded images, identity row and split of each."""

    identities: Identities
    mean: np.ndarray
    identity_index: np.ndarray  # [n] row in identities.targets
    split: np.ndarray  # [n] SPLIT_*
    features: np.ndarray | None  # [n, F] (cached mode)
    images: list[bytes] | None  # encoded bytes (end-to-end mode)
    bboxes: list[list[float]] | None
    drops: Counter

    def rows(self, split: int) -> np.ndarray:
        return np.flatnonzero(self.split == split)


def load_examples(tc: TrainingConfig, paths: TrainPaths, mode: str) -> Examples:
    identities = load_identities(paths.dataset_dir)
    index = identities.index
    drops: Counter = Counter(identities.drops)
    if mode == "cached":
        sample_ids, identity_ids, features = read_features(paths.features)
        images = bboxes = None
    else:
        table = read_shards(Path(paths.dataset_dir) / "images", columns=["sample_id", "identity_id", "bbox"])
        good = [i for i, b in enumerate(table["bbox"].to_pylist()) if valid_bbox(b)]
        drops["bad_bbox"] += table.num_rows - len(good)
        table = table.take(pa.array(good, pa.int64()))
        sample_ids, identity_ids = table["sample_id"].to_pylist(), table["identity_id"].to_pylist()
        bboxes = table["bbox"].to_pylist()
        image_column = read_shards(Path(paths.dataset_dir) / "images", columns=["image"])["image"]
        images = [image_column[i].as_py() for i in good]
        features = None
    keep = [i for i, identity_id in enumerate(identity_ids) if identity_id in index]
    drops["image_unknown_identity"] += len(identity_ids) - len(keep)
    if not keep:
        raise ValueError(f"no training image matches an identity in {paths.dataset_dir} ({dict(drops)})")
    sample_ids = [sample_ids[i] for i in keep]
    identity_ids = [identity_ids[i] for i in keep]
    split = assign_splits(
        identity_ids, sample_ids, tc.val_identity_fraction, tc.val_image_fraction, seed=tc.seed
    )
    return Examples(
        identities=identities,
        mean=load_mean_embedding(paths.dataset_dir, identities),
        identity_index=np.asarray([index[i] for i in identity_ids], dtype=np.int64),
        split=split,
        # The whole cache usually survives: indexing would copy the biggest array training holds.
        features=None if features is None else (features if len(keep) == len(features) else features[keep]),
        images=None if images is None else [images[i] for i in keep],
        bboxes=None if bboxes is None else [bboxes[i] for i in keep],
        drops=drops,
    )


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, 1_000_003, epoch]).permutation(n)


def batch_rows(
    train_rows: np.ndarray,
    seed: int,
    step: int,
    steps_per_epoch: int,
    global_batch: int,
    rank: int,
    batch: int,
) -> tuple[int, np.ndarray]:
    """(epoch, example rows of this worker's slice) for an optimizer step; the last batch of an epoch wraps."""
    epoch, position = divmod(step, steps_per_epoch)
    perm = epoch_permutation(seed, epoch, len(train_rows))
    picks = (position * global_batch + rank * batch + np.arange(batch)) % len(train_rows)
    return epoch, train_rows[perm[picks]]


# ---------------------------------------------------------------------------------------------- model inputs


class RowGatherer:
    """Rows of a host array as a tensor on the training device, without a pageable copy per step.

    On CUDA the whole array moves to the GPU once when it takes under ``DEVICE_TABLE_FREE_FRACTION`` of the free
    memory (rows are then gathered there); otherwise each step's rows go through pinned memory with a
    non-blocking copy. On CPU it is a plain gather. Values are identical either way.
    """

    def __init__(self, array: np.ndarray, device: torch.device) -> None:
        self.array, self.device = array, device
        self.on_device: torch.Tensor | None = None
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if array.nbytes < DEVICE_TABLE_FREE_FRACTION * free:
                self.on_device = torch.from_numpy(np.ascontiguousarray(array)).to(device)

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        if self.on_device is not None:
            return self.on_device[torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)]
        gathered = torch.from_numpy(self.array[rows])
        if self.device.type == "cuda":
            return gathered.pin_memory().to(self.device, non_blocking=True)
        return gathered.to(self.device)


class InputBuilder:
    """Turns example rows into the model's input: cached feature rows, or decoded + cropped + processed images."""

    def __init__(
        self, examples: Examples, model: NameEncoder, tc: TrainingConfig, device: torch.device
    ) -> None:
        self.examples, self.model, self.tc, self.device = examples, model, tc, device
        self.drops: Counter = Counter()
        self.feature_rows = RowGatherer(examples.features, device) if examples.features is not None else None

    def __call__(
        self, rows: np.ndarray, epoch: int | None = None
    ) -> tuple[torch.Tensor | list[torch.Tensor], np.ndarray]:
        """(input, rows actually used): undecodable images are skipped and counted."""
        ex = self.examples
        if self.feature_rows is not None:
            return self.feature_rows(rows), rows
        crops, used = [], []
        for row in rows:
            image = decode_image(ex.images[row])
            if image is None:
                self.drops["undecodable_image"] += 1
                continue
            rng = (
                augmentation_rng(self.tc.seed, epoch, int(row))
                if (self.tc.augment and epoch is not None)
                else None
            )
            crops.append(face_crop(image, ex.bboxes[row], self.tc.crop_margin, rng))
            used.append(row)
        used_rows = np.asarray(used, dtype=np.int64)
        if not crops:
            return [], used_rows
        pixels = [p.to(self.device) for p in self.model.features.pixel_values(crops)]
        return pixels, used_rows


# ---------------------------------------------------------------------------------------------- logging


class MetricsLogger:
    """Metrics as long-format CSV (step, epoch, split, metric, value) and TensorBoard scalars ``split/metric``.

    On resume the CSV keeps only rows up to the resumed step, so it reads like one uninterrupted run.
    """

    def __init__(self, output_dir: Path, resume_step: int | None) -> None:
        self.csv_path = output_dir / "metrics.csv"
        rows: list[list[str]] = []
        if resume_step is not None and self.csv_path.is_file():
            with open(self.csv_path, newline="") as handle:
                rows = [r for r in list(csv.reader(handle))[1:] if r and int(r[0]) <= resume_step]
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.csv_path, "w", newline="") as handle:
            csv.writer(handle).writerows([["step", "epoch", "split", "metric", "value"], *rows])
        self.tensorboard = None
        try:
            from tensorboardX import SummaryWriter

            self.tensorboard = SummaryWriter(str(output_dir / "tensorboard"))
        except ImportError:  # optional: CSV remains the record
            print("[train] tensorboardX is not installed: metrics go to metrics.csv only")

    def log(self, step: int, epoch: int, split: str, metrics: dict[str, float]) -> None:
        with open(self.csv_path, "a", newline="") as handle:
            writer = csv.writer(handle)
            for name, value in metrics.items():
                writer.writerow([step, epoch, split, name, f"{value:.8g}"])
                if self.tensorboard is not None:
                    self.tensorboard.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


# ---------------------------------------------------------------------------------------------- checkpoints


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


# ---------------------------------------------------------------------------------------------- the loop


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


# ---------------------------------------------------------------------------------------------- entry points


def prepare(config: Config, use_ray_for_features: bool) -> tuple[TrainPaths, list[str], str]:
    """Check the dataset, resolve the towers, and (cached mode) build the feature cache once, before training."""
    tc = config.training
    paths = resolve_paths(config)
    require_dataset(paths.dataset_dir)
    mode = resolve_mode(tc)
    sources = tower_sources(tc, paths)
    if tc.towers == "tiny":
        print("[train] training.towers=tiny: random tiny CLIP towers, results are NOT meaningful (smoke run)")
    if mode == "cached":
        manifest = cache_features(
            sources,
            paths.dataset_dir,
            paths.features,
            crop_margin=tc.crop_margin,
            normalize=tc.normalize_features,
            batch_size=tc.feature_batch_size,
            use_ray=use_ray_for_features,
            concurrency=tc.feature_concurrency,
            num_gpus=tc.feature_num_gpus,
            progress=tc.progress_bars,
            precision=tc.feature_precision,
            device=tc.device,
        )
        print(
            f"[train] feature cache: {manifest['rows']} images ({manifest.get('feature_precision', 'float32')}), "
            f"drops {manifest['drops']}"
        )
    return paths, sources, mode


def train(config: Config) -> TrainResult:
    """Train the encoder as ``config.training`` says (in-process or Ray Train) and export it."""
    tc = config.training
    if tc.trainer == "local":
        paths, sources, mode = prepare(config, use_ray_for_features=False)
        return train_loop(tc, paths, sources, mode)
    paths, sources, mode = prepare(config, use_ray_for_features=True)
    return train_with_ray(tc, paths, sources, mode)


def _ray_worker(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    tc = TrainingConfig.model_validate(loop_config["training"])
    result = train_loop(
        tc,
        TrainPaths(**loop_config["paths"]),
        loop_config["sources"],
        loop_config["mode"],
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=ray.train.torch.get_device(),
        wrap_model=ray.train.torch.prepare_model,
    )
    if context.get_world_rank() == 0:
        out = Path(loop_config["paths"]["output_dir"]) / "last_result.json"
        out.write_text(json.dumps(asdict(result), default=str) + "\n")


def train_with_ray(tc: TrainingConfig, paths: TrainPaths, sources: list[str], mode: str) -> TrainResult:
    """Data-parallel training on Ray Train: the same loop on ``num_workers`` workers (CPUs or GPUs, any nodes)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={
            "training": tc.model_dump(mode="json"),
            "paths": asdict(paths),
            "sources": sources,
            "mode": mode,
        },
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu),
        run_config=RunConfig(name="encoder", storage_path=str(Path(paths.output_dir) / "ray")),
    )
    trainer.fit()
    data = json.loads((Path(paths.output_dir) / "last_result.json").read_text())
    data["history"] = [tuple(h) for h in data["history"]]
    return TrainResult(**data)
