"""Trainer-ready exports, loaded back with the real libraries: webdataset and wids for the tars, ``datasets``
(its own Image and Array2D decoding) for the hf directory and the parquet files.

The source is the synthetic run of ``dataset_fixture`` (real JPEG bytes, real shard format) with two more bad
rows: one image of an identity the identities table does not hold, one JPEG whose header is garbage. With the
fixture's own non-JPEG row, every export must skip exactly those three, each under its reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from dataset_fixture import build_fake_dataset
from test_object_store import BUCKET, s3_endpoint  # noqa: F401  (moto's S3 server on 127.0.0.1)

from laioncele.export import (
    EXPORT_MANIFEST,
    EXPORTS_REGISTRY,
    WIDS_INDEX,
    write_hf,
    write_parquet,
    write_webdataset,
)
from laioncele.io import schema, storage
from laioncele.io.shards import TMP_PREFIX, read_shards, write_shards
from pipelines.cli import main as cli_main

SHARD_BYTES = 60_000  # a few tars / files from the ~50 small fixture images
EXPECTED_SKIPS = {"no_target": 1, "undecodable_image": 1, "unknown_image_format": 1}


def add_bad_rows(dataset: Path) -> None:
    """Rewrite dataset/images with an orphan identity's image and a garbage JPEG appended."""
    images = read_shards(dataset / "images")
    template = images.slice(1, 1).to_pylist()[0]
    orphan = {**template, "sample_id": "ffff000000000001", "identity_id": "nobody_known"}
    garbage = {**template, "sample_id": "ffff000000000002", "image": b"\xff\xd8\xff" + b"\x00garbage" * 8}
    extra = pa.Table.from_pylist([orphan, garbage], schema=schema.DATASET_IMAGES)
    write_shards(
        pa.concat_tables([images, extra]),
        dataset / "images",
        schema=schema.DATASET_IMAGES,
        config_hash="hash-dataset",
        rows_per_shard=16,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict:
    truth = build_fake_dataset(tmp_path_factory.mktemp("export"), n_identities=5, seed=7)
    dataset = truth.run_dir / "dataset"
    add_bad_rows(dataset)
    images = read_shards(dataset / "images")
    identities = read_shards(dataset / "identities")
    by_key = {r["sample_id"]: r for r in images.to_pylist()}
    targets = {
        r["identity_id"]: np.asarray(r["name_embedding"], np.float16).reshape(
            r["num_tokens"], r["embedding_dim"]
        )
        for r in identities.to_pylist()
    }
    names = dict(
        zip(identities.column("identity_id").to_pylist(), identities.column("name").to_pylist(), strict=True)
    )
    return {"run": truth.run_dir, "dataset": dataset, "images": by_key, "targets": targets, "names": names}


def exported_rows(source: dict) -> int:
    return len(source["images"]) - sum(EXPECTED_SKIPS.values())


def check_manifest(out: Path, source: dict, pattern: str) -> dict:
    manifest = json.loads((out / EXPORT_MANIFEST).read_text())
    assert manifest["skipped"] == EXPECTED_SKIPS
    assert manifest["rows"] == exported_rows(source) and manifest["rows_in"] == len(source["images"])
    files = sorted(p.name for p in out.glob(pattern))
    assert files == [f["name"] for f in manifest["files"]] and len(files) > 1
    for record in manifest["files"]:
        data = (out / record["name"]).read_bytes()
        assert len(data) == record["bytes"] and hashlib.sha256(data).hexdigest() == record["sha256"]
    assert not list(out.glob(f"{TMP_PREFIX}*"))
    registry = json.loads((source["dataset"] / EXPORTS_REGISTRY).read_text())
    assert str(out.resolve()) in registry[manifest["format"]]
    return manifest


def test_webdataset_export_loads_with_webdataset_and_wids(source: dict, tmp_path: Path) -> None:
    import webdataset as wds
    import wids

    out = tmp_path / "wds"
    report = write_webdataset(source["dataset"], out, shard_bytes=SHARD_BYTES)
    assert report.skipped == EXPECTED_SKIPS
    manifest = check_manifest(out, source, "*.tar")
    # Sized by the target: every tar but the last holds at least shard_bytes of image + target bytes.
    for record in manifest["files"][:-1]:
        assert record["bytes"] >= SHARD_BYTES

    urls = [str(out / f["name"]) for f in manifest["files"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    raw = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False)}
    assert len(samples) == len(raw) == exported_rows(source)
    assert "nobody_known" not in {json.loads(s["json"])["identity_id"] for s in raw.values()}

    sample = samples[3]
    row = source["images"][sample["__key__"]]
    assert raw[sample["__key__"]]["jpg"] == row["image"]  # the stored bytes, not re-encoded
    assert sample["jpg"].size == (row["width"], row["height"])
    meta = sample["json"]
    assert meta["identity_id"] == row["identity_id"] and meta["url"] == row["url"]
    assert meta["name"] == source["names"][row["identity_id"]] and meta["caption"] == row["caption"]
    assert meta["bbox"] == pytest.approx(row["bbox"])
    assert meta["license"] == row["license"] is not None  # the licence LAION carries travels with the image
    target = sample["npy"]
    assert target.dtype == np.float16
    np.testing.assert_array_equal(target, source["targets"][row["identity_id"]])

    indexed = wids.ShardListDataset(str(out / WIDS_INDEX))
    assert len(indexed) == exported_rows(source)
    item = indexed[len(indexed) - 1]
    np.testing.assert_array_equal(item[".npy"], source["targets"][item[".json"]["identity_id"]])


def test_hf_export_loads_from_disk_with_typed_features(source: dict, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "hf"
    write_hf(source["dataset"], out, shard_bytes=SHARD_BYTES)
    check_manifest(out, source, "data-*.arrow")
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == exported_rows(source)
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["target"] == datasets.Array2D(shape=(8, 4), dtype="float16")

    i = 7
    row = source["images"][ds[i]["key"]]
    decoded = ds[i]["image"]
    assert decoded.size == (row["width"], row["height"])
    raw = ds.cast_column("image", datasets.Image(decode=False))[i]["image"]
    assert raw["bytes"] == row["image"]
    target = ds.with_format("numpy")[i]["target"]
    np.testing.assert_array_equal(target, source["targets"][row["identity_id"]].astype(target.dtype))


def test_parquet_export_loads_with_datasets_and_pyarrow(source: dict, tmp_path: Path) -> None:
    import datasets
    import pyarrow.parquet as pq

    out = tmp_path / "parquet"
    write_parquet(source["dataset"], out, shard_bytes=SHARD_BYTES)
    manifest = check_manifest(out, source, "*.parquet")
    files = [str(out / f["name"]) for f in manifest["files"]]
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == exported_rows(source)

    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == exported_rows(source)
    assert isinstance(ds.features["image"], datasets.Image)
    assert isinstance(ds.features["target"], datasets.Array2D)
    i = len(ds) - 1
    row = source["images"][ds[i]["key"]]
    assert ds[i]["image"].size == (row["width"], row["height"])
    assert ds.cast_column("image", datasets.Image(decode=False))[i]["image"]["bytes"] == row["image"]
    target = ds.with_format("numpy")[i]["target"]
    np.testing.assert_array_equal(target, source["targets"][row["identity_id"]].astype(target.dtype))


def test_cli_export_reports_skips_and_replaces_a_previous_export(
    source: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = [
        "export",
        "--format",
        "webdataset",
        "--out",
        str(out),
        "--set",
        f"run.output_root={source['run']}",
    ]
    assert cli_main([*args, "--set", f"export.shard_bytes={SHARD_BYTES}"]) == 0
    printed = capsys.readouterr().out
    assert f"{exported_rows(source)} of {len(source['images'])} rows" in printed
    assert "no_target=1" in printed and "undecodable_image=1" in printed
    assert len(list(out.glob("*.tar"))) > 1
    # One big tar now: the smaller tars of the first export must not linger beside it.
    assert cli_main([*args, "--set", f"export.shard_bytes={1 << 30}"]) == 0
    assert [p.name for p in out.glob("*.tar")] == ["laioncele-000000.tar"]
    assert json.loads((out / EXPORT_MANIFEST).read_text())["rows"] == exported_rows(source)
    with pytest.raises(SystemExit):
        cli_main(["export", "--format", "csv", "--out", str(out)])
    # No dataset built under the output root: an error naming it, exit 1, no traceback.
    assert cli_main(["export", "--format", "hf", "--set", f"run.output_root={tmp_path / 'nothing'}"]) == 1
    assert "has no manifest.json" in capsys.readouterr().err


@pytest.mark.usefixtures("s3_endpoint")
@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_exports_to_an_object_store_hold_the_bytes_of_local_ones(
    source: dict, tmp_path: Path, fmt: str
) -> None:
    """Uploaded files (temp key, then a copy) are the local export's bytes, and no temp key is left behind."""
    writer = write_webdataset if fmt == "webdataset" else write_parquet
    local = writer(source["dataset"], tmp_path / fmt, shard_bytes=SHARD_BYTES)
    remote = writer(source["dataset"], f"s3://{BUCKET}/exports/{fmt}", shard_bytes=SHARD_BYTES)
    assert remote.files == local.files and remote.skipped == EXPECTED_SKIPS
    prefix = storage.as_path(f"s3://{BUCKET}/exports/{fmt}")
    for record in remote.files:
        assert (prefix / record["name"]).read_bytes() == (tmp_path / fmt / record["name"]).read_bytes()
    assert json.loads((prefix / EXPORT_MANIFEST).read_text())["rows"] == exported_rows(source)
    assert not [p for p in prefix.glob("*") if p.name.startswith(TMP_PREFIX)]
