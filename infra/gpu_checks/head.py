"""Check 3, ``throughput_head``: cached-feature training samples/s with the production head, and its ceiling."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.gpu_checks.common import NAME_TOKENS, SDXL_DIM, SDXL_WIDTHS, median_seconds, training_config


def check_head_throughput(work: Path, device: torch.device, quick: bool) -> dict[str, Any]:
    """Cached-feature training with the production head through ``train`` (loop overhead included)."""
    from encoder_training.model import NameHead, build_tiny_towers
    from encoder_training.synthetic import write_synthetic_dataset
    from encoder_training.train import train

    n_ids, per_id = (16, 8) if quick else (64, 32)
    dataset = write_synthetic_dataset(
        work / "dataset_sdxl",
        n_identities=n_ids,
        images_per_identity=per_id,
        num_tokens=NAME_TOKENS,
        embedding_dim=SDXL_DIM,
        image_size=48,
        rows_per_shard=512,
    )
    # Tiny towers whose projections are ViT-L/14's and bigG/14's widths: the head is exactly the production one.
    towers = build_tiny_towers(work / "towers_sdxl_width", seed=0, projection_dims=SDXL_WIDTHS)
    hidden = 2048
    runs = (
        [(32, True, 6), (32, False, 6)] if quick else [(256, True, 60), (1024, True, 40), (1024, False, 25)]
    )
    result: dict[str, Any] = {
        "head": f"{sum(SDXL_WIDTHS)} -> {hidden} -> {hidden} -> {NAME_TOKENS}x{SDXL_DIM}"
    }
    for batch, bf16, steps in runs:
        config = training_config(
            dataset,
            work / "run_head",
            f"training.tower_models=[{towers[0]}, {towers[1]}]",
            f"training.hidden_dim={hidden}",
            f"training.batch_size={batch}",
            f"training.bf16={str(bf16).lower()}",
            "training.epochs=1000",
            f"training.max_steps={steps}",
            "training.eval_every=100000",
            "training.resume=false",
            f"training.device={device}",
        )
        run = train(config)
        steady = run.step_seconds[min(5, len(run.step_seconds) - 1) :]
        median = float(np.median(steady))
        key = f"loop_b{batch}_{'bf16' if bf16 and device.type == 'cuda' else 'fp32'}"
        result[key] = {"samples_per_s": batch / median, "median_step_ms": 1000 * median, "steps": run.step}

    # Ceiling: the same head, optimizer and loss with inputs already on the device (no loop, no host copies).
    torch.manual_seed(0)
    head = NameHead(sum(SDXL_WIDTHS), hidden, NAME_TOKENS, SDXL_DIM).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-4)
    batch = runs[1][0] if quick else 1024
    x = torch.randn(batch, sum(SDXL_WIDTHS), device=device)
    y = torch.randn(batch, NAME_TOKENS, SDXL_DIM, device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = head(x)
        loss = torch.nn.functional.mse_loss(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        optimizer.step()

    seconds = median_seconds(step, device, warmup=3, iters=5 if quick else 30)
    params = sum(p.numel() for p in head.parameters())
    result["ceiling_on_device"] = {
        "batch": batch,
        "samples_per_s": batch / seconds,
        "median_step_ms": 1000 * seconds,
        "head_params_M": round(params / 1e6, 2),
        "matmul_tflops": 6 * params * batch / seconds / 1e12,
    }
    result["pass"] = all(
        math.isfinite(v["samples_per_s"])
        for k, v in result.items()
        if isinstance(v, dict) and "samples_per_s" in v
    )
    return result
