"""Corpus-wide aggregations over a finished stage's shards: Ray Data groupby on Ray, plain Arrow locally.

Both paths call the same ``laioncele`` function on the rows of each group, so they give the same answer.
The local path (``ray.executor=local``) concatenates every shard into one table before grouping: its memory
grows with the corpus, so it is for tests and small inputs only; volume runs go through Ray's hash shuffle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from laioncele import name_index
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
    """``finish`` applied to one tally per name (``laioncele.name_index.TALLIES``) over every shard of
    ``stage_dir``, each shard's rows turned into mention rows by ``to_mentions``; sorted by name key.

    Each shard is summarised per name where it is read; the summaries (capped at ``names.max_rows_per_name``
    samples, exact id sets only up to ``names.exact_counts_up_to``) merge one shard at a time, so no process
    holds a name's mentions. On Ray it is a bucketed two-level reduction (plain Ray tasks, no Ray Data
    shuffle): name keys hash into ``ceil(rows / names.aggregation_bucket_rows)`` buckets; one task per shard
    counts its mention rows per key and splits the counts by bucket, one task per bucket sums its counts
    piece by piece (``KeyCountFold``) and keeps the keys written at least ``names.min_candidates`` times; a
    second task per shard tallies those names only and splits the tallies by bucket, and one task per bucket
    folds them in shard by shard (``TallyFold``) and runs ``finish``, so only the names it keeps reach the
    driver. A bucket's state follows the bucket size and the caps, not the corpus or the hottest name.
    """
    max_rows, exact_up_to = config.names.max_rows_per_name, config.names.exact_counts_up_to
    per_shard = partial(_shard_tallies, to_mentions=to_mentions, max_rows=max_rows, exact_up_to=exact_up_to)
    if config.ray.executor == "local":
        fold = name_index.TallyFold(max_rows, exact_up_to)
        for _, table in iter_shards(stage_dir, columns):
            fold.add(per_shard(table))
        result = finish(fold.table()) if fold.merged else None
    else:
        result = _bucketed_reduction(config, stage_dir, columns, to_mentions, per_shard, finish)
    if result is None or result.num_rows == 0:
        return pa.table({})
    return result.sort_by("name_key")


def aggregation_buckets(config: Config, rows: int) -> int:
    """How many buckets the candidates reduction splits ``rows`` input rows into."""
    return max(1, math.ceil(rows / config.names.aggregation_bucket_rows))


def _bucketed_reduction(
    config: Config,
    stage_dir: Path,
    columns: list[str],
    to_mentions: Callable[[pa.Table], pa.Table],
    per_shard: Callable[..., pa.Table],
    finish: Callable[[pa.Table], pa.Table],
) -> pa.Table | None:
    import ray

    ensure_ray(config.ray)
    manifest = load_manifest(stage_dir)
    records = manifest["shards"]
    if not records:
        return None
    n_buckets = aggregation_buckets(config, manifest["rows"])

    def task(fn: Callable) -> Any:
        return ray.remote(num_cpus=1, max_retries=3)(fn)

    # 1. mention rows per name key, per shard and bucket; summed per bucket -> the keys worth a tally
    counts = _per_shard_pieces(task(_count_pieces), records, n_buckets, stage_dir, columns, to_mentions)
    floor = config.names.min_candidates
    reducer = task(_frequent_keys)
    frequent = ray.get([reducer.remote([c[b] for c in counts], floor) for b in range(n_buckets)])
    del counts
    keep = ray.put(pa.concat_arrays([pa.array([], pa.string()), *frequent]))
    # 2. tallies of those names, per shard and bucket; folded per bucket -> finish
    tallies = _per_shard_pieces(task(_tally_pieces), records, n_buckets, stage_dir, columns, per_shard, keep)
    max_rows, exact_up_to = config.names.max_rows_per_name, config.names.exact_counts_up_to
    reducer = task(_finish_bucket)
    parts = ray.get(
        [reducer.remote([t[b] for t in tallies], finish, max_rows, exact_up_to) for b in range(n_buckets)]
    )
    parts = [t for t in parts if t.num_rows]
    return pa.concat_tables(parts) if parts else None


def _per_shard_pieces(
    remote: Any,
    records: list[dict],
    n_buckets: int,
    stage_dir: Path,
    columns: list[str],
    fn: Callable,
    *extra: Any,
) -> list[list[Any]]:
    """One task per shard returning ``n_buckets`` pieces; waits until every shard is done, so the reducers
    (which fetch the pieces one at a time) start only then and never wait on a CPU slot a map needs."""
    import ray

    submit = remote.options(num_returns=n_buckets)
    pieces = [submit.remote(stage_dir, record, columns, fn, n_buckets, *extra) for record in records]
    pieces = [p if isinstance(p, list) else [p] for p in pieces]
    firsts = [p[0] for p in pieces]
    ray.wait(firsts, num_returns=len(firsts), fetch_local=False)
    return pieces


def _count_pieces(
    stage_dir: Path, record: dict, columns: list[str], to_mentions: Callable, n_buckets: int
) -> Any:
    mentions = to_mentions(read_shard(stage_dir, record).select(columns))
    return _pieces(name_index.split_by_bucket(name_index.mention_key_counts(mentions), n_buckets))


def _tally_pieces(
    stage_dir: Path, record: dict, columns: list[str], per_shard: Callable, n_buckets: int, keep: pa.Array
) -> Any:
    tallies = per_shard(read_shard(stage_dir, record).select(columns), keep=keep)
    return _pieces(name_index.split_by_bucket(tallies, n_buckets))


def _pieces(tables: list[pa.Table]) -> Any:
    return tables[0] if len(tables) == 1 else tuple(tables)


def _frequent_keys(pieces: list[Any], floor: int) -> pa.Array:
    """The keys of one bucket written at least ``floor`` times: a name written fewer times has fewer
    distinct samples. The pieces are fetched one at a time."""
    import ray

    fold = name_index.KeyCountFold()
    for ref in pieces:
        fold.add(ray.get(ref))
    return fold.at_least(floor)


def _finish_bucket(pieces: list[Any], finish: Callable, max_rows: int, exact_up_to: int) -> pa.Table:
    """``finish`` of one bucket's tallies, folded in one shard's piece at a time."""
    import ray

    fold = name_index.TallyFold(max_rows, exact_up_to)
    for ref in pieces:
        fold.add(ray.get(ref))
    if not fold.merged:
        return pa.table({})
    return finish(fold.table())


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


def as_dict(table: pa.Table, key: str, value: str) -> dict[str, Any]:
    if table.num_rows == 0:
        return {}
    return dict(zip(table.column(key).to_pylist(), table.column(value).to_pylist(), strict=True))
