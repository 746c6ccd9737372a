"""``python -m pipelines remove --names FILE`` on the synthetic run with all three exports: the named person
goes from the dataset and every export (also from a couple photo of someone else), the manifests, commit
records, exports' indexes and the card follow, and every shard or export file without them keeps its bytes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from dataset_fixture import build_fake_dataset

from laioncele.config import load_config
from laioncele.export import EXPORT_MANIFEST, write_hf, write_parquet, write_webdataset
from laioncele.io import schema
from laioncele.io.shards import completed_units, load_manifest, read_shards, write_shards
from laioncele.removal import REASON_CAPTION, REASON_IDENTITY, read_names
from laioncele.report.dataset_card import CARD_NAME
from pipelines.cli import main as cli_main
from pipelines.stages.dataset import write_top_manifest

REMOVED_ID, REMOVED_NAME = "person_03", "Person 3"
COUPLE_ID = "person_04"  # one of its photos is captioned with both names
SHARD_BYTES = 60_000


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(folder.glob(pattern))}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("removal")
    truth = build_fake_dataset(root, n_identities=6, seed=11)
    dataset = truth.run_dir / "dataset"
    rows = read_shards(dataset / "images").to_pylist()
    couple = next(r for r in rows if r["identity_id"] == COUPLE_ID)
    couple["caption"] = f"Person 4 and {REMOVED_NAME.upper()} at the premiere"
    write_shards(
        pa.Table.from_pylist(rows, schema=schema.DATASET_IMAGES),
        dataset / "images",
        schema=schema.DATASET_IMAGES,
        config_hash="hash-dataset",
        rows_per_shard=16,
    )
    write_top_manifest(load_config(None, [f"run.output_root={truth.run_dir}", "run.name=fake"]))
    exports = {
        "webdataset": (write_webdataset(dataset, root / "wds", shard_bytes=SHARD_BYTES), "*.tar"),
        "hf": (write_hf(dataset, root / "hf", shard_bytes=SHARD_BYTES), "data-*.arrow"),
        "parquet": (write_parquet(dataset, root / "pq", shard_bytes=SHARD_BYTES), "*.parquet"),
    }
    removed = {r["sample_id"] for r in rows if r["identity_id"] == REMOVED_ID} | {couple["sample_id"]}
    before = {
        "images": load_manifest(dataset / "images"),
        "identities": read_shards(dataset / "identities").to_pylist(),
        "exports": {fmt: snapshot(Path(rep.out_dir), pat) for fmt, (rep, pat) in exports.items()},
        "export_keys": {fmt: _file_keys(Path(rep.out_dir), fmt) for fmt, (rep, _) in exports.items()},
    }
    names_file = root / "removal_request.txt"
    names_file.write_text(f"# request 2026-12-01\n\n  {REMOVED_NAME.lower()}  \n")
    code = cli_main(["remove", "--names", str(names_file), "--set", f"run.output_root={truth.run_dir}"])
    return {
        "code": code,
        "truth": truth,
        "dataset": dataset,
        "rows": rows,
        "removed": removed,
        "couple": couple["sample_id"],
        "before": before,
        "exports": {fmt: (Path(rep.out_dir), pat) for fmt, (rep, pat) in exports.items()},
        "names_file": names_file,
    }


def _file_keys(out: Path, fmt: str) -> dict[str, set[str]]:
    """Export file -> the sample keys it holds, read back with pyarrow / tarfile."""
    import tarfile

    import pyarrow.parquet as pq

    keys: dict[str, set[str]] = {}
    for record in json.loads((out / EXPORT_MANIFEST).read_text())["files"]:
        path = out / record["name"]
        if fmt == "webdataset":
            with tarfile.open(path) as tar:
                keys[record["name"]] = {m.name.split(".", 1)[0] for m in tar.getmembers()}
        elif fmt == "parquet":
            keys[record["name"]] = set(pq.read_table(path, columns=["key"]).column(0).to_pylist())
        else:
            with pa.memory_map(str(path)) as source:
                keys[record["name"]] = set(pa.ipc.open_stream(source).read_all().column("key").to_pylist())
    return keys


def test_names_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text("# two requests\n\n  Jane Doe \n#John Roe\nZoë Saldaña\n", encoding="utf-8")
    assert read_names(path) == ["Jane Doe", "Zoë Saldaña"]


def test_remove_drops_the_person_and_keeps_other_shards_byte_identical(run: dict) -> None:
    assert run["code"] == 0
    dataset, removed = run["dataset"], run["removed"]
    images_dir = dataset / "images"
    after = load_manifest(images_dir)
    by_sample = {r["sample_id"]: r for r in run["rows"]}
    old_shards = {s["name"]: s for s in run["before"]["images"]["shards"]}
    kept_names = 0
    for old in run["before"]["images"]["shards"]:
        path = images_dir / old["name"]
        if path.is_file():
            kept_names += 1
            assert sha(path) == old["sha256"]  # untouched shards: same name, same bytes
    touched = [s for s in after["shards"] if s["name"] not in old_shards]
    assert touched and kept_names > 0 and kept_names == len(after["shards"]) - len(touched)
    assert all("-rm1" in s["name"] for s in touched)

    images = read_shards(images_dir)  # checksums of every shard verified
    ids = set(images.column("sample_id").to_pylist())
    assert not ids & removed and ids == set(by_sample) - removed
    assert after["rows"] == len(by_sample) - len(removed)
    assert after["drops"] == {REASON_IDENTITY: len(removed) - 1, REASON_CAPTION: 1}
    # A resume of the dataset stage sees every unit complete, so it cannot bring the rows back.
    assert set(completed_units(images_dir, "hash-dataset")) == {u["unit"] for u in after["shards"]}

    identities = {r["identity_id"]: r for r in read_shards(dataset / "identities").to_pylist()}
    before_ids = {r["identity_id"]: r for r in run["before"]["identities"]}
    assert REMOVED_ID not in identities and set(identities) == set(before_ids) - {REMOVED_ID}
    assert identities[COUPLE_ID]["n_images"] == before_ids[COUPLE_ID]["n_images"] - 1
    assert identities["person_00"] == before_ids["person_00"]
    # F_mean is the mean over the remaining identities' targets, without the removed one's.
    remaining = np.stack(
        [np.asarray(r["name_embedding"], np.float32).reshape(8, 4) for r in identities.values()]
    )
    np.testing.assert_allclose(
        np.load(dataset / "mean_name_embedding.npy"), remaining.mean(axis=0), rtol=1e-6
    )

    top = json.loads((dataset / "manifest.json").read_text())
    assert top["parts"]["images"]["rows"] == after["rows"]
    assert top["parts"]["identities"]["rows"] == len(identities)
    card = (dataset / CARD_NAME).read_text()
    assert f"| 1 | 1 | {len(removed)} |" in card
    assert f"**{len(identities)}** identities, **{after['rows']}** images" in card


@pytest.mark.parametrize("fmt", ["webdataset", "hf", "parquet"])
def test_remove_rewrites_only_the_export_files_holding_the_person(run: dict, fmt: str) -> None:
    out, pattern = run["exports"][fmt]
    before = run["before"]["exports"][fmt]
    keys_before = run["before"]["export_keys"][fmt]
    after = snapshot(out, pattern)
    holding = [name for name, keys in keys_before.items() if keys & run["removed"]]
    assert 0 < len(holding) < len(keys_before)  # some files must change, some must not
    for name, digest in before.items():
        if keys_before[name] & run["removed"]:
            assert name not in after  # replaced by a -rm1 file
        else:
            assert after[name] == digest
    manifest = json.loads((out / EXPORT_MANIFEST).read_text())
    assert sorted(f["name"] for f in manifest["files"]) == sorted(after)
    for record in manifest["files"]:
        assert sha(out / record["name"]) == record["sha256"]
    exported = set().union(*keys_before.values())
    assert len(exported & run["removed"]) == len(run["removed"])  # the removed rows were all exported
    assert manifest["rows"] == len(exported) - len(run["removed"])
    assert manifest["removed"] == {REASON_IDENTITY: len(run["removed"])}
    assert _loaded_keys(out, fmt) == exported - run["removed"]


def _loaded_keys(out: Path, fmt: str) -> set[str]:
    """The sample keys the real loaders see after the removal."""
    if fmt == "webdataset":
        import webdataset as wds

        urls = [str(out / f["name"]) for f in json.loads((out / EXPORT_MANIFEST).read_text())["files"]]
        return {s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)}
    import datasets

    if fmt == "hf":
        return set(datasets.load_from_disk(str(out))["key"])
    files = sorted(str(p) for p in out.glob("*.parquet"))
    return set(
        datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(out / ".c"))["key"]
    )


def test_remove_again_changes_nothing(run: dict) -> None:
    dataset = run["dataset"]
    shards = snapshot(dataset / "images", "*.arrow") | snapshot(dataset / "identities", "*.arrow")
    exports = {fmt: snapshot(out, pat) for fmt, (out, pat) in run["exports"].items()}
    args = ["remove", "--names", str(run["names_file"]), "--set", f"run.output_root={run['truth'].run_dir}"]
    assert cli_main(args) == 0
    assert snapshot(dataset / "images", "*.arrow") | snapshot(dataset / "identities", "*.arrow") == shards
    assert {fmt: snapshot(out, pat) for fmt, (out, pat) in run["exports"].items()} == exports
    log = json.loads((dataset / "removals.json").read_text())
    assert [e["images"] for e in log] == [len(run["removed"]), 0]
