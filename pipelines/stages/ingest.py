"""Ingest stage: LAION parquet row groups -> ``ingest`` shards (stable sample_id, cleaned captions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from laioncele import ingest
from laioncele.config import Config
from laioncele.io import schema
from laioncele.io.shards import UnitRecord, write_unit
from pipelines.runner import UnitTask
from pipelines.stage import Resources, Stage, Unit


def plan(config: Config, upstream_dir: Path | None) -> list[Unit]:
    units = ingest.plan_units(config.input.paths, config.ingest.rows_per_unit, config.input.max_rows)
    return [
        Unit(u.unit_id, {"path": u.path, "row_groups": list(u.row_groups), "rows": u.rows}, u.rows)
        for u in units
    ]


class IngestTask(UnitTask):
    """Reads one unit of row groups, cleans it, writes its shards."""

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        unit = ingest.ParquetUnit(unit_id, payload["path"], tuple(payload["row_groups"]), payload["rows"])
        raw = ingest.read_unit(unit)
        result = ingest.clean_batch(raw, self.config.ingest)
        shards = self.config.shards
        return write_unit(
            self.out_dir,
            unit_id,
            result.table,
            schema.INGEST,
            config_hash=self.config_hash,
            rows_in=raw.num_rows,
            drops=result.drops,
            inputs=[f"{unit.path}#rg{unit.row_groups[0]}-{unit.row_groups[-1]}"],
            rows_per_shard=shards.rows_per_shard,
            bytes_per_shard=shards.bytes_per_shard,
            compression=shards.compression,
        )


INGEST_STAGE = Stage(
    name="ingest",
    schema=schema.INGEST,
    config_sections=("input", "ingest"),
    upstream=None,
    plan=plan,
    task=IngestTask,
    resources=lambda config: Resources(concurrency=config.ingest.concurrency, num_cpus=1, tasks=True),
    description="LAION parquet -> cleaned rows with stable sample_id",
)
