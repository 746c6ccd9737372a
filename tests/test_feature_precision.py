"""Feature-cache precision: bf16 autocast towers agree with fp32, and the cache records what it was built with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encoder_training.features import (
    FeatureExtractor,
    cache_features,
    features_hash,
    read_features,
    resolve_feature_precision,
)
from encoder_training.model import build_tiny_towers
from encoder_training.synthetic import write_synthetic_dataset
from encoder_training.train import RowGatherer
from laioncele.config import load_config
from laioncele.io.shards import load_manifest, read_shards


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return write_synthetic_dataset(
        tmp_path_factory.mktemp("precision") / "dataset", n_identities=3, images_per_identity=4
    )


@pytest.fixture(scope="module")
def tower_dirs(tmp_path_factory) -> list[str]:
    return build_tiny_towers(tmp_path_factory.mktemp("towers"), seed=0, projection_dims=(16, 24))


def _extract(tower_dirs, dataset_dir, precision: str) -> np.ndarray:
    extractor = FeatureExtractor(
        tower_dirs, str(dataset_dir), crop_margin=0.2, batch_size=4, device="cpu", precision=precision
    )
    out = extractor.extract(read_shards(dataset_dir / "images"))
    assert list(out["reason"]) == ["ok"] * len(out["reason"])
    assert out["features"].dtype == np.float32
    return out["features"]


def test_resolve_feature_precision():
    assert resolve_feature_precision("auto", "cpu") == "float32"
    assert resolve_feature_precision("auto", "cuda") in ("bfloat16", "float16")
    if not torch.cuda.is_available():  # a driver without CUDA scheduling GPU actors assumes bf16
        assert resolve_feature_precision("auto", "cuda") == "bfloat16"
    for explicit in ("float32", "bfloat16", "float16"):
        assert resolve_feature_precision(explicit, "cpu") == explicit
    with pytest.raises(ValueError, match="feature precision"):
        resolve_feature_precision("int8", "cpu")
    assert load_config(None, ["training.feature_precision=bfloat16"]).training.feature_precision == "bfloat16"
    with pytest.raises(ValueError):
        load_config(None, ["training.feature_precision=fp8"])


def test_bf16_features_close_to_fp32_and_auto_is_fp32_on_cpu(tower_dirs, dataset_dir):
    fp32 = _extract(tower_dirs, dataset_dir, "float32")
    bf16 = _extract(tower_dirs, dataset_dir, "bfloat16")
    auto = _extract(tower_dirs, dataset_dir, "auto")

    np.testing.assert_array_equal(auto, fp32)  # auto on CPU is the fp32 path, bit for bit
    assert not np.array_equal(bf16, fp32)  # autocast really ran in bf16
    cosine = (bf16 * fp32).sum(axis=1) / (np.linalg.norm(bf16, axis=1) * np.linalg.norm(fp32, axis=1))
    assert cosine.min() > 0.99, cosine


def test_cache_records_precision_and_rebuilds_when_it_changes(tower_dirs, dataset_dir, tmp_path):
    cache = tmp_path / "features"
    kwargs = dict(crop_margin=0.2, batch_size=8, progress=False, device="cpu")
    auto = cache_features(tower_dirs, dataset_dir, cache, precision="auto", **kwargs)
    assert auto["feature_precision"] == "float32" == load_manifest(cache)["feature_precision"]
    # fp32 keeps the hash of caches built before precision was a setting: those stay valid.
    assert auto["config_hash"] == features_hash(tower_dirs, True, 0.2, dataset_dir)
    _, _, fp32_features = read_features(cache)

    bf16 = cache_features(tower_dirs, dataset_dir, cache, precision="bfloat16", **kwargs)
    assert bf16["feature_precision"] == "bfloat16" == load_manifest(cache)["feature_precision"]
    assert bf16["config_hash"] != auto["config_hash"]
    _, _, bf16_features = read_features(cache)
    assert bf16_features.shape == fp32_features.shape and not np.array_equal(bf16_features, fp32_features)

    # Same precision again: the cache is reused as is (its shard files are untouched).
    shards = [cache / shard["name"] for shard in bf16["shards"]]
    assert shards and all(p.is_file() for p in shards)
    mtimes = [p.stat().st_mtime_ns for p in shards]
    again = cache_features(tower_dirs, dataset_dir, cache, precision="bfloat16", **kwargs)
    assert again["config_hash"] == bf16["config_hash"]
    assert [p.stat().st_mtime_ns for p in shards] == mtimes


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
    ],
)
def test_row_gatherer_matches_numpy(device):
    table = np.random.default_rng(0).standard_normal((50, 3, 4)).astype(np.float32)
    rows = np.array([7, 0, 49, 7, 13])
    gathered = RowGatherer(table, torch.device(device))(rows)
    assert gathered.device.type == device
    np.testing.assert_array_equal(gathered.cpu().numpy(), table[rows])
