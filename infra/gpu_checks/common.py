"""What every GPU check shares: the SDXL sizes, device timing, the training config they start from, the report."""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]  # the project root: torchrun's working directory


SDXL_WIDTHS = (768, 1280)  # projection widths of CLIP ViT-L/14 and OpenCLIP ViT-bigG/14


NAME_TOKENS, SDXL_DIM = 8, 2048


QUICK_TOWERS = {  # the real towers' code path, CPU-sized
    f"tiny-{projection_dim}": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=16,
        image_size=64,
        projection_dim=projection_dim,
    )
    for projection_dim in SDXL_WIDTHS
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int) -> float:
    """Median wall time of ``fn`` after ``warmup`` calls, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def loss_drop(history: list[tuple[int, float]], window: int = 10) -> dict[str, float]:
    losses = [v for _, v in history]
    window = max(1, min(window, len(losses) // 3))
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    return {"loss_first": first, "loss_last": last, "loss_ratio": last / first if first else math.nan}


def training_config(dataset_dir: Path, output_root: Path, *overrides: str):
    from laioncele.config import load_config

    return load_config(
        None,
        [
            f"run.output_root={output_root}",
            f"training.dataset_dir={dataset_dir}",
            "training.trainer=local",
            "training.crop_margin=0.2",
            "training.val_identity_fraction=0.0",
            "training.val_image_fraction=0.2",
            "training.progress_bars=false",
            "training.checkpoint_every=100000",
            *overrides,
        ],
    )


class Checks:
    """Runs named checks, each isolated (an exception fails that check only), and keeps the JSON current."""

    def __init__(self, out_dir: Path, header: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.report: dict[str, Any] = {**header, "checks": {}}

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        print(f"\n=== {name}", flush=True)
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as error:  # one broken check must not hide the others' results
            traceback.print_exc()
            result = {"pass": False, "error": f"{type(error).__name__}: {error}"[:2000]}
        result["seconds"] = round(time.perf_counter() - started, 2)
        self.report["checks"][name] = result
        print(json.dumps({name: result}, indent=1, default=str), flush=True)
        self.write()
        return result

    def write(self) -> None:
        checks = self.report["checks"].values()
        self.report["all_pass"] = bool(checks) and all(c.get("pass") for c in checks)
        path = self.out_dir / "gpu_check.json"
        path.write_text(json.dumps(self.report, indent=1, default=str) + "\n")
