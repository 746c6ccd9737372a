"""Ray Train wiring: the same ``train_loop`` on ``training.num_workers`` TorchTrainer workers, DDP via ``prepare_model``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from encoder_training.loop import TrainResult, train_loop
from encoder_training.plan import TrainPaths
from laioncele.config import TrainingConfig


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
