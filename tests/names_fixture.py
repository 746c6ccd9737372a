"""Runs the four name stages (local executor) on a list of captions: the names table a config gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from laioncele.io.shards import read_shards
from pipelines.cli import main as cli_main


def names_table_of(captions: list[str], out: Path, *settings: str) -> dict[str, dict[str, Any]]:
    """The candidates' names table (by name key) for ``captions`` as LAION rows, built under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    parquet = out / "laion.parquet"
    pq.write_table(
        pa.table({"URL": [f"https://img/{i}.jpg" for i in range(len(captions))], "TEXT": captions}), parquet
    )
    sets = [
        f"input.paths=[{parquet}]",
        f"run.output_root={out / 'run'}",
        "ray.executor=local",
        "ray.progress_bars=false",
        *settings,
    ]
    for stage in ("ingest", "ner", "names", "candidates"):
        assert cli_main(["run", stage, *sum((["--set", s] for s in sets), [])]) == 0
    return {r["name_key"]: r for r in read_shards(out / "run" / "candidates" / "names_table").to_pylist()}
