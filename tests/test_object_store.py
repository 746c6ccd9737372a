"""Shards, commit records and manifests on an S3-compatible store (moto's server on 127.0.0.1).

The store has no rename: a shard goes to a temp key and is then copied. These tests check that an S3 stage
holds the same bytes as a local one, and that a writer killed between the temp upload and the copy leaves
nothing a reader or a resume would take for output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from polars.testing import assert_frame_equal
from sample_build import DIRS, SIDE_DIRS, cli_args, fingerprint
from test_shards import ingest_rows  # the same rows as the local shard tests

from laioncele.config import StorageConfig
from laioncele.io import schema, storage
from laioncele.io.shards import (
    MANIFEST_NAME,
    TMP_PREFIX,
    UNITS_DIR,
    ShardError,
    completed_units,
    finalize_stage,
    load_manifest,
    read_shards,
    write_shards,
    write_unit,
)
from pipelines.cli import main as cli_main
from pipelines.stages import ORDER

REPO = Path(__file__).resolve().parents[1]
BUCKET = "laioncele-test"
S3_CONFIG = "sample-s3.yaml"
S3_ROOT = "s3://laioncele-sample/output/sample"  # the config's own output_root
EXPORT_SHARD_BYTES = 1_000_000  # small, so the export writes several files


def s3_args(endpoint: str, command: str = "run") -> list[str]:
    """The CLI's arguments for the S3 sample with the reference's overrides; the sample server's paths made
    absolute, so the build runs from a scratch directory (Ray's log of an S3 build goes to ./logs/<run>/)."""
    sample = REPO / "sample"
    extra = [f"storage.endpoint_url={endpoint}", f"sample_server.serve_dir={sample}"]
    extra.append(f"sample_server.truth={sample / 'truth.json'}")
    args = cli_args(S3_ROOT, *extra, config=S3_CONFIG)
    return args if command == "run" else [command, *args[2:]]


@pytest.fixture(scope="module")
def s3_endpoint():
    from infra.local_s3 import MOTO_ENV, seed_sample, start_moto

    saved = {k: os.environ.get(k) for k in MOTO_ENV}
    os.environ.update(MOTO_ENV)
    server, endpoint = start_moto(0)
    storage.configure(StorageConfig(endpoint_url=endpoint, region=MOTO_ENV["AWS_DEFAULT_REGION"]))
    seed_sample(endpoint, BUCKET)  # creates the bucket (and uploads the sample metadata)
    yield endpoint
    server.stop()
    storage.configure(StorageConfig())
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_s3_stage_has_the_bytes_of_a_local_stage(s3_endpoint: str, tmp_path: Path) -> None:
    table = ingest_rows(250)
    local = write_shards(table, tmp_path / "ingest", config_hash="h", rows_per_shard=100)
    remote = write_shards(table, f"s3://{BUCKET}/same/ingest", config_hash="h", rows_per_shard=100)
    assert [(s["name"], s["rows"], s["sha256"]) for s in remote["shards"]] == [
        (s["name"], s["rows"], s["sha256"]) for s in local["shards"]
    ]
    assert len(remote["shards"]) == 3
    back = read_shards(f"s3://{BUCKET}/same/ingest")
    assert back.num_rows == 250
    assert back.column("sample_id").to_pylist() == table.column("sample_id").to_pylist()
    listing = storage.as_path(f"s3://{BUCKET}/same/ingest")
    assert not [p for p in listing.glob("*") if p.name.startswith(".tmp-")], "temp keys left behind"


def test_writer_killed_between_upload_and_copy_leaves_no_visible_shard(s3_endpoint: str) -> None:
    out = f"s3://{BUCKET}/killed/ingest"
    write_unit(out, "u0", ingest_rows(20), schema.INGEST, config_hash="h", rows_in=20)
    # A second unit's writer is SIGKILLed right after its shard's temp upload, before the copy.
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from laioncele.io import schema, shards, storage
        from laioncele.config import StorageConfig
        from test_shards import ingest_rows
        storage.configure(StorageConfig(endpoint_url={s3_endpoint!r}, region="us-east-1"))

        def upload_then_die(final, data, tmp_name):
            final.with_name(tmp_name).write_bytes(data)
            os.kill(os.getpid(), signal.SIGKILL)

        shards.temp_key_write = upload_then_die
        shards.write_unit({out!r}, "u1", ingest_rows(20, 100), schema.INGEST, config_hash="h", rows_in=20)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), timeout=120)
    assert proc.returncode == -9
    stage = storage.as_path(out)
    names = [p.name for p in stage.glob("*")]
    assert any(n.startswith(".tmp-part-u1-") for n in names), names  # the kill really came mid-write
    assert not [n for n in names if n.startswith("part-u1-")], names  # ... and no half-visible shard
    assert set(completed_units(out, "h")) == {"u0"}
    with pytest.raises(ShardError):
        read_shards(out)  # no manifest: nothing is read as output
    # Resume: the unit is redone, its stale temp key cleared, the stage reads back whole.
    write_unit(out, "u1", ingest_rows(20, 100), schema.INGEST, config_hash="h", rows_in=20)
    finalize_stage(out, "ingest", schema.INGEST, "h", ["u0", "u1"])
    assert read_shards(out).num_rows == 40
    assert not [p for p in stage.glob("*") if p.name.startswith(".tmp-")]


def test_identity_partition_results_round_trip_on_s3_with_the_local_bytes(
    s3_endpoint: str, tmp_path: Path
) -> None:
    """identity.partitions > 1 keeps each partition's result beside the stage's shards: on S3 it is written
    all-or-nothing (temp key + copy, no rename), reads back equal, and holds the bytes of the local files."""
    from laioncele.identity.clean import clean_identities
    from laioncele.synth.embeddings import SyntheticSpec, generate
    from pipelines.stages.identity import load_partition_result, partition_dir, save_partition_result

    faces = generate(SyntheticSpec(n_names=20, seed=3, mislabel_rate=0.2)).faces
    result = clean_identities(faces)
    local = partition_dir(tmp_path / "identities", 1)
    remote = partition_dir(storage.as_path(f"s3://{BUCKET}/partitions/identities"), 1)
    for path in (local, remote):
        save_partition_result(path, result, faces.num_rows)
    back, total = load_partition_result(remote)
    assert total == faces.num_rows
    for name in ("identities", "images", "names"):
        assert getattr(back, name).equals(getattr(result, name)), name
        assert (remote / f"{name}.arrow").read_bytes() == (local / f"{name}.arrow").read_bytes(), name
    assert back.drops == result.drops and back.stats == result.stats
    assert not [p for p in remote.glob("*") if p.name.startswith(".tmp-")], "temp keys left behind"


# ---------------------------------------------------------------------------------------------- whole build


def _keys(root: storage.ObjectPath) -> dict[str, tuple[int, object]]:
    """Every key under ``root``: (size, last-modified)."""
    selector = pafs.FileSelector(root.key, recursive=True)
    return {
        info.path.removeprefix(root.key + "/"): (info.size, info.mtime)
        for info in root.fs.get_file_info(selector)
        if info.type == pafs.FileType.File
    }


@pytest.fixture(scope="module")
def s3_build(
    s3_endpoint: str, sample_build: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The sample built with configs/sample-s3.yaml (input parquet read from s3://, every stage written to
    s3://) by ``python -m pipelines`` in a subprocess with its own Ray: workers get the store's keys from the
    environment, as on a cluster. Same overrides as the local reference, so the shards must be the same."""
    from infra.local_s3 import MOTO_ENV, seed_sample

    # The local reference's build configured the process for its own config (no endpoint): set this one back.
    settings = StorageConfig(endpoint_url=s3_endpoint, region=MOTO_ENV["AWS_DEFAULT_REGION"])
    storage.configure(settings)
    seed_sample(s3_endpoint)  # the config's bucket and input key
    started = time.monotonic()
    scratch = tmp_path_factory.mktemp("s3-build")
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", *s3_args(s3_endpoint)],
        cwd=scratch,
        env={**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    root = storage.as_path(S3_ROOT, settings)
    return {"root": root, "seconds": time.monotonic() - started, "scratch": scratch}


@pytest.mark.ray
@pytest.mark.slow
def test_whole_sample_on_s3_has_the_shards_of_the_local_build(s3_build: dict, sample_build: Path) -> None:
    """Every stage's output (and the shard tables beside them) on S3: same shard names, rows and sha256s as
    the local build; the same rows in and drops; the same truth check; no temp key left anywhere."""
    root = s3_build["root"]
    dirs = [*DIRS, *SIDE_DIRS]
    assert fingerprint(root, dirs) == fingerprint(sample_build, dirs)
    for directory in dirs:
        remote, local = load_manifest(root / directory), load_manifest(sample_build / directory)
        assert (remote["rows_in"], remote["drops"]) == (local["rows_in"], local["drops"]), directory
    assert load_manifest(root / "faces")["rows"] > 0  # the build really reached the faces
    side_files = ["names/known_names.json", "names/not_people.json", "candidates/kept_pairs.ipc"]
    side_files += ["targets/mean_name_embedding.npy", "dataset/mean_name_embedding.npy"]
    for name in side_files:
        assert (root / name).read_bytes() == (sample_build / name).read_bytes(), name
    remote_truth = json.loads((root / "truth_check.json").read_text())
    assert remote_truth == json.loads((sample_build / "truth_check.json").read_text())
    assert remote_truth["precision"] >= 0.95
    top, ref = (json.loads((d / "dataset" / MANIFEST_NAME).read_text()) for d in (root, sample_build))
    assert {k: v["rows"] for k, v in top["parts"].items()} == {k: v["rows"] for k, v in ref["parts"].items()}
    assert not [k for k in _keys(root) if Path(k).name.startswith(TMP_PREFIX)]


@pytest.mark.ray
@pytest.mark.slow
def test_rerun_of_the_s3_build_is_a_no_op(
    s3_build: dict, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stage is found complete from its S3 manifest: nothing is rewritten (same keys, sizes and
    last-modified times of every shard, commit record and manifest), no key added or removed."""
    before = _keys(s3_build["root"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # In this process (its Ray's workers hold no S3 keys): nothing may need a worker.
        monkeypatch.chdir(s3_build["scratch"])
        code = cli_main(s3_args(s3_endpoint))
    assert code == 0, out.getvalue()
    skipped = re.findall(r"^\[(\w+)\] already complete", out.getvalue(), flags=re.M)
    assert skipped == list(ORDER), out.getvalue()
    after = _keys(s3_build["root"])
    assert set(after) == set(before)
    # Shards, commit records and stage manifests untouched; the dataset's top manifest and card, the mean
    # embedding copies, the truth check and the report are rewritten by the post-build steps, to the same size.
    committed = [k for k in before if Path(k).name.startswith("part-") or UNITS_DIR in k]
    committed += [k for k in before if k.endswith(MANIFEST_NAME) and k != f"dataset/{MANIFEST_NAME}"]
    assert len(committed) > 30
    assert {k: after[k] for k in committed} == {k: before[k] for k in committed}
    unstamped = [k for k in before if not k.startswith("report/index.html")]
    assert {k: after[k][0] for k in unstamped} == {k: before[k][0] for k in unstamped}


@pytest.mark.ray
@pytest.mark.slow
def test_report_stats_and_card_of_the_s3_build_give_the_local_figures(
    s3_build: dict, sample_build: Path
) -> None:
    """laioncele.report.stats over s3:// (Polars' object-store reader at the configured endpoint) gives the frames
    of the local build; the build's QA report on S3 holds the local report's figures and crops; the dataset
    card on S3 is the local card but for the config hash (its input section names another path)."""
    from laioncele.report import stats

    root = s3_build["root"]
    for question in (
        stats.funnel,
        stats.drop_reasons,
        stats.overview,
        stats.identity_summary,
        stats.similarity_summary,
        stats.language_mix,
        stats.least_pure_identities,
        stats.consistency_checks,
    ):
        remote, local = question(root), question(sample_build)
        assert remote.height > 0, question.__name__
        # Row order of a group-by is not defined (nor the last bits of a float mean over threads).
        assert_frame_equal(remote, local, check_row_order=False), question.__name__
    stamp = re.compile(r"generated [^<]*UTC")
    remote_page, local_page = ((d / "report" / "index.html").read_text() for d in (root, sample_build))
    assert stamp.sub("", remote_page) == stamp.sub("", local_page)
    local_crops = sorted(p.name for p in (sample_build / "report" / "crops").glob("*.jpg"))
    assert local_crops and [p.name for p in (root / "report" / "crops").glob("*.jpg")] == local_crops
    for name in local_crops:
        assert (root / "report" / "crops" / name).read_bytes() == (
            sample_build / "report" / "crops" / name
        ).read_bytes()
    plots = sorted(p.name for p in (sample_build / "report" / "plots").glob("*.png"))
    assert [p.name for p in (root / "report" / "plots").glob("*.png")] == plots
    # The card's config hash covers the input section, and the S3 build reads another path: that line differs.
    config_hash = re.compile(r"(Config hash \(sections [^)]*\): )`[0-9a-f]+`")
    remote_card, local_card = ((d / "dataset" / "README.md").read_text() for d in (root, sample_build))
    assert len(config_hash.findall(remote_card)) == 1
    assert config_hash.sub(r"\1", remote_card) == config_hash.sub(r"\1", local_card)
    assert f"**{json.loads((root / 'truth_check.json').read_text())['kept_images']}** images" in remote_card


@pytest.mark.ray
@pytest.mark.slow
def test_export_of_the_s3_build_to_s3_has_the_local_files(
    s3_build: dict,
    s3_endpoint: str,
    sample_build: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m pipelines export` reads the dataset on S3 and writes its files to S3: the same files, rows
    and sha256s as the export of the local build; export.json last, no temp key."""
    from laioncele.export import export, load_export_manifest

    local_dataset = tmp_path / "dataset"
    shutil.copytree(sample_build / "dataset", local_dataset)  # the export registers itself there
    export("webdataset", local_dataset, tmp_path / "export", shard_bytes=EXPORT_SHARD_BYTES)
    monkeypatch.chdir(s3_build["scratch"])
    args = [*s3_args(s3_endpoint, "export"), "--set", f"export.shard_bytes={EXPORT_SHARD_BYTES}"]
    assert cli_main([*args, "--format", "webdataset"]) == 0
    remote = load_export_manifest(s3_build["root"] / "export" / "webdataset")
    local = load_export_manifest(tmp_path / "export")

    def files(manifest: dict) -> list[tuple[str, int, str]]:
        return [(f["name"], f["rows"], f["sha256"]) for f in manifest["files"]]

    assert len(files(remote)) > 1 and files(remote) == files(local)
    assert not [k for k in _keys(s3_build["root"] / "export") if Path(k).name.startswith(TMP_PREFIX)]
