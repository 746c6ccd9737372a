"""Benchmark encoder training on this CPU: samples/s with cached tower features vs end-to-end.

Towers are the TINY random CLIP towers (32 px, patch 8, width 32, 2 layers; NOT ViT-L/14 or bigG/14), so the
end-to-end cost measured here is mostly JPEG decoding, face cropping and CLIP preprocessing, plus a tower forward
that is tiny next to the real ones: on real towers end-to-end is far slower still. The head has the production
shape (hidden 2048, output 8 x 2048). Both runs use the in-process trainer and a synthetic dataset.

    .venv/bin/python bench/training_bench.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def _throughput(result, batch_size: int) -> float:
    """Samples/s from the median step time: robust to the first steps' allocations and to a busy machine."""
    import numpy as np

    return batch_size / float(np.median(result.step_seconds[2:] or result.step_seconds))


def run(steps: int = 10, batch_size: int = 32, n_identities: int = 16, images_per_identity: int = 16) -> dict:
    import torch

    from encoder_training.synthetic import write_synthetic_dataset
    from encoder_training.train import prepare, train
    from laioncele.config import load_config

    with tempfile.TemporaryDirectory(prefix="training-bench-") as tmp:
        root = Path(tmp)
        write_synthetic_dataset(
            root / "dataset",
            n_identities=n_identities,
            images_per_identity=images_per_identity,
            num_tokens=8,
            embedding_dim=2048,
            image_size=256,
        )
        common = [
            f"run.output_root={root}",
            "training.towers=tiny",
            "training.trainer=local",
            "training.device=cpu",
            f"training.batch_size={batch_size}",
            f"training.max_steps={steps}",
            "training.epochs=100",
            "training.eval_every=100000",
            "training.checkpoint_every=100000",
            "training.progress_bars=false",
            "training.resume=false",
        ]
        cached = train(load_config(None, [*common, "training.mode=cached"]))
        manifest_path = root / "encoder" / "features" / "manifest.json"
        manifest_path.unlink()  # time the feature pass alone, on a cold cache
        started = time.perf_counter()
        train_config = load_config(None, [*common, "training.mode=cached"])
        prepare(train_config, use_ray_for_features=False)
        feature_seconds = time.perf_counter() - started
        end_to_end = train(load_config(None, [*common, "training.mode=end_to_end", "training.augment=true"]))
    n_images = n_identities * images_per_identity
    return {
        "towers": "tiny random CLIP towers (32px, 2 layers): not the real ViT-L/14 + bigG/14",
        "head": "hidden 2048, output 8x2048 (production shape)",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "steps": steps,
        "images": n_images,
        "image_side_px": 256,
        "cached_samples_per_s": round(_throughput(cached, batch_size), 1),
        "end_to_end_samples_per_s": round(_throughput(end_to_end, batch_size), 1),
        "speedup_cached_vs_end_to_end": round(
            _throughput(cached, batch_size) / max(_throughput(end_to_end, batch_size), 1e-9), 2
        ),
        "feature_cache_pass_s": round(feature_seconds, 2),
        "feature_cache_images_per_s": round(n_images / feature_seconds, 1),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
