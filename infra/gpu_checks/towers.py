"""Check 4, ``throughput_towers``: feature extraction and end-to-end steps at the real CLIP towers' sizes."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.gpu_checks.common import QUICK_TOWERS, median_seconds, sync


def check_tower_throughput(work: Path, device: torch.device, quick: bool) -> dict[str, Any]:
    """Feature extraction (``FeatureExtractor``) and end-to-end forward+backward at the real towers' sizes."""
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from encoder_training.features import FeatureExtractor
    from encoder_training.model import SDXL_TOWER_CONFIGS, TowerFeatures, set_trainable_blocks
    from encoder_training.synthetic import write_synthetic_dataset
    from laioncele.config import TrainingConfig
    from laioncele.io.shards import read_shards

    shapes = QUICK_TOWERS if quick else SDXL_TOWER_CONFIGS
    image_size = next(iter(shapes.values()))["image_size"]
    towers = []
    for name, kwargs in shapes.items():
        torch.manual_seed(0)
        started = time.perf_counter()
        with torch.device(device):
            tower = CLIPVisionModelWithProjection(CLIPVisionConfig(**kwargs)).eval()
        print(f"[towers] built {name} on {device} in {time.perf_counter() - started:.1f}s", flush=True)
        towers.append(tower)
    processors = [
        CLIPImageProcessor(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        )
        for _ in towers
    ]
    features = TowerFeatures(towers, processors, normalize=True)
    result: dict[str, Any] = {
        "towers": {
            name: {"params_M": round(sum(p.numel() for p in t.parameters()) / 1e6, 1)}
            for name, t in zip(shapes, towers, strict=True)
        },
        "attn_implementation": getattr(towers[0].config, "_attn_implementation", None),
        "image_size": image_size,
    }

    # CPU side: PIL crops -> pixel tensors (the image processor), the other half of the feature pass.
    rng = np.random.default_rng(0)
    crops = [Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(64)]
    seconds = median_seconds(lambda: features.pixel_values(crops), torch.device("cpu"), warmup=1, iters=3)
    result["preprocess_cpu_images_per_s_1proc"] = len(crops) / seconds

    def pixels(batch: int) -> list[torch.Tensor]:
        return [torch.randn(batch, 3, image_size, image_size, device=device)] * len(towers)

    iters = 3 if quick else 5
    batch_default = 8 if quick else TrainingConfig().feature_batch_size
    batch_half = 8 if quick else 256
    runs: dict[str, dict[str, float]] = {}
    # The feature cache's own path: FeatureExtractor.embed at the configured (default) precision, then fp32.
    default_precision = TrainingConfig().feature_precision
    extractor = FeatureExtractor(
        [], "", crop_margin=0.2, device=str(device), precision=default_precision, towers=features
    )
    fp32_extractor = FeatureExtractor(
        [], "", crop_margin=0.2, device=str(device), precision="float32", towers=features
    )
    result["feature_precision"] = {"config": default_precision, "resolved": extractor.precision}
    tag = f"extract_{default_precision}_{extractor.precision}"
    for batch in (batch_default, batch_half):
        x = pixels(batch)
        s = median_seconds(lambda x=x: extractor.embed(x), device, warmup=2, iters=iters)
        runs[f"{tag}_b{batch}"] = {"batch": batch, "images_per_s": batch / s}
    x = pixels(batch_default)
    s = median_seconds(lambda: fp32_extractor.embed(x), device, warmup=1, iters=iters)
    runs[f"extract_float32_b{batch_default}"] = {"batch": batch_default, "images_per_s": batch_default / s}
    # The default precision's features against fp32's, at the real towers' sizes (random weights).
    x = pixels(batch_default)
    reduced, reference = extractor.embed(x), fp32_extractor.embed(x)
    cosine = torch.nn.functional.cosine_similarity(reduced, reference, dim=-1)
    result["vs_float32"] = {
        "cosine_min": float(cosine.min()),
        "max_abs_diff": float((reduced - reference).abs().max()),
        "dtype": str(reduced.dtype),
    }
    # The whole per-shard call (JPEG decode, face crop, preprocessing on one CPU core, towers): one actor's rate.
    dataset = write_synthetic_dataset(
        work / "dataset_towers", n_identities=8, images_per_identity=4 if quick else 32, image_size=256
    )
    table = read_shards(dataset / "images")
    out = extractor.extract(table.slice(0, batch_default))  # warm-up
    started = time.perf_counter()
    out = extractor.extract(table)
    sync(device)
    seconds = time.perf_counter() - started
    runs[f"extract_shard_{extractor.precision}_b{extractor.batch_size}_1proc"] = {
        "batch": extractor.batch_size,
        "images": table.num_rows,
        "images_per_s": table.num_rows / seconds,
        "finite": bool(np.isfinite(out["features"]).all() and (out["reason"] == "ok").all()),
    }
    # Per-tower bf16 numbers: which tower dominates.
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for name, tower in zip(shapes, towers, strict=True):
            x1 = torch.randn(batch_half, 3, image_size, image_size, device=device)
            s = median_seconds(lambda t=tower, x1=x1: t(pixel_values=x1), device, warmup=1, iters=iters)
            runs[f"tower_{name}_bf16_autocast"] = {"batch": batch_half, "images_per_s": batch_half / s}

    # End-to-end training step shape: towers frozen but the last 2 blocks, bf16 autocast, forward + backward.
    batch_e2e = 8 if quick else 64
    for tower in towers:
        set_trainable_blocks(tower, 2)
        tower.train()
    x = pixels(batch_e2e)

    def fwd_bwd() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = features(x)
        out.float().pow(2).mean().backward()

    s = median_seconds(fwd_bwd, device, warmup=1, iters=iters)
    runs["e2e_fwd_bwd_bf16_last2_blocks"] = {"batch": batch_e2e, "images_per_s": batch_e2e / s}
    for tower in towers:
        tower.requires_grad_(False)
        tower.zero_grad(set_to_none=True)
        tower.eval()

    # Half-precision weights (what a feature actor could load): fp16 then bf16.
    for dtype in (torch.float16, torch.bfloat16):
        if device.type != "cuda" and dtype == torch.float16:
            continue
        features.to(dtype)
        x = pixels(batch_half)
        with torch.no_grad():
            out = features(x)
            finite = bool(torch.isfinite(out).all())
            s = median_seconds(lambda x=x: features(x), device, warmup=1, iters=iters)
        runs[f"extract_{str(dtype).removeprefix('torch.')}_weights"] = {
            "batch": batch_half,
            "images_per_s": batch_half / s,
            "finite": finite,
        }
    if device.type == "cuda":
        result["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    result["runs"] = runs
    result["pass"] = all(
        math.isfinite(r["images_per_s"]) and r.get("finite", True) for r in runs.values()
    ) and bool(result["vs_float32"]["cosine_min"] > 0.99)
    return result
