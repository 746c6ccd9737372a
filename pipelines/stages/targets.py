"""Targets stage: each identity's display name through SDXL's two text encoders -> the 8x2048 name embedding.

Actors load the text encoders once (``targets.source``: a diffusers SDXL repo id or local directory; fp16 on GPU),
then encode batches of names. The dataset-wide mean name embedding (paper eq. 4, F_mean) is computed from all
shards when the stage finishes and saved beside the manifest as ``mean_name_embedding.npy``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from laioncele.config import Config
from laioncele.io import schema
from laioncele.io.shards import UnitRecord, atomic_write_bytes, iter_shards
from laioncele.targets.encode import (
    embeddings_from_table,
    encode_target_batch,
    load_text_encoders_from_config,
    mean_name_embedding,
    targets_table,
)
from pipelines.runner import UnitTask, stage_dir
from pipelines.stage import Resources, SideOutput, Stage, Unit, read_unit_rows, units_per_shard

MEAN_FILE = "mean_name_embedding.npy"
ROWS_PER_UNIT = 4096


def plan(config: Config, upstream_dir: Path | None) -> list[Unit]:
    assert upstream_dir is not None
    return units_per_shard(upstream_dir / "table", ROWS_PER_UNIT)


class TargetsTask(UnitTask):
    def __init__(self, config: dict[str, Any], out_dir: str, config_hash: str) -> None:
        super().__init__(config, out_dir, config_hash)
        self.encoders = load_text_encoders_from_config(self.config.targets)
        self.table_dir = stage_dir(self.config, "identities") / "table"

    def process(self, unit_id: str, payload: dict[str, Any]) -> UnitRecord:
        rows = read_unit_rows(self.table_dir, payload).select(["identity_id", "name"])
        names = rows.column("name").to_pylist()
        batch = encode_target_batch(names, self.encoders, self.config.targets)
        table = targets_table(rows.column("identity_id").to_pylist(), names, batch)
        return self.write(
            unit_id, table, schema.NAME_TARGETS, rows.num_rows, batch.drops, [payload["shard"]["name"]]
        )


def write_mean(config: Config) -> None:
    """F_mean over every name of the finished stage, from the stored float16 targets (none: no file)."""
    out_dir = stage_dir(config, "targets")
    arrays = [embeddings_from_table(t)[0].astype(np.float32) for _, t in iter_shards(out_dir) if t.num_rows]
    if not arrays:
        (out_dir / MEAN_FILE).unlink(missing_ok=True)
        return
    buffer = io.BytesIO()
    np.save(buffer, mean_name_embedding(arrays).astype(np.float32))
    atomic_write_bytes(out_dir / MEAN_FILE, buffer.getvalue())


TARGETS_STAGE = Stage(
    name="targets",
    schema=schema.NAME_TARGETS,
    config_sections=("targets",),
    upstream="identities",
    plan=plan,
    task=TargetsTask,
    resources=lambda config: Resources(
        concurrency=config.targets.concurrency,
        num_cpus=1,
        num_gpus=1.0 if config.targets.device == "cuda" else 0.0,
    ),
    after=write_mean,
    description="SDXL dual text-encoder name embeddings (8 tokens after BOS) + F_mean",
    side_outputs=(SideOutput(MEAN_FILE, "after", "F_mean, the mean name embedding (paper eq. 4)"),),
)
