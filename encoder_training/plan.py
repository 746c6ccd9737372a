"""What a training run needs before the loop: its paths, its mode, its towers and (cached mode) the feature cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from encoder_training.data import require_dataset
from encoder_training.features import cache_features
from encoder_training.model import build_tiny_towers
from laioncele.config import Config, TrainingConfig


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
