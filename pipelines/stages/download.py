"""Download stage: the candidate rows' URLs -> re-encoded image bytes (``laioncele.download.Downloader``).

Each unit is a slice of a ``candidates`` shard; one Ray actor downloads it with its own thread pool and per-host
limits. Failures go to ``download/failures/`` (one row per failed sample with its reason and attempts), so a
permanent failure is recorded once and never retried by a later run; a committed unit is never re-downloaded.
"""

from __future__ import annotations

from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from laioncele.config import Config
from laioncele.download.fetch import Downloader
from laioncele.io import schema
from laioncele.io.schema import carry_columns
from laioncele.io.shards import UnitRecord, finalize_stage
from pipelines.runner import UnitTask, stage_config_hash, stage_dir
from pipelines.stage import Resources, SideOutput, Stage, Unit, read_unit_rows, units_per_shard

FAILURES_DIR = "failures"
SUB_BATCH = 256  # rows per DownloadResult of the Downloader's stream (at most two held at once)


def plan(config: Config, upstream_dir: Path | None) -> list[Unit]:
    return units_per_shard(upstream_dir, config.download.rows_per_unit)


class DownloadTask(UnitTask):
    def __init__(self, config: dict[str, Any], out_dir: str, config_hash: str) -> None:
        super().__init__(config, out_dir, config_hash)
        self.downloader = Downloader(self.config.download, opt_out_names=self.config.names.opt_out_names)
        self.candidates_dir = stage_dir(self.config, "candidates")

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        rows = read_unit_rows(self.candidates_dir, payload)
        ok_parts, failure_parts, counts = [], [], Counter()
        # One stream over the unit: the threads go on with the next sub-batch while one waits for its slowest URL.
        stream = self.downloader.iter_batches(
            rows.select(["sample_id", "url", "caption", "names"]), SUB_BATCH
        )
        with closing(stream) as results:  # closed on any error too: an open stream holds the thread pool
            for index, result in enumerate(results):
                batch = rows.slice(index * SUB_BATCH, SUB_BATCH)
                ok = result.ok
                if (
                    ok.num_rows
                ):  # carry the caption's language and licence along (the Downloader needs neither)
                    ok = carry_columns(ok, batch, ("language", "license"))
                ok_parts.append(ok)
                failure_parts.append(result.failures)
                counts.update(result.counts)
        ok_count = counts.pop("ok", 0)
        inputs = [payload["shard"]["name"]]
        failures = (
            pa.concat_tables(failure_parts) if failure_parts else schema.DOWNLOAD_FAILURES.empty_table()
        )
        # Failures first: the main commit record is the unit's completion mark.
        self.write(
            unit_id,
            failures,
            schema.DOWNLOAD_FAILURES,
            rows.num_rows,
            {},
            inputs,
            out_dir=self.out_dir / FAILURES_DIR,
        )
        ok_table = pa.concat_tables(ok_parts) if ok_parts else schema.DOWNLOAD.empty_table()
        assert ok_table.num_rows == ok_count, (ok_table.num_rows, ok_count)
        return self.write(
            unit_id,
            ok_table,
            schema.DOWNLOAD,
            rows.num_rows,
            counts,
            inputs,
            stats={
                "retried_attempts": int(pc.sum(ok_table.column("attempts")).as_py() or 0) - ok_table.num_rows
            },
        )


def finish(config: Config, out_dir: Path) -> dict[str, Any]:
    """Gather the failures' commit records into their own manifest."""
    unit_ids = [u.unit_id for u in plan(config, stage_dir(config, "candidates"))]
    manifest = finalize_stage(
        out_dir / FAILURES_DIR,
        "download_failures",
        schema.DOWNLOAD_FAILURES,
        stage_config_hash(DOWNLOAD_STAGE, config),
        unit_ids,
    )
    return {"failures": {"manifest": f"{FAILURES_DIR}/manifest.json", "rows": manifest["rows"]}}


DOWNLOAD_STAGE = Stage(
    name="download",
    schema=schema.DOWNLOAD,
    config_sections=("download",),
    upstream="candidates",
    plan=plan,
    task=DownloadTask,
    resources=lambda config: Resources(concurrency=config.download.concurrency, num_cpus=1),
    finish=finish,
    description="img2dataset-based download: safe fetch, opt-out, re-encode; failures by reason",
    side_outputs=(
        SideOutput(
            FAILURES_DIR, "units", "one row per failed sample (download_failures); manifest by finish"
        ),
    ),
)
