"""Encoder training on CPU: tiny random-weight CLIP towers (built from configs, saved, and loaded by the real
loading code), a synthetic dataset in the real shard format whose targets are a learnable function of the face."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from encoder_training.data import (
    SPLIT_TRAIN,
    SPLIT_VAL_IDENTITY,
    SPLIT_VAL_IMAGE,
    assign_splits,
    face_crop,
    load_identities,
)
from encoder_training.evaluate import name_metrics
from encoder_training.export import load_exported
from encoder_training.features import FeatureExtractor, read_features
from encoder_training.model import build_tiny_towers
from encoder_training.synthetic import write_synthetic_dataset
from encoder_training.train import latest_checkpoint, train
from laioncele.config import load_config
from laioncele.io.schema import DATASET_IMAGES
from laioncele.io.shards import read_shards, write_shards

N_IDENTITIES = 8


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return write_synthetic_dataset(
        tmp_path_factory.mktemp("laioncele") / "dataset", n_identities=N_IDENTITIES
    )


@pytest.fixture(scope="module")
def tower_dirs(tmp_path_factory) -> list[str]:
    return build_tiny_towers(tmp_path_factory.mktemp("towers"), seed=0, projection_dims=(16, 24))


def _config(dataset_dir: Path, out: Path, towers: list[str], *extra: str):
    return load_config(
        None,
        [
            f"run.output_root={out}",
            f"training.dataset_dir={dataset_dir}",
            f"training.tower_models=[{towers[0]}, {towers[1]}]",
            "training.trainer=local",
            "training.crop_margin=0.2",
            "training.hidden_dim=64",
            "training.batch_size=16",
            "training.lr=0.003",
            "training.warmup_steps=10",
            "training.val_identity_fraction=0.0",
            "training.val_image_fraction=0.25",
            "training.progress_bars=false",
            *extra,
        ],
    )


def _n_train(dataset_dir: Path, config) -> int:
    images = read_shards(dataset_dir / "images", columns=["sample_id", "identity_id"])
    tc = config.training
    split = assign_splits(
        images["identity_id"].to_pylist(),
        images["sample_id"].to_pylist(),
        tc.val_identity_fraction,
        tc.val_image_fraction,
        tc.seed,
    )
    return int((split == SPLIT_TRAIN).sum())


def test_cached_training_learns_and_exports(dataset_dir, tower_dirs, tmp_path):
    config = _config(
        dataset_dir,
        tmp_path,
        tower_dirs,
        "training.epochs=25",
        "training.checkpoint_every=50",
        "training.eval_every=50",
    )
    result = train(config)

    assert result.mode == "cached"
    first = np.mean([loss for _, loss in result.history[:3]])
    last = np.mean([loss for _, loss in result.history[-5:]])
    assert first / last >= 5, (first, last)
    held_out = result.metrics["val_image"]
    assert held_out["mse"] * 5 <= first, held_out
    assert held_out["top1"] >= 0.5 > 1 / N_IDENTITIES  # chance is 1/8
    assert held_out["cosine"] > 0.8

    metrics_csv = (tmp_path / "encoder" / "metrics.csv").read_text().splitlines()
    assert metrics_csv[0] == "step,epoch,split,metric,value"
    assert any(",val_image,top1," in line for line in metrics_csv)
    assert list((tmp_path / "encoder" / "tensorboard").glob("events.out.tfevents.*"))

    # The export alone reproduces the trained model's predictions on a face crop.
    model, export_config, mean = load_exported(result.export_dir)
    assert export_config["num_tokens"] == 8 and export_config["embedding_dim"] == 16
    assert mean.shape == (8, 16)
    images = read_shards(dataset_dir / "images")
    crop = face_crop(
        Image.open(io.BytesIO(images["image"][0].as_py())).convert("RGB"),
        images["bbox"][0].as_py(),
        export_config["crop_margin"],
    )
    prediction = model.encode_crops([crop])
    assert prediction.shape == (1, 8, 16)
    sample_ids, _, features = read_features(tmp_path / "encoder" / "features")
    row = sample_ids.index(images["sample_id"][0].as_py())
    from_cache = model.head(torch.from_numpy(features[row : row + 1]))
    torch.testing.assert_close(prediction, from_cache, rtol=1e-4, atol=1e-4)


def test_resume_reproduces_uninterrupted_run_exactly(dataset_dir, tower_dirs, tmp_path):
    common = ("training.epochs=4", "training.checkpoint_every=5")
    straight = train(_config(dataset_dir, tmp_path / "a", tower_dirs, *common))

    interrupted = tmp_path / "b"
    train(_config(dataset_dir, interrupted, tower_dirs, *common, "training.max_steps=13"))
    checkpoints = interrupted / "encoder" / "checkpoints"
    # Simulate a crash after step 13: only the periodic checkpoint of step 10 survives (mid-epoch position).
    latest_checkpoint(checkpoints).unlink()
    assert latest_checkpoint(checkpoints).name == "step-000000010.pt"
    resumed = train(_config(dataset_dir, interrupted, tower_dirs, *common))

    assert resumed.step == straight.step and resumed.history[0][0] == 11
    a = torch.load(latest_checkpoint(tmp_path / "a" / "encoder" / "checkpoints"), weights_only=False)
    b = torch.load(latest_checkpoint(checkpoints), weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pa_state, pb_state in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(pa_state["exp_avg"], pb_state["exp_avg"])
    assert dict(straight.history)[straight.step] == dict(resumed.history)[resumed.step]
    rows = (interrupted / "encoder" / "metrics.csv").read_text().splitlines()[1:]
    steps = [int(r.split(",")[0]) for r in rows if ",train,loss," in r]
    assert steps == sorted(set(steps))  # the rows of the lost steps 11-13 were replaced, not duplicated


def test_end_to_end_with_unfrozen_block_and_augmentation(dataset_dir, tower_dirs, tmp_path):
    config = _config(
        dataset_dir,
        tmp_path,
        tower_dirs,
        "training.unfreeze_last_blocks=1",
        "training.augment=true",
        "training.epochs=1",
        "training.max_steps=4",
        "training.batch_size=8",
    )
    # Stop after 4 steps, then resume to the end of the epoch and export.
    first = train(config)
    assert first.mode == "end_to_end" and first.step == 4 and first.export_dir is None
    finished = train(
        config.model_copy(update={"training": config.training.model_copy(update={"max_steps": None})})
    )
    assert finished.step == -(-_n_train(dataset_dir, config) // 8) and finished.export_dir is not None
    assert all(np.isfinite(loss) for _, loss in first.history + finished.history)

    model, export_config, _ = load_exported(finished.export_dir)
    assert export_config["tower_sources"] == ["towers/tower0", "towers/tower1"]
    head_only, _, _ = load_exported(finished.export_dir, load_towers=False)
    from encoder_training.model import load_tower

    base, _ = load_tower(tower_dirs[0])
    tuned = model.features.towers[0]
    last, first_block = tuned.vision_model.encoder.layers[-1], tuned.vision_model.encoder.layers[0]
    assert not torch.equal(last.mlp.fc1.weight, base.vision_model.encoder.layers[-1].mlp.fc1.weight)
    assert torch.equal(first_block.mlp.fc1.weight, base.vision_model.encoder.layers[0].mlp.fc1.weight)
    assert head_only.features is None


def test_splits_hold_out_identities_and_images():
    identity_ids = [f"id{i % 20}" for i in range(400)]
    sample_ids = [f"s{i}" for i in range(400)]
    split = assign_splits(identity_ids, sample_ids, 0.2, 0.2, seed=3)
    assert np.array_equal(split, assign_splits(identity_ids, sample_ids, 0.2, 0.2, seed=3))
    held = {i for i, s in zip(identity_ids, split, strict=True) if s == SPLIT_VAL_IDENTITY}
    assert 0 < len(held) < 20
    for identity in set(identity_ids):
        splits = {s for i, s in zip(identity_ids, split, strict=True) if i == identity}
        assert splits == {SPLIT_VAL_IDENTITY} if identity in held else SPLIT_TRAIN in splits
    assert (split == SPLIT_VAL_IMAGE).sum() > 0


def test_bad_images_are_counted_not_fatal(dataset_dir, tower_dirs):
    images = read_shards(dataset_dir / "images").slice(0, 3)
    rows = images.to_pylist()
    rows[1]["image"] = b"not an image"
    rows[2]["bbox"] = [10.0, 10.0, 5.0, 30.0]  # x2 < x1
    extractor = FeatureExtractor(tower_dirs, str(dataset_dir), crop_margin=0.2, batch_size=2, device="cpu")
    out = extractor.extract(pa.Table.from_pylist(rows, schema=DATASET_IMAGES))
    assert list(out["reason"]) == ["ok", "undecodable_image", "bad_bbox"]
    assert out["features"].shape == (3, 40) and np.abs(out["features"][0]).sum() > 0


def test_identities_with_bad_targets_are_dropped(dataset_dir, tmp_path):
    table = read_shards(dataset_dir / "identities")
    rows = table.to_pylist()
    rows[0]["name_embedding"] = rows[0]["name_embedding"][:-1]
    rows[1]["identity_id"] = rows[2]["identity_id"]
    write_shards(
        pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "identities", schema=table.schema
    )
    identities = load_identities(tmp_path)
    assert identities.drops == {"identity_bad_embedding_length": 1, "identity_duplicate": 1}
    assert identities.targets.shape == (N_IDENTITIES - 2, 8, 16)


def test_name_metrics_retrieval():
    targets = torch.randn(6, 8, 16)
    index = torch.tensor([0, 1, 2, 3, 4, 5, 0])
    perfect = name_metrics(targets[index], index, targets)
    assert perfect["mse"] == 0 and perfect["top1"] == 1 and perfect["cosine"] == pytest.approx(1)
    # Identities on a line; every prediction sits on identity 5: identity k ranks 6 - k.
    line = torch.arange(6, dtype=torch.float32)[:, None, None].expand(6, 8, 16)
    rows = torch.arange(6)
    collapsed = name_metrics(line[[5] * 6], rows, line)
    assert collapsed["top1"] == pytest.approx(1 / 6) and collapsed["top5"] == pytest.approx(5 / 6)


def test_cli_fails_clearly_without_dataset(tmp_path, capsys):
    from encoder_training.__main__ import main

    assert main(["train", "--set", f"run.output_root={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "no finished LaionCele dataset" in err and "make build-dataset" in err
    assert main(["train", "--set", "training.no_such_key=1"]) == 2
    assert "unknown config key 'training.no_such_key'" in capsys.readouterr().err


@pytest.mark.ray
def test_ray_train_single_cpu_worker(ray_local, dataset_dir, tower_dirs, tmp_path):
    config = _config(
        dataset_dir,
        tmp_path,
        tower_dirs,
        "training.trainer=ray",
        "training.num_workers=1",
        "training.epochs=2",
        "training.feature_concurrency=1",
    )
    result = train(config)
    assert result.step == 2 * -(-_n_train(dataset_dir, config) // 16) and result.export_dir is not None
    assert result.history[-1][1] < result.history[0][1]
    model, _, _ = load_exported(result.export_dir)
    assert model.head.layers[0].in_features == 40
