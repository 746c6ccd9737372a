"""Check 1, ``train``: cached and end-to-end training on the device, the export, and its predictions vs the CPU's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.gpu_checks.common import NAME_TOKENS, loss_drop, training_config


def check_train(work: Path, device: torch.device, quick: bool) -> dict[str, Any]:
    from encoder_training.data import decode_image, face_crop
    from encoder_training.synthetic import write_synthetic_dataset
    from encoder_training.train import train
    from inference.encoder import load_name_encoder
    from laioncele.io.shards import read_shards

    dataset = write_synthetic_dataset(
        work / "dataset_small",
        n_identities=16,
        images_per_identity=24,
        num_tokens=NAME_TOKENS,
        embedding_dim=96,
    )
    epochs = 8 if quick else 60  # ~5 steps per epoch at batch 64
    config = training_config(
        dataset,
        work / "run_cached",
        "training.towers=tiny",
        "training.hidden_dim=256",
        "training.batch_size=64",
        "training.lr=0.003",
        "training.warmup_steps=20",
        f"training.epochs={epochs}",
        "training.eval_every=100",
        f"training.device={device}",
    )
    cached = train(config)
    drop = loss_drop(cached.history)
    steady = cached.step_seconds[5:] or cached.step_seconds
    result: dict[str, Any] = {
        "mode": cached.mode,
        "steps": cached.step,
        "bf16_autocast": config.training.bf16 and device.type == "cuda",
        **drop,
        "median_step_ms": 1000 * float(np.median(steady)),
        "val_image_metrics": cached.metrics.get("val_image", {}),
        "exported": cached.export_dir is not None,
    }
    loss_ok = math.isfinite(drop["loss_last"]) and drop["loss_ratio"] < 0.7

    e2e_config = training_config(
        dataset,
        work / "run_e2e",
        "training.towers=tiny",
        "training.mode=end_to_end",
        "training.augment=true",
        "training.unfreeze_last_blocks=1",
        "training.hidden_dim=256",
        "training.batch_size=32",
        "training.lr=0.001",
        "training.warmup_steps=2",
        "training.epochs=1",
        f"training.max_steps={4 if quick else 12}",
        f"training.device={device}",
    )
    e2e = train(e2e_config)
    e2e_losses = [v for _, v in e2e.history]
    result["end_to_end"] = {
        "steps": e2e.step,
        "loss_first": e2e_losses[0],
        "loss_last": e2e_losses[-1],
        "median_step_ms": 1000 * float(np.median(e2e.step_seconds)),
    }
    e2e_ok = e2e.step > 0 and all(math.isfinite(v) for v in e2e_losses)

    # The export, loaded by the inference side on the device, must predict what it predicts on CPU.
    table = read_shards(dataset / "images", columns=["image", "bbox"]).slice(0, 8)
    crops = [
        face_crop(decode_image(data), bbox, 0.2)
        for data, bbox in zip(table["image"].to_pylist(), table["bbox"].to_pylist(), strict=True)
    ]
    on_device = load_name_encoder(cached.export_dir, device=device)
    on_cpu = load_name_encoder(cached.export_dir, device="cpu")
    predicted = on_device.predict(crops)
    reference = on_cpu.predict(crops)
    max_diff = float((predicted - reference).abs().max())
    scale = float(reference.abs().max())
    result["encoder_predict"] = {
        "shape": list(predicted.shape),
        "model_device": str(next(on_device.model.parameters()).device),
        "max_abs_diff_vs_cpu": max_diff,
        "ref_abs_max": scale,
    }
    predict_ok = (
        tuple(predicted.shape) == (8, NAME_TOKENS, 96)
        and bool(torch.isfinite(predicted).all())
        and max_diff <= 2e-2 * max(scale, 1.0)
    )
    result["pass"] = bool(loss_ok and e2e_ok and predict_ok and cached.export_dir)
    result["_export_dir"] = cached.export_dir
    result["_features_dir"] = str(work / "run_cached" / "encoder" / "features")
    result["_dataset"] = str(dataset)
    return result
