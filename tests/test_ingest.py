"""Ingest logic without Ray: column aliases, stable ids, and every drop counted by reason."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laioncele.config import IngestConfig
from laioncele.ingest import clean_batch, plan_units, read_unit, resolve_columns, sample_ids
from laioncele.synth.laion import generate_laion_table

REPO = Path(__file__).resolve().parents[1]


def test_upper_and_lower_case_laion_columns() -> None:
    upper = resolve_columns(["URL", "TEXT", "WIDTH", "HEIGHT", "similarity", "LANGUAGE"])
    assert upper == {
        "url": "URL",
        "caption": "TEXT",
        "width": "WIDTH",
        "height": "HEIGHT",
        "similarity": "similarity",
        "language": "LANGUAGE",
    }
    lower = resolve_columns(["url", "caption", "punsafe"])
    assert lower == {"url": "url", "caption": "caption", "punsafe": "punsafe"}
    with pytest.raises(ValueError, match="url"):
        resolve_columns(["TEXT", "WIDTH"])


def test_laion_licence_column_is_kept_and_absent_is_null() -> None:
    """LAION-400M ships LICENSE: ingest keeps it (the exports carry it to users); files without it give nulls."""
    raw = pa.table(
        {
            "URL": ["https://a/1.jpg", "https://a/2.jpg"],
            "TEXT": ["Tom Hanks at the premiere", "a cat"],
            "LICENSE": ["CC-BY-4.0", "?"],
        }
    )
    assert resolve_columns(raw.column_names)["license"] == "LICENSE"
    kept = clean_batch(raw, IngestConfig(min_width=0)).table
    assert kept.column("license").to_pylist() == ["CC-BY-4.0", "?"]
    without = clean_batch(raw.drop_columns(["LICENSE"]), IngestConfig(min_width=0)).table
    assert without.column("license").null_count == without.num_rows == 2


def test_carry_columns_keeps_the_target_order_and_nulls_unknown_keys() -> None:
    from laioncele.io.schema import DOWNLOAD, carry_columns

    source = pa.table(
        {"sample_id": ["a", "b", "c"], "language": ["en", None, "de"], "license": ["x", "y", "z"]}
    )
    target = pa.table({"sample_id": ["c", "z", "a"], "language": pa.nulls(3, pa.string())})
    target = target.append_column(DOWNLOAD.field("license"), pa.nulls(3, pa.string()))
    out = carry_columns(target, source, ("language", "license"))
    assert out.column("language").to_pylist() == ["de", None, "en"]
    assert out.column("license").to_pylist() == ["z", None, "x"]


def test_sample_id_is_stable_and_url_specific() -> None:
    a = sample_ids(pa.array(["https://a/1.jpg", "https://a/2.jpg", "https://a/1.jpg"])).to_pylist()
    assert a[0] == a[2] != a[1] and all(len(x) == 16 for x in a)
    assert sample_ids(pa.array(["https://a/1.jpg"])).to_pylist()[0] == a[0]


def test_sample_ids_are_sha256_prefixes_with_nulls_slices_and_chunks() -> None:
    urls = [f"https://example.org/{i}.jpg" for i in range(50)] + [None, "https://x/é.jpg", None, ""]

    def expected(values: list[str | None]) -> list[str | None]:
        return [None if u is None else hashlib.sha256(u.encode()).hexdigest()[:16] for u in values]

    ids = sample_ids(pa.array(urls))
    assert ids.type == pa.string() and ids.to_pylist() == expected(urls) and ids.null_count == 2
    ids.validate(full=True)
    assert sample_ids(pa.array(urls).slice(45, 7)).to_pylist() == expected(urls[45:52])
    chunked = pa.chunked_array([pa.array(urls[:30]), pa.array(urls[30:], pa.string())])
    assert sample_ids(chunked).to_pylist() == expected(urls)
    assert sample_ids(pa.array(urls, pa.large_string())).to_pylist() == expected(urls)
    assert sample_ids(pa.array([], pa.string())).to_pylist() == []


def test_clean_batch_of_a_sliced_table_equals_the_same_rows_copied() -> None:
    """Masks and sizes are read from Arrow buffers: a table slice (arrays with an offset, nulls) gives the same
    rows and drop counts as a fresh copy of those rows."""
    raw = generate_laion_table(5000, seed=11)
    width = raw.column("WIDTH").to_pylist()
    width[1234:1300] = [None] * 66
    raw = raw.set_column(
        raw.schema.get_field_index("WIDTH"), "WIDTH", pa.array(width, raw.schema.field("WIDTH").type)
    )
    sliced = raw.slice(1001, 2999)
    copied = pa.Table.from_pylist(sliced.to_pylist(), schema=raw.schema)
    config = IngestConfig(min_width=300, min_height=300)
    a, b = clean_batch(sliced, config), clean_batch(copied, config)
    assert a.drops == b.drops and a.drops["below_min_size"] > 0
    for name in a.table.column_names:  # repr: NaN similarities compare equal
        assert [repr(v) for v in a.table.column(name).to_pylist()] == [
            repr(v) for v in b.table.column(name).to_pylist()
        ], name
    assert a.table.num_rows + sum(a.drops.values()) == 2999


def test_each_bad_row_is_dropped_once_with_its_reason() -> None:
    raw = pa.table(
        {
            "URL": [
                "https://a/1.jpg",
                None,
                "",
                "https://a/4.jpg",
                "https://a/5.jpg",
                "https://a/6.jpg",
                "https://a/1.jpg",
                "https://a/8.jpg",
            ],
            "TEXT": pa.array(
                [b"Brad Pitt", b"no url", b"empty url", b"   ", b"bad \xff utf8", b"tiny", b"dup", None],
                pa.binary(),
            ),
            "WIDTH": [640, 640, 640, 640, 640, 20, 640, 640],
            "HEIGHT": [480, 480, 480, 480, 480, 480, 480, 480],
        }
    )
    result = clean_batch(raw, IngestConfig(min_width=64))
    assert result.drops == {
        "missing_url": 2,
        "empty_caption": 2,
        "undecodable_caption": 1,
        "below_min_size": 1,
        "duplicate_url": 1,
    }
    assert result.table.column("caption").to_pylist() == ["Brad Pitt"]
    assert result.table.column("width").to_pylist() == [640]
    assert result.table.column("language").null_count == 1  # column absent in the input: nulls


def test_missing_optional_columns_are_tolerated() -> None:
    result = clean_batch(pa.table({"url": ["https://a/1.jpg"], "text": ["  Kate Middleton  "]}))
    row = result.table.to_pylist()[0]
    assert row["caption"] == "Kate Middleton" and row["width"] is None and row["similarity"] is None


def test_generated_laion_counts_add_up() -> None:
    raw = generate_laion_table(20_000, seed=3)
    result = clean_batch(raw, IngestConfig(min_width=16))
    assert result.table.num_rows + sum(result.drops.values()) == 20_000
    assert set(result.drops) == {
        "missing_url",
        "empty_caption",
        "undecodable_caption",
        "below_min_size",
        "duplicate_url",
    }
    assert len(set(result.table.column("sample_id").to_pylist())) == result.table.num_rows


def test_plan_units_covers_every_row_group_once(tmp_path: Path) -> None:
    for i in range(2):
        pq.write_table(generate_laion_table(2500, seed=i), tmp_path / f"p{i}.parquet", row_group_size=400)
    units = plan_units([str(tmp_path)], rows_per_unit=1000)
    assert sum(u.rows for u in units) == 5000
    assert sum(read_unit(u).num_rows for u in units) == 5000
    assert len({u.unit_id for u in units}) == len(units)
    capped = plan_units([str(tmp_path / "*.parquet")], rows_per_unit=1000, max_rows=1100)
    assert sum(read_unit(u).num_rows for u in capped) == 1100
    with pytest.raises(ValueError, match="does not exist"):
        plan_units([str(tmp_path / "missing.parquet")], 10)


def test_an_ingest_unit_imports_no_heavy_library(tmp_path: Path) -> None:
    """A fresh Ray worker pays for every module the ingest task imports before its first unit: running one
    unit through the stage's task loads neither pandas (pyarrow's shim loads it on pa.array / to_numpy /
    Python scalars in compute calls) nor the model libraries other stages use."""
    parquet = tmp_path / "in.parquet"
    pq.write_table(generate_laion_table(3000, seed=5), parquet, row_group_size=1000)
    code = f"""
import json, sys
from laioncele.config import load_config
from pipelines.stages.ingest import IngestTask, plan
config = load_config(None, ["input.paths=[{parquet}]", "ingest.rows_per_unit=1000", "run.output_root={tmp_path}"])
unit = plan(config, None)[0]
task = IngestTask(config.model_dump(mode="json"), "{tmp_path / "ingest"}", "hash")
result = task({{"unit_id": [unit.unit_id], "payload": [json.dumps(unit.payload)]}})
print(json.dumps({{"error": result["error"][0], "modules": sorted(sys.modules)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["error"] == ""
    loaded = {name.split(".")[0] for name in report["modules"]}
    assert not loaded & {
        "pandas",
        "spacy",
        "torch",
        "transformers",
        "insightface",
        "img2dataset",
        "onnxruntime",
    }
    assert "ray.data" not in report["modules"]
