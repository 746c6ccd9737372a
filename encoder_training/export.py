"""The trained encoder's export: everything the inference side needs, loadable without the training code's state.

Export format (one directory)::

    config.json               {"format": "laioncele-name-encoder", "version": 1,
                               "in_dim", "hidden_dim", "num_tokens", "embedding_dim",
                               "normalize_features", "crop_margin",
                               "tower_sources": [model id or path relative to this dir, ...],
                               "towers_not_meaningful": bool,   # true for random tiny smoke-test towers
                               "step", "metrics", "training": {...the training config...}}
    head.safetensors          the MLP head's weights (keys "layers.0.weight", ... of ``NameHead``)
    towers/tower<i>/          CLIP towers saved with save_pretrained (model + image processor) when they were
                              fine-tuned or built locally; otherwise tower_sources names the public checkpoint
    mean_name_embedding.npy   the dataset's mean name embedding F_mean, float32 [num_tokens, embedding_dim]

Use: ``model, config, mean = load_exported(dir)``, then ``model.encode_crops([face_crop(image, bbox,
config["crop_margin"])])`` -> [1, num_tokens, embedding_dim] predicted name embedding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from encoder_training.model import NameEncoder, NameHead, TowerFeatures, load_tower_features

EXPORT_FORMAT = "laioncele-name-encoder"
EXPORT_VERSION = 1


def export_model(
    out_dir: str | Path,
    model: NameEncoder,
    *,
    tower_sources: list[str],
    save_towers: bool,
    normalize_features: bool,
    crop_margin: float,
    mean_embedding: np.ndarray,
    towers_not_meaningful: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the export directory (see the module docstring). ``model.features`` is needed when save_towers."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head = model.head
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, out_dir / "head.safetensors"
    )
    sources = list(tower_sources)
    if save_towers:
        if model.features is None:
            raise ValueError("save_towers needs the model's towers")
        sources = []
        for i, (tower, processor) in enumerate(
            zip(model.features.towers, model.features.processors, strict=True)
        ):
            path = out_dir / "towers" / f"tower{i}"
            tower.save_pretrained(path)
            processor.save_pretrained(path)
            sources.append(f"towers/tower{i}")
    np.save(out_dir / "mean_name_embedding.npy", np.asarray(mean_embedding, dtype=np.float32))
    config = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "in_dim": head.layers[0].in_features,
        "hidden_dim": head.layers[0].out_features,
        "num_tokens": head.num_tokens,
        "embedding_dim": head.embedding_dim,
        "normalize_features": normalize_features,
        "crop_margin": crop_margin,
        "tower_sources": sources,
        "towers_not_meaningful": towers_not_meaningful,
        **(extra or {}),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out_dir


def load_exported(
    export_dir: str | Path, load_towers: bool = True, device: str | torch.device = "cpu"
) -> tuple[NameEncoder, dict[str, Any], np.ndarray]:
    """(model in eval mode, export config, mean name embedding [T, D]) from an export directory.

    ``load_towers=False`` gives a head-only model for callers that bring their own image features.
    """
    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text())
    if config.get("format") != EXPORT_FORMAT or config.get("version") != EXPORT_VERSION:
        raise ValueError(f"{export_dir} is not a {EXPORT_FORMAT} v{EXPORT_VERSION} export")
    head = NameHead(config["in_dim"], config["hidden_dim"], config["num_tokens"], config["embedding_dim"])
    head.load_state_dict(load_file(export_dir / "head.safetensors"))
    features: TowerFeatures | None = None
    if load_towers:
        sources = [str(export_dir / s) if (export_dir / s).is_dir() else s for s in config["tower_sources"]]
        features = load_tower_features(sources, normalize=config["normalize_features"])
        if features.out_dim != config["in_dim"]:
            raise ValueError(f"towers give {features.out_dim} features, the head expects {config['in_dim']}")
    mean = np.load(export_dir / "mean_name_embedding.npy")
    model = NameEncoder(features, head).to(device).eval()
    return model, config, mean
