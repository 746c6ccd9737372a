"""Check 2, ``ddp``: ``train_loop`` under ``torchrun``, the head wrapped in ``DistributedDataParallel``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.gpu_checks.common import ROOT, loss_drop, training_config


def check_ddp(work: Path, device: torch.device, quick: bool, train_result: dict[str, Any]) -> dict[str, Any]:
    """``train_loop`` under torchrun, 1 process, the head wrapped in DDP (NCCL on CUDA)."""
    from encoder_training.train import TrainPaths

    if "_features_dir" not in train_result:
        raise RuntimeError("needs the feature cache of the train check, which did not get that far")
    output_dir = work / "run_ddp"
    shutil.copytree(train_result["_features_dir"], output_dir / "features")
    config = training_config(
        Path(train_result["_dataset"]),
        work / "unused",
        "training.towers=tiny",
        "training.hidden_dim=256",
        "training.batch_size=64",
        "training.lr=0.003",
        "training.warmup_steps=10",
        f"training.epochs={6 if quick else 30}",
        "training.eval_every=100",
    )
    spec = {
        "training": config.training.model_dump(mode="json"),
        "paths": {"dataset_dir": train_result["_dataset"], "output_dir": str(output_dir)},
        "sources": [str(work / "run_cached" / "encoder" / "tiny_towers" / f"tower{i}") for i in (0, 1)],
        "mode": "cached",
        "result": str(work / "ddp_result.json"),
    }
    if not TrainPaths(**spec["paths"]).features.is_dir():  # train_loop reads the cache the train check built
        raise RuntimeError("feature cache copy is missing")
    spec_path = work / "ddp_spec.json"
    spec_path.write_text(json.dumps(spec))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=1",
        "-m",  # each worker runs ``python -m infra.gpu_check`` in ROOT: the project's packages import from there
        "infra.gpu_check",
        "--ddp-worker",
        str(spec_path),
    ]
    print("[ddp] " + " ".join(command), flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, timeout=150, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return {"pass": False, "error": f"torchrun exited {proc.returncode}", "wall_s": seconds}
    result = json.loads(Path(spec["result"]).read_text())
    result["torchrun_wall_s"] = round(seconds, 2)
    result["pass"] = bool(
        result["wrapped_in_ddp"]
        and result["all_reduce_ok"]
        and result["loss_ratio"] < 0.7
        and result["steps"] > 0
    )
    return result


def ddp_worker(spec_path: str) -> int:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from encoder_training.train import TrainPaths, train_loop
    from laioncele.config import TrainingConfig

    spec = json.loads(Path(spec_path).read_text())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    probe = torch.full((4,), float(rank + 1), device=device)
    dist.all_reduce(probe)
    all_reduce_ok = bool(torch.all(probe == world * (world + 1) / 2))
    wrapped: list[str] = []

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        ddp = DistributedDataParallel(module, device_ids=[local_rank] if use_cuda else None)
        wrapped.append(type(ddp).__name__)
        return ddp

    result = train_loop(
        TrainingConfig.model_validate(spec["training"]),
        TrainPaths(**spec["paths"]),
        spec["sources"],
        spec["mode"],
        rank=rank,
        world_size=world,
        device=device,
        wrap_model=wrap,
    )
    if rank == 0:
        steady = result.step_seconds[5:] or result.step_seconds
        out = {
            "backend": backend,
            "world_size": world,
            "device": str(device),
            "all_reduce_ok": all_reduce_ok,
            "wrapped_in_ddp": wrapped == ["DistributedDataParallel"],
            "steps": result.step,
            **loss_drop(result.history),
            "median_step_ms": 1000 * float(np.median(steady)),
            "exported": result.export_dir is not None,
        }
        Path(spec["result"]).write_text(json.dumps(out))
    dist.destroy_process_group()
    return 0
