"""Shards, commit records and manifests on an S3-compatible store (moto's server on 127.0.0.1).

The store has no rename: a shard goes to a temp key and is then copied. These tests check that an S3 stage
holds the same bytes as a local one, and that a writer killed between the temp upload and the copy leaves
nothing a reader or a resume would take for output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_shards import ingest_rows  # the same rows as the local shard tests

from laioncele.config import StorageConfig
from laioncele.io import schema, storage
from laioncele.io.shards import (
    ShardError,
    completed_units,
    finalize_stage,
    read_shards,
    write_shards,
    write_unit,
)

REPO = Path(__file__).resolve().parents[1]
BUCKET = "laioncele-test"


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
