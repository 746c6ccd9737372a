"""Corpus-wide aggregations over a finished stage's shards: Ray Data groupby (``group_apply``) or a bucketed
reduction in Ray tasks (``reduce_name_tallies``) on Ray, plain Arrow locally.

Both paths call the same ``laioncele`` function on the rows of each group, so they give the same answer.
The local path (``ray.executor=local``) concatenates every shard into one table before grouping: its memory
grows with the corpus, so it is for tests and small inputs only; volume runs go through Ray's hash shuffle.
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from laioncele.config import Config
from laioncele.io.shards import iter_shards, load_manifest, read_shard
from laioncele.io.storage import open_input, open_output
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
    samples, exact id sets only up to ``names.exact_counts_up_to``) merge one shard at a time, so no process
    holds a name's mentions. On Ray it is a bucketed two-level reduction (plain Ray tasks, no Ray Data
    shuffle): name keys hash into ``ceil(rows / names.aggregation_bucket_rows)`` buckets; one task per shard
    counts its mention rows per key and writes the counts split by bucket (one Arrow file, a record batch a
    bucket, under ``<output_root>/_scratch``, removed at the end), one task per bucket sums its counts piece
    by piece (``KeyCountFold``) and keeps the keys written at least ``names.min_candidates`` times; a second
    task per shard tallies those names only and writes the tallies split by bucket, and one task per bucket
    folds them in shard by shard (``TallyFold``) and runs ``finish``, so only the names it keeps reach the
    driver. A bucket's state follows the bucket size and the caps, not the corpus or the hottest name.
    The local executor folds every shard's tallies in this process (tests and small inputs).
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
    # The pieces go through files on the output's storage (every node reads it), not the object store: a
    # shuffle's pieces are corpus-sized together, and object-store pages a worker wrote stay in its RSS.
    # absolute: Ray workers do not share the driver's working directory
    scratch = (config.output_root / "_scratch" / f"name-tallies-{uuid.uuid4().hex}").resolve()
    scratch.mkdir(parents=True, exist_ok=True)

    def task(fn: Callable) -> Any:
        return ray.remote(num_cpus=1, max_retries=3)(fn)

    try:
        # 1. mention rows per name key, per shard and bucket; summed per bucket -> the keys worth a tally
        count_map, tally_map = task(_count_pieces), task(_tally_pieces)
        files = ray.get(
            [
                count_map.remote(
                    stage_dir, r, columns, to_mentions, n_buckets, scratch / f"count-{i:06d}.arrow"
                )
                for i, r in enumerate(records)
            ]
        )
        reducer = task(_frequent_keys)
        frequent = ray.get([reducer.remote(files, b, config.names.min_candidates) for b in range(n_buckets)])
        keep = ray.put(pa.concat_arrays([pa.array([], pa.string()), *frequent]))
        _remove(files)
        # 2. tallies of those names, per shard and bucket; folded per bucket -> finish
        files = ray.get(
            [
                tally_map.remote(
                    stage_dir, r, columns, per_shard, n_buckets, keep, scratch / f"tally-{i:06d}.arrow"
                )
                for i, r in enumerate(records)
            ]
        )
        max_rows, exact_up_to = config.names.max_rows_per_name, config.names.exact_counts_up_to
        reducer = task(_finish_bucket)
        parts = ray.get([reducer.remote(files, b, finish, max_rows, exact_up_to) for b in range(n_buckets)])
    finally:
        _remove_tree(scratch)
    parts = [t for t in parts if t.num_rows]
    return pa.concat_tables(parts) if parts else None


def _write_pieces(pieces: list[pa.Table], path: Path) -> Path:
    """One Arrow file, record batch b holding bucket b's piece (empty or not), so a reducer reads its own."""
    with open_output(path) as sink, pa.ipc.new_file(sink, pieces[0].schema) as writer:
        for piece in pieces:
            writer.write_batch(
                pa.record_batch([c.combine_chunks() for c in piece.columns], schema=piece.schema)
            )
    return path


def _read_piece(path: Path, bucket: int) -> pa.Table:
    with open_input(path) as source:
        return pa.Table.from_batches([pa.ipc.open_file(source).get_batch(bucket)])


def _count_pieces(
    stage_dir: Path, record: dict, columns: list[str], to_mentions: Callable, n_buckets: int, out: Path
) -> Path:
    mentions = to_mentions(read_shard(stage_dir, record).select(columns))
    return _write_pieces(name_index.split_by_bucket(name_index.mention_key_counts(mentions), n_buckets), out)


def _tally_pieces(
    stage_dir: Path,
    record: dict,
    columns: list[str],
    per_shard: Callable,
    n_buckets: int,
    keep: pa.Array,
    out: Path,
) -> Path:
    tallies = per_shard(read_shard(stage_dir, record).select(columns), keep=keep)
    return _write_pieces(name_index.split_by_bucket(tallies, n_buckets), out)


def _frequent_keys(files: list[Path], bucket: int, floor: int) -> pa.Array:
    """The keys of one bucket written at least ``floor`` times (a name written fewer times has fewer
    distinct samples), its pieces read one shard at a time."""
    fold = name_index.KeyCountFold()
    for path in files:
        fold.add(_read_piece(path, bucket))
    return fold.at_least(floor)


def _finish_bucket(
    files: list[Path], bucket: int, finish: Callable, max_rows: int, exact_up_to: int
) -> pa.Table:
    """``finish`` of one bucket's tallies, folded in one shard's piece at a time."""
    fold = name_index.TallyFold(max_rows, exact_up_to)
    for path in files:
        fold.add(_read_piece(path, bucket))
    if not fold.merged:
        return pa.table({})
    return finish(fold.table())


def _remove(files: list[Path]) -> None:
    for path in files:
        path.unlink(missing_ok=True)


def _remove_tree(directory: Path) -> None:
    if isinstance(directory, Path):
        shutil.rmtree(directory, ignore_errors=True)
    else:  # an object-store prefix: its keys
        _remove(directory.iterdir())


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
