"""Corpus-wide aggregations over a finished stage's shards: Ray Data groupby on Ray, plain Arrow locally.

Both paths call the same ``laioncele`` function on the rows of each group, so they give the same answer.
The local path (``ray.executor=local``) concatenates every shard into one table before grouping: its memory
grows with the corpus, so it is for tests and small inputs only; volume runs go through Ray's hash shuffle.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from laioncele.config import Config
from laioncele.io.shards import iter_shards, load_manifest, read_shard
from laioncele.names import index as name_index
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


def _shard_rows(
    config: Config, stage_dir: Path, columns: list[str], transform: Callable[[pa.Table], pa.Table]
) -> Any:
    """A Ray dataset of ``transform`` over each shard of ``stage_dir`` (one shard a batch); None if no shards."""
    import ray

    ensure_ray(config.ray)
    records = load_manifest(stage_dir)["shards"]
    if not records:
        return None
    dataset = ray.data.from_items([{"record": r} for r in records], override_num_blocks=len(records))
    return dataset.map_batches(
        _ReadAndMap,
        fn_constructor_args=(stage_dir, columns, transform),  # an s3:// ObjectPath keeps its endpoint
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2),
    )


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
        dataset = _shard_rows(config, stage_dir, columns, transform)
        if dataset is None:
            return pa.table({})
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


def reduce_name_tallies(
    config: Config,
    stage_dir: Path,
    columns: list[str],
    to_mentions: Callable[[pa.Table], pa.Table],
    finish: Callable[[pa.Table], pa.Table],
) -> pa.Table:
    """``finish`` applied to one tally per name (``laioncele.names.index.TALLIES``) over every shard of
    ``stage_dir``, each shard's rows turned into mention rows by ``to_mentions``; sorted by name key.

    Each shard is summarised per name where it is read; the summaries (capped at ``names.max_rows_per_name``
    samples, exact id sets only up to ``names.exact_counts_up_to``) merge pairwise: on Ray inside Ray Data's
    hash aggregation, which compacts as it goes, so no process holds a name's mentions. ``finish`` runs per
    batch of merged tallies, so only the names it keeps reach the driver.
    """
    max_rows, exact_up_to = config.names.max_rows_per_name, config.names.exact_counts_up_to
    per_shard = partial(_shard_tallies, to_mentions=to_mentions, max_rows=max_rows, exact_up_to=exact_up_to)
    if config.ray.executor == "local":
        merged: dict[str, dict] = {}
        for _, table in iter_shards(stage_dir, columns):
            tallies = per_shard(table)
            for key, tally in zip(
                *(tallies.column(c).to_pylist() for c in ("name_key", "tally")), strict=True
            ):
                merged[key] = name_index.merge_tallies(
                    [merged.get(key, name_index.empty_tally()), tally], max_rows, exact_up_to
                )
        if not merged:
            return pa.table({})
        result = finish(
            pa.table({"name_key": list(merged), "tally": pa.array(list(merged.values()), name_index.TALLY)})
        )
    else:
        # First the names written at least names.min_candidates times (Ray's Arrow-native count), so the
        # tallies are built and merged for those only, not for the corpus's long tail of rare names.
        keys = _shard_rows(config, stage_dir, columns, partial(_mention_keys, to_mentions=to_mentions))
        if keys is None:
            return pa.table({})
        floor = config.names.min_candidates
        frequent = (
            keys.groupby("name_key")
            .count()
            .map_batches(partial(_at_least, floor=floor), batch_format="pyarrow", batch_size=None)
        )
        frequent_keys = pa.concat_arrays(
            [b.column("name_key").combine_chunks() for b in _tables(frequent)] or [pa.array([], pa.string())]
        )
        per_shard = partial(per_shard, keep=frequent_keys)
        tallies = _shard_rows(config, stage_dir, columns, per_shard)
        merged_ds = tallies.groupby("name_key").aggregate(_merge_tallies(max_rows, exact_up_to))
        kept = merged_ds.map_batches(finish, batch_format="pyarrow", batch_size=None)
        tables = _tables(kept)
        result = pa.concat_tables(tables) if tables else None
    if result is None or result.num_rows == 0:
        return pa.table({})
    return result.sort_by("name_key")


def _shard_tallies(
    table: pa.Table,
    to_mentions: Callable[[pa.Table], pa.Table],
    max_rows: int,
    exact_up_to: int,
    keep: pa.Array | None = None,
) -> pa.Table:
    mentions = to_mentions(table)
    if keep is not None:
        mentions = mentions.filter(pc.is_in(mentions.column("name_key"), value_set=keep))
    return name_index.name_tallies(mentions, max_rows, exact_up_to)


def _mention_keys(table: pa.Table, to_mentions: Callable[[pa.Table], pa.Table]) -> pa.Table:
    return to_mentions(table).select(["name_key"])


def _at_least(counts: pa.Table, floor: int) -> pa.Table:
    """Keys whose row count reaches ``floor``: a name written fewer times has fewer distinct samples."""
    return counts.filter(pc.greater_equal(counts.column("count()"), floor)).select(["name_key"])


def _tables(dataset: Any) -> list[pa.Table]:
    """A Ray dataset's non-empty blocks as Arrow tables."""
    tables = [
        pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b
        for b in dataset.iter_batches(batch_format="pyarrow", batch_size=None)
    ]
    return [t for t in tables if t.num_rows]


def _merge_tallies(max_rows: int, exact_up_to: int) -> Any:
    """A Ray Data aggregation of name tallies (``name_index.merge_tallies``); built here so that the local
    executor never imports Ray."""
    from ray.data.aggregate import AggregateFnV2
    from ray.data.block import BlockAccessor

    class MergeTallies(AggregateFnV2):
        def __init__(self) -> None:
            super().__init__("tally", zero_factory=name_index.empty_tally, on="tally", ignore_nulls=True)

        def aggregate_block(self, block: Any) -> dict:
            column = BlockAccessor.for_block(block).to_arrow().column("tally")
            return name_index.merge_tallies(column.to_pylist(), max_rows, exact_up_to)

        def combine(self, current_accumulator: dict, new: dict) -> dict:
            return name_index.merge_tallies([current_accumulator, new], max_rows, exact_up_to)

        def output_field(self, input_schema: Any) -> pa.Field:
            return pa.field(self.name, name_index.TALLY)

    return MergeTallies()


def as_dict(table: pa.Table, key: str, value: str) -> dict[str, Any]:
    if table.num_rows == 0:
        return {}
    return dict(zip(table.column(key).to_pylist(), table.column(value).to_pylist(), strict=True))
