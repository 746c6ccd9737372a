"""Corpus-wide aggregations over a finished stage's shards: Ray Data groupby on Ray, plain Arrow locally.

Both paths call the same ``laioncele`` function on the rows of each group, so they give the same answer.
The local path (``ray.executor=local``) concatenates every shard into one table before grouping: its memory
grows with the corpus, so it is for tests and small inputs only; volume runs go through Ray's hash shuffle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from laioncele.config import Config
from laioncele.shards import iter_shards, load_manifest, read_shard
from pipelines.runtime import ensure_ray


class _ReadAndMap:
    """Ray Data map: read one shard (validated) and turn it into rows to group."""

    def __init__(
        self, stage_dir: str | Path, columns: list[str], transform: Callable[[pa.Table], pa.Table]
    ) -> None:
        self.stage_dir, self.columns, self.transform = stage_dir, columns, transform

    def __call__(self, batch: pa.Table) -> pa.Table:
        tables = [
            self.transform(read_shard(self.stage_dir, record).select(self.columns))
            for record in batch.column("record").to_pylist()
        ]
        return pa.concat_tables(tables)


def group_apply(
    config: Config,
    stage_dir: Path,
    columns: list[str],
    transform: Callable[[pa.Table], pa.Table],
    key: str,
    per_group: Callable[[pa.Table], pa.Table],
) -> pa.Table:
    """``per_group`` applied to the rows of each ``key`` value, over every shard of ``stage_dir`` after
    ``transform``; the result is sorted by ``key`` so it does not depend on scheduling."""
    if config.ray.executor == "local":
        parts = [transform(table) for _, table in iter_shards(stage_dir, columns)]
        merged = pa.concat_tables(parts) if parts else None
        result = per_group(merged) if merged is not None and merged.num_rows else None
    else:
        import ray

        ensure_ray(config.ray)
        records = load_manifest(stage_dir)["shards"]
        if not records:
            return pa.table({})
        dataset = ray.data.from_items([{"record": r} for r in records], override_num_blocks=len(records))
        dataset = dataset.map_batches(
            _ReadAndMap,
            fn_constructor_args=(stage_dir, columns, transform),  # an s3:// ObjectPath keeps its endpoint
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2),
        )
        grouped = dataset.groupby(key).map_groups(per_group, batch_format="pyarrow")
        tables = [
            pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
            for b in grouped.iter_batches(batch_format="pyarrow", batch_size=None)
        ]
        tables = [t for t in tables if t.num_rows]
        result = pa.concat_tables(tables) if tables else None
    if result is None or result.num_rows == 0:
        return pa.table({})
    return result.sort_by(key)


def as_dict(table: pa.Table, key: str, value: str) -> dict[str, Any]:
    if table.num_rows == 0:
        return {}
    return dict(zip(table.column(key).to_pylist(), table.column(value).to_pylist(), strict=True))
