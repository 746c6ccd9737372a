"""Feature caching: frozen towers see every face crop once, so training epochs only run the MLP head.

The unit of work is one image shard of the dataset. ``FeatureExtractor`` is a callable class usable both as a
Ray Data actor (``map_batches(FeatureExtractor, compute=ActorPoolStrategy(...), num_gpus=...)``) and in-process.
The cache is a stage directory (schema ``training_features``) whose manifest carries a hash of everything that
changes the features (tower sources, crop margin, normalisation, the image manifest, the towers' compute precision)
and the precision itself: a stale cache is rebuilt, and bf16 features never mix with fp32 ones.

Precision: the towers run under ``torch.autocast`` in the resolved dtype (``resolve_feature_precision``); fp32 on
an H200 ran the two towers at ~41 img/s, bf16 autocast at ~380 img/s (bench/gpu_check.json). Features are always
returned and stored as float32.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from encoder_training.data import decode_image, face_crop, image_shard_records, read_image_shard, valid_bbox
from encoder_training.model import TowerFeatures, load_tower_features
from laioncele.io.schema import TRAINING_FEATURES
from laioncele.io.shards import load_manifest, read_shards, write_shards

REASON_OK = "ok"
FeaturePrecision = Literal["auto", "float32", "bfloat16", "float16"]
ResolvedPrecision = Literal["float32", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_feature_precision(precision: FeaturePrecision | str, device_type: str) -> ResolvedPrecision:
    """The dtype the towers compute in: "auto" is bf16 on a CUDA device that supports it, else fp32.

    A CUDA device type seen from a process without CUDA (a Ray driver scheduling GPU actors) resolves "auto" to
    bf16: every GPU the towers are sized for (Ampere and later) has it. Explicit dtypes are kept on any device.
    """
    if precision not in ("auto", *DTYPES):
        raise ValueError(f"feature precision must be auto, float32, bfloat16 or float16, not {precision!r}")
    if precision != "auto":
        return precision  # type: ignore[return-value]
    if device_type != "cuda":
        return "float32"
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "float16"
    return "bfloat16"


def features_hash(
    sources: list[str],
    normalize: bool,
    crop_margin: float,
    dataset_dir: str | Path,
    precision: ResolvedPrecision = "float32",
) -> str:
    images_manifest = (Path(dataset_dir) / "images" / "manifest.json").read_bytes()
    payload: dict[str, Any] = {
        "sources": list(sources),
        "normalize": normalize,
        "crop_margin": crop_margin,
        "images": hashlib.sha256(images_manifest).hexdigest(),
    }
    # fp32 leaves the payload as it was before precision was a setting: caches built then stay valid.
    if precision != "float32":
        payload["precision"] = precision
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class FeatureExtractor:
    """Image shard (by manifest record) -> per-image concatenated tower features, with a reason per image."""

    def __init__(
        self,
        sources: list[str],
        dataset_dir: str,
        crop_margin: float,
        normalize: bool = True,
        batch_size: int = 64,
        device: str | None = None,
        precision: FeaturePrecision = "auto",
        towers: TowerFeatures | None = None,
    ) -> None:
        """``towers``: already built towers to use instead of loading ``sources`` (benchmarks at real sizes)."""
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = resolve_feature_precision(precision, self.device.type)
        features = towers if towers is not None else load_tower_features(sources, normalize=normalize)
        self.features = features.to(self.device).eval()
        self.dataset_dir = dataset_dir
        self.crop_margin = crop_margin
        self.batch_size = batch_size

    @torch.no_grad()
    def embed(self, pixel_values: list[torch.Tensor]) -> torch.Tensor:
        """Concatenated tower features [n, F] as float32, the towers computing in ``self.precision``."""
        dtype = DTYPES[self.precision]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32):
            feats = self.features(pixel_values)
        return feats.float()

    def extract(self, table: pa.Table) -> dict[str, np.ndarray]:
        sample_ids = table["sample_id"].to_pylist()
        out = np.zeros((len(sample_ids), self.features.out_dim), dtype=np.float32)
        reasons = [REASON_OK] * len(sample_ids)
        crops, rows = [], []
        for row, (data, bbox) in enumerate(
            zip(table["image"].to_pylist(), table["bbox"].to_pylist(), strict=True)
        ):
            if not valid_bbox(bbox):
                reasons[row] = "bad_bbox"
                continue
            image = decode_image(data) if data else None
            if image is None:
                reasons[row] = "undecodable_image"
                continue
            crops.append(face_crop(image, bbox, self.crop_margin))
            rows.append(row)
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size]
            feats = self.embed(self.features.pixel_values(chunk))
            out[rows[start : start + len(chunk)]] = feats.cpu().numpy()
        return {
            "sample_id": np.asarray(sample_ids, dtype=object),
            "identity_id": np.asarray(table["identity_id"].to_pylist(), dtype=object),
            "features": out,
            "reason": np.asarray(reasons, dtype=object),
        }

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        """Ray Data entry point: ``batch["shard"]`` holds JSON manifest records of image shards."""
        parts = [self.extract(read_image_shard(self.dataset_dir, json.loads(s))) for s in batch["shard"]]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _to_feature_batches(parts: Iterator[dict[str, np.ndarray]], drops: Counter) -> Iterator[pa.RecordBatch]:
    for part in parts:
        reasons = np.asarray(part["reason"], dtype=object)
        keep = reasons == REASON_OK
        drops.update(str(r) for r in reasons[~keep])
        if not keep.any():
            continue
        feats = np.asarray(part["features"], dtype=np.float32)[keep]
        flat = pa.array(feats.reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, feats.size + 1, feats.shape[1], dtype=np.int32))
        yield pa.RecordBatch.from_arrays(
            [
                pa.array([str(s) for s in np.asarray(part["sample_id"], dtype=object)[keep]], pa.string()),
                pa.array([str(s) for s in np.asarray(part["identity_id"], dtype=object)[keep]], pa.string()),
                pa.ListArray.from_arrays(offsets, flat),
            ],
            schema=TRAINING_FEATURES,
        )


def cache_features(
    sources: list[str],
    dataset_dir: str | Path,
    cache_dir: str | Path,
    *,
    crop_margin: float,
    normalize: bool = True,
    batch_size: int = 64,
    use_ray: bool = False,
    concurrency: int = 1,
    num_gpus: float = 0.0,
    progress: bool = True,
    precision: FeaturePrecision = "auto",
    device: str | None = None,
) -> dict[str, Any]:
    """Compute (or reuse) the feature cache in ``cache_dir``; returns its manifest (drops counted by reason).

    The manifest's ``feature_precision`` records the dtype the towers computed in.
    """
    cache_dir = Path(cache_dir)
    if use_ray:  # the actors' device: a GPU when they are given one
        device_type = "cuda" if num_gpus > 0 else "cpu"
    else:
        device_type = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type
    resolved = resolve_feature_precision(precision, device_type)
    config_hash = features_hash(sources, normalize, crop_margin, dataset_dir, resolved)
    if (cache_dir / "manifest.json").is_file():
        manifest = load_manifest(cache_dir)
        if manifest.get("config_hash") == config_hash:  # the hash covers the precision
            return manifest
    records = image_shard_records(dataset_dir)
    items = [{"shard": json.dumps(r)} for r in records]
    kwargs = dict(
        sources=list(sources),
        dataset_dir=str(dataset_dir),
        crop_margin=crop_margin,
        normalize=normalize,
        batch_size=batch_size,
        precision=resolved,
    )
    if use_ray:
        import ray

        dataset = ray.data.from_items(items).map_batches(
            FeatureExtractor,
            fn_constructor_kwargs=kwargs,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_gpus=num_gpus,
        )
        parts: Iterator[dict[str, np.ndarray]] = dataset.iter_batches(batch_size=None, batch_format="numpy")
    else:
        extractor = FeatureExtractor(**kwargs, device=device)
        parts = (extractor({"shard": [item["shard"]]}) for item in items)
    drops: Counter = Counter()
    batches = _to_feature_batches(
        tqdm(parts, desc="features", unit="shard", total=len(items), disable=not progress), drops
    )
    rows_in = sum(int(r["rows"]) for r in records)
    return write_shards(
        batches,
        cache_dir,
        schema=TRAINING_FEATURES,
        config_hash=config_hash,
        rows_in=rows_in,
        drops=drops,
        extra={"feature_precision": resolved},
    )


def read_features(cache_dir: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(sample_ids, identity_ids, features [n, F] float32) of a feature cache.

    Each shard's chunk is copied once, straight into one preallocated matrix: at LAION scale the cache is the
    biggest thing training holds, and combining the chunks and then casting would hold up to three copies.
    """
    table = read_shards(cache_dir)
    column = table["features"]
    chunks = [chunk for chunk in column.chunks if len(chunk)]
    if not chunks:
        return [], [], np.zeros((0, 0), dtype=np.float32)
    dim = len(chunks[0].flatten()) // len(chunks[0])
    feats = np.empty((len(column), dim), dtype=np.float32)
    start = 0
    for chunk in chunks:
        flat = chunk.flatten().to_numpy(zero_copy_only=False)  # honours the chunk's slice offset
        feats[start : start + len(chunk)] = flat.reshape(len(chunk), dim)
        start += len(chunk)
    return table["sample_id"].to_pylist(), table["identity_id"].to_pylist(), feats
