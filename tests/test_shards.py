"""Shard writer/reader: round trip, corruption and truncation detection, unit-level resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from laioncele.io import schema
from laioncele.io.shards import (
    UNITS_DIR,
    ShardError,
    completed_units,
    finalize_stage,
    read_shards,
    write_shards,
    write_unit,
)


def ingest_rows(n: int, start: int = 0) -> pa.Table:
    ids = [f"{i:016x}" for i in range(start, start + n)]
    table = pa.table(
        {
            "sample_id": ids,
            "url": [f"https://x/{i}.jpg" for i in ids],
            "caption": [f"caption {i}" for i in ids],
            "width": pa.array(np.arange(n, dtype=np.int32)),
            "height": pa.array(np.arange(n, dtype=np.int32)),
        }
    )
    return schema.conform(table, schema.INGEST)


def test_round_trip_splits_into_shards_and_keeps_every_row(tmp_path: Path) -> None:
    table = ingest_rows(2500)
    manifest = write_shards(table, tmp_path / "s", rows_per_shard=1000, config_hash="abc", drops={"x": 3})
    assert [s["rows"] for s in manifest["shards"]] == [1000, 1000, 500]
    assert manifest["rows"] == 2500 and manifest["drops"] == {"x": 3}
    assert manifest["schema"] == {"name": "ingest", "version": 2}
    back = read_shards(tmp_path / "s")
    assert back.equals(table.replace_schema_metadata(back.schema.metadata))
    assert read_shards(tmp_path / "s", columns=["sample_id"]).column_names == ["sample_id"]
    assert not list((tmp_path / "s").glob(".tmp-*"))


def test_stream_of_batches_and_byte_limit(tmp_path: Path) -> None:
    batches = ingest_rows(3000).to_batches(max_chunksize=300)
    manifest = write_shards(iter(batches), tmp_path / "s", bytes_per_shard=20_000)
    assert len(manifest["shards"]) > 2
    assert read_shards(tmp_path / "s").num_rows == 3000


def test_corrupted_shard_is_detected(tmp_path: Path) -> None:
    manifest = write_shards(ingest_rows(500), tmp_path / "s", rows_per_shard=200)
    victim = tmp_path / "s" / manifest["shards"][1]["name"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, flipped byte
    victim.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="checksum"):
        read_shards(tmp_path / "s")


def test_truncated_shard_is_detected(tmp_path: Path) -> None:
    manifest = write_shards(ingest_rows(500), tmp_path / "s", rows_per_shard=200)
    victim = tmp_path / "s" / manifest["shards"][0]["name"]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.raises(ShardError, match="truncated"):
        read_shards(tmp_path / "s")
    # Even without checksum verification, a truncated Arrow file is refused, not half-read.
    manifest["shards"][0]["bytes"] = 100
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="cannot be read"):
        read_shards(tmp_path / "s", verify=False)


def test_missing_manifest_and_schema_version_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="did not finish"):
        read_shards(tmp_path / "nothing")
    write_shards(ingest_rows(10), tmp_path / "s")
    path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema"]["version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="schema"):
        read_shards(tmp_path / "s")


def test_writer_rejects_wrong_schema(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="does not match"):
        write_shards(pa.table({"a": [1]}), tmp_path / "s", schema=schema.INGEST)


def test_resume_redoes_partial_units_only(tmp_path: Path) -> None:
    """Three units; unit 1 crashed after writing a shard but before its commit record, unit 2 never ran."""
    out = tmp_path / "stage"
    parts = {f"u{i}": ingest_rows(300, start=1000 * i) for i in range(3)}
    write_unit(out, "u0", parts["u0"], schema.INGEST, config_hash="h", rows_in=300, rows_per_shard=100)
    write_unit(out, "u1", parts["u1"], schema.INGEST, config_hash="h", rows_in=300, rows_per_shard=100)
    (out / UNITS_DIR / "u1.json").unlink()  # the crash: shards on disk, no commit record
    (out / ".tmp-part-u1-00003.arrow.123").write_bytes(b"half a shard")
    assert set(completed_units(out, "h")) == {"u0"}

    for unit in ("u1", "u2"):  # the re-run does only what is missing
        write_unit(out, unit, parts[unit], schema.INGEST, config_hash="h", rows_in=300, rows_per_shard=100)
    manifest = finalize_stage(out, "ingest", schema.INGEST, "h", ["u0", "u1", "u2"])
    table = read_shards(out)
    assert table.num_rows == 900
    assert len(set(table.column("sample_id").to_pylist())) == 900
    assert manifest["rows_in"] == 900 and len(manifest["shards"]) == 9
    assert not list(out.glob(".tmp-*"))


def test_resume_refuses_outputs_of_another_config(tmp_path: Path) -> None:
    write_unit(tmp_path, "u0", ingest_rows(5), schema.INGEST, config_hash="old", rows_in=5)
    with pytest.raises(ShardError, match="run.overwrite"):
        completed_units(tmp_path, "new")
    assert completed_units(tmp_path, "new", overwrite=True) == {}
    assert not list(tmp_path.glob("part-u0-*"))


def test_unit_missing_a_shard_is_not_complete(tmp_path: Path) -> None:
    record = write_unit(
        tmp_path, "u0", ingest_rows(50), schema.INGEST, config_hash="h", rows_in=50, rows_per_shard=20
    )
    (tmp_path / record.shards[-1].name).unlink()
    assert completed_units(tmp_path, "h") == {}
    with pytest.raises(ShardError, match="not complete"):
        finalize_stage(tmp_path, "ingest", schema.INGEST, "h", ["u0"])


def test_reading_a_dataset_directory_names_its_parts(tmp_path: Path) -> None:
    write_shards(ingest_rows(5), tmp_path / "dataset" / "images", config_hash="h")
    (tmp_path / "dataset" / "manifest.json").write_text(
        json.dumps({"dataset": "LaionCele", "parts": {"images": {}}})
    )
    with pytest.raises(ShardError, match=r"dataset directory, not a stage: .*dataset/images"):
        read_shards(tmp_path / "dataset")
