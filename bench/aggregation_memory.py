"""The candidates aggregation at 1M, 3M and 10M name rows: peak worker memory of the per-name reduction.

A hot name (a celebrity in LAION, or one of the scale corpus's 10 subjects) is written in a share of the whole
corpus, so any step that gathers one name's mentions in one process grows with the corpus. The scale bench saw
it: candidates' largest worker went from 332 MB at 1M rows to 1,214 MB at 10M. This bench runs the reductions
on the same generated ``names`` shards (Zipf over 10 hot names plus a long tail of n_rows/2 names, 10% of
samples listed twice as in LAION's duplicate URLs): the group-by (``group_apply``: every name's rows in one
``map_groups`` call) and the tallies (``reduce_name_tallies``: per-shard capped per-name summaries; since
2026-12-04 a bucketed two-level reduction in plain Ray tasks, name keys hashed into ceil(rows /
names.aggregation_bucket_rows) buckets, each bucket's counts and tallies folded in one shard at a time; before
it, Ray Data's hash aggregation, whose map tasks coalesce up to 1 GiB of input,
DataContext.shuffle_input_batch_bytes, so one task held the corpus's key column). Same answer (checked here
where both run; the tallies' answer also hashed, ``answer_sha256``); memory (RSS, shared object-store pages
included) and time recorded with the load average.

Run: ``python -m bench.aggregation_memory [--rows 1000000 3000000 10000000]`` -> results.json
``scale.candidates_aggregation`` (merged per size through ``bench.results_file.merge_results``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.results_file import merge_results
from bench.scale_bench import PeakRss

ROWS_PER_SHARD = 100_000
COLUMNS = ["sample_id", "similarity", "names", "surface_forms", "second_pass_names"]


def names_batches(n_rows: int, seed: int = 0) -> Iterator[pa.RecordBatch]:
    """``names_found`` rows: 60% name one of 10 hot names (Zipf), the rest one of n_rows/2 tail names (mostly under the floor)."""
    from laioncele.io import schema

    rng = np.random.default_rng(seed)
    hot = np.array([f"hot person {i}" for i in range(10)])
    weights = 1.0 / np.arange(1, 11)
    for start in range(0, n_rows, ROWS_PER_SHARD):
        n = min(ROWS_PER_SHARD, n_rows - start)
        ids = np.arange(start, start + n)
        dup = rng.random(n) < 0.1  # a URL listed in an earlier file too: the same sample id
        ids[dup] = rng.integers(0, max(start, 1), dup.sum()) if start else ids[dup]
        is_hot = rng.random(n) < 0.6
        names = np.where(
            is_hot,
            hot[rng.choice(10, n, p=weights / weights.sum())],
            np.char.add("tail person ", rng.integers(0, max(n_rows // 2, 1), n).astype(str)),
        )
        second = rng.random(n) < 0.3
        names_list = [[x] for x in names.tolist()]
        yield pa.RecordBatch.from_pydict(
            {
                "sample_id": [f"s{i:09d}" for i in ids.tolist()],
                "url": [f"https://img.example/{i}.jpg" for i in ids.tolist()],
                "caption": ["caption"] * n,
                "similarity": pa.array(np.round(rng.random(n), 3), pa.float32()),
                "names": names_list,
                "surface_forms": [[x.title()] for x in names.tolist()],
                "n_names": pa.array(np.ones(n, dtype=np.int32)),
                "language": pa.nulls(n, pa.string()),
                "license": pa.nulls(n, pa.string()),
                "second_pass_names": [
                    lst if s else [] for lst, s in zip(names_list, second.tolist(), strict=True)
                ],
            },
            schema=schema.NAMES_FOUND,
        )


def run_size(
    n_rows: int, work: Path, paths: tuple[str, ...] = ("group_by_name", "tallies")
) -> dict[str, Any]:
    import ray

    from laioncele.config import load_config
    from laioncele.io import schema
    from laioncele.io.shards import write_shards
    from laioncele.names.index import explode_mentions
    from pipelines.aggregate import aggregation_buckets, group_apply, reduce_name_tallies
    from pipelines.runtime import ensure_ray
    from pipelines.stages.names import _kept_names

    stage = work / "names"
    write_shards(
        names_batches(n_rows), stage, schema=schema.NAMES_FOUND, stage="names", rows_per_shard=ROWS_PER_SHARD
    )
    config = load_config(
        None, ["ray.num_cpus=2", "ray.progress_bars=false", f"run.output_root={work / 'out'}"]
    )
    floor, cap, share = config.names.min_candidates, config.names.max_rows_per_name, 0.1
    exact = config.names.exact_counts_up_to
    ensure_ray(config.ray)
    sampler = PeakRss()
    out: dict[str, Any] = {"rows": n_rows}
    answers = {}
    try:
        runs = {
            "group_by_name": lambda: group_apply(
                config,
                stage,
                COLUMNS,
                explode_mentions,
                "name_key",
                partial(_kept_names_from_mentions, min_candidates=floor, max_rows=cap, min_ner_share=share),
            ),
            "tallies": lambda: reduce_name_tallies(
                config,
                stage,
                COLUMNS,
                explode_mentions,
                partial(
                    _kept_names, min_candidates=floor, max_rows=cap, min_ner_share=share, exact_up_to=exact
                ),
            ),
        }
        for name, run in runs.items():
            if name not in paths:
                continue
            sampler.reset()
            start = time.perf_counter()
            answers[name] = run()
            out[name] = {
                "seconds": round(time.perf_counter() - start, 1),
                "worker_peak_rss_mb": round(sampler.worker / 2**20),
                "driver_peak_rss_mb": round(sampler.driver / 2**20),
                "names_kept": answers[name].num_rows,
                "answer_sha256": _answer_sha256(answers[name]),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        out["buckets"] = aggregation_buckets(config, n_rows)
    finally:
        sampler.close()
        ray.shutdown()
    out["same_answer"] = None  # this run measured one path: no comparison (each path's answer_sha256 stands)
    out["same_answer_note"] = f"paths measured in this run: {', '.join(sorted(answers))}"
    if len(answers) == 2:  # counts differ only for names above names.exact_counts_up_to
        same = ["name_key", "display_name", "surface_forms", "kept_ids"]
        out["same_answer"] = answers["group_by_name"].select(same).equals(answers["tallies"].select(same))
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    return out


def _answer_sha256(table: pa.Table) -> str:
    """A digest of the names, forms and kept samples (not the counts, which are sums above
    names.exact_counts_up_to): equal digests, the same answer."""
    same = table.select(["name_key", "display_name", "surface_forms", "kept_ids"])
    return hashlib.sha256(json.dumps(same.to_pylist(), sort_keys=True).encode()).hexdigest()[:16]


def _kept_names_from_mentions(
    mentions: pa.Table, min_candidates: int, max_rows: int, min_ner_share: float
) -> pa.Table:
    """The old per-group reduction: one name's mentions in one call."""
    from laioncele.names.index import name_tallies
    from pipelines.stages.names import _kept_names

    exact = mentions.num_rows  # one name's rows in one call: every count exact
    return _kept_names(
        name_tallies(mentions, max_rows, exact), min_candidates, max_rows, min_ner_share, exact
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.aggregation_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument(
        "--paths",
        nargs="+",
        default=["group_by_name", "tallies"],
        help="reductions to run (both: same answer?)",
    )
    args = parser.parse_args()
    for n in args.rows:
        with tempfile.TemporaryDirectory(prefix="lc-agg-") as tmp:
            result = run_size(n, Path(tmp), tuple(args.paths))
            result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(json.dumps(result), flush=True)
        # key by key: a path this run did not measure keeps its earlier figures (each with its own time and load)
        for key, value in result.items():
            merge_results(("scale", "candidates_aggregation", "by_rows", str(n), key), value)
    merge_results(("scale", "candidates_aggregation", "note"), __doc__.split("\n\n")[1].replace("\n", " "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
