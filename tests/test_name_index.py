"""Corpus-wide name aggregation: counting distinct samples, min_candidates, per-name cap, opt-out."""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from laioncele.io import schema
from laioncele.names.index import (
    TALLIES,
    TALLY,
    KeyCountFold,
    TallyFold,
    aggregate_names,
    count_names,
    empty_tally,
    explode_mentions,
    mention_key_counts,
    merge_tallies,
    name_tallies,
    names_from_tallies,
    select_kept,
    split_by_bucket,
)


def samples(
    rows: list[tuple[str, list[str], float]], second_pass: dict[str, list[str]] | None = None
) -> pa.Table:
    """NAMES_FOUND rows; ``second_pass`` maps a sample id to the names only the second pass found there."""
    second_pass = second_pass or {}
    return pa.table(
        {
            "sample_id": [r[0] for r in rows],
            "url": [f"https://x/{r[0]}" for r in rows],
            "caption": ["c"] * len(rows),
            "similarity": pa.array([r[2] for r in rows], pa.float32()),
            "names": [r[1] for r in rows],
            "surface_forms": [[n.title() for n in r[1]] for r in rows],
            "n_names": pa.array([len(r[1]) for r in rows], pa.int32()),
            "language": pa.nulls(len(rows), pa.string()),
            "license": pa.nulls(len(rows), pa.string()),
            "second_pass_names": [second_pass.get(r[0], []) for r in rows],
        },
        schema=schema.NAMES_FOUND,
    )


TABLE = samples(
    [(f"a{i}", ["brad pitt"], 0.30 + i / 100) for i in range(6)]
    + [("a0", ["brad pitt"], 0.30)]  # the same sample again (duplicate URL across shards): counted once
    + [
        ("b1", ["brad pitt", "angelina jolie"], 0.5),
        ("b2", ["angelina jolie"], 0.2),
        ("c1", ["tom hanks"], 0.9),
    ]
)


def test_explode_and_count_distinct_samples() -> None:
    mentions = explode_mentions(TABLE)
    assert mentions.num_rows == 11
    assert count_names(mentions) == {"brad pitt": 7, "angelina jolie": 2, "tom hanks": 1}
    assert count_names(mentions, min_count=2) == {"brad pitt": 7, "angelina jolie": 2}


def test_aggregate_drops_rare_names_and_caps_by_similarity() -> None:
    names, kept = aggregate_names(explode_mentions(TABLE), min_candidates=2, max_rows_per_name=3)
    rows = {r["name_key"]: r for r in names.to_pylist()}
    assert set(rows) == {"brad pitt", "angelina jolie"}
    assert rows["brad pitt"]["n_candidates"] == 7 and rows["brad pitt"]["display_name"] == "Brad Pitt"
    by_name: dict[str, list[str]] = {}
    for key, sid in zip(
        kept.column("name_key").to_pylist(), kept.column("sample_id").to_pylist(), strict=True
    ):
        by_name.setdefault(key, []).append(sid)
    assert by_name["brad pitt"] == ["b1", "a5", "a4"]  # highest similarity first, capped at 3
    assert sorted(by_name["angelina jolie"]) == ["b1", "b2"]


def test_select_kept_filters_names_and_honours_opt_out() -> None:
    _, kept = aggregate_names(explode_mentions(TABLE), min_candidates=2, max_rows_per_name=3)
    out, drops = select_kept(TABLE, kept, opt_out=frozenset({"angelina jolie"}))
    result = {r["sample_id"]: r["names"] for r in out.to_pylist()}
    assert result == {"a4": ["brad pitt"], "a5": ["brad pitt"], "b1": ["brad pitt"]}
    assert out.column("n_names").to_pylist() == [1, 1, 1]
    assert drops["opted_out_name"] == 2 and drops["no_kept_name"] == TABLE.num_rows - 3


def test_names_ner_seldom_confirmed_keep_only_their_ner_samples() -> None:
    # "teddy bear": NER took it for a name in 1 of 10 samples, the second pass matched the other 9;
    # "brad pitt": NER named him in 6 of 8, the second pass found the 2 lower-case mentions.
    rows = [(f"t{i}", ["teddy bear"], 0.3) for i in range(10)] + [
        (f"p{i}", ["brad pitt"], 0.3) for i in range(8)
    ]
    added = {f"t{i}": ["teddy bear"] for i in range(1, 10)} | {"p6": ["brad pitt"], "p7": ["brad pitt"]}
    table = samples(rows, added)
    names, kept = aggregate_names(
        explode_mentions(table), min_candidates=1, max_rows_per_name=50, min_ner_share=0.2
    )
    by_key = {r["name_key"]: r for r in names.to_pylist()}
    assert by_key["teddy bear"]["n_candidates"] == 1 and by_key["teddy bear"]["n_second_pass"] == 0
    assert by_key["teddy bear"]["ner_share"] == pytest.approx(0.1)
    assert by_key["brad pitt"]["n_candidates"] == 8 and by_key["brad pitt"]["n_second_pass"] == 2
    assert by_key["brad pitt"]["ner_share"] == pytest.approx(0.75)
    teddy = [sid for key, sid in zip(*kept.to_pydict().values(), strict=True) if key == "teddy bear"]
    assert teddy == ["t0"]
    # Off (the default 0.0 here): every mention counts; a sample NER named in a duplicate row counts as NER's.
    dup = samples([("t0", ["teddy bear"], 0.3), ("t0", ["teddy bear"], 0.3)], {"t0": ["teddy bear"]})
    dup = pa.concat_tables([dup, samples([("t0", ["teddy bear"], 0.3)])])
    names, _ = aggregate_names(explode_mentions(dup), min_candidates=1, max_rows_per_name=50)
    assert names.to_pylist()[0]["n_second_pass"] == 0 and names.to_pylist()[0]["ner_share"] == 1.0
    names, _ = aggregate_names(explode_mentions(table), min_candidates=1, max_rows_per_name=50)
    assert {r["name_key"]: r["n_candidates"] for r in names.to_pylist()} == {"teddy bear": 10, "brad pitt": 8}


def _random_names_samples(n: int, seed: int) -> pa.Table:
    """NAMES_FOUND rows over a few names with Zipf-like counts, ties in similarity, names the second pass
    added, and some samples listed twice (a URL in two LAION files)."""
    rng = random.Random(seed)
    keys = [f"person {i}" for i in range(12)]
    rows, added = [], {}
    for i in range(n):
        pool = keys[: rng.choice([2, 3, 12])]
        names = rng.sample(pool, k=rng.choice([1, 1, 2]))
        rows.append((f"s{i:05d}", names, rng.choice([0.2, 0.25, 0.3, rng.random()])))
        if rng.random() < 0.3:
            added[f"s{i:05d}"] = names[:1]
    rows += [rows[rng.randrange(n)] for _ in range(n // 10)]
    return samples(rows, added)


def _merge_split(
    mentions: pa.Table, parts: int, split_seed: int, order_seed: int, exact_up_to: int
) -> pa.Table:
    """Tally ``mentions`` in ``parts`` random parts (a sample's rows may be split between parts, as a URL
    listed in two LAION files is) and merge the tallies pairwise in a shuffled order, as Ray's
    aggregation may."""
    rng = random.Random(split_seed)
    part_of = [rng.randrange(parts) for _ in range(mentions.num_rows)]
    rng = random.Random(order_seed)
    per_name: dict[str, list[dict]] = {}
    for p in range(parts):
        part = mentions.filter(pa.array([q == p for q in part_of]))
        tallies = name_tallies(part, max_rows=7, exact_up_to=exact_up_to)
        for key, tally in zip(*tallies.to_pydict().values(), strict=True):
            per_name.setdefault(key, []).append(tally)
    merged = {}
    for key, tallies in per_name.items():
        rng.shuffle(tallies)
        acc = empty_tally()
        for tally in tallies:
            acc = merge_tallies([acc, tally], max_rows=7, exact_up_to=exact_up_to)
        merged[key] = acc
    return pa.table(
        {"name_key": list(merged), "tally": pa.array(list(merged.values()), TALLY)}, schema=TALLIES
    )


def test_merged_tallies_of_any_split_give_the_one_table_answer() -> None:
    # The pipeline never holds a name's mentions in one place: it tallies shards and merges the tallies in
    # whatever order Ray's aggregation meets them. Any split and order must give the one-table answer while
    # the names stay under the exact-count limit; above it, the same answer for every order.
    table = _random_names_samples(600, seed=3)
    mentions = explode_mentions(table)
    whole = aggregate_names(mentions, min_candidates=3, max_rows_per_name=7, min_ner_share=0.5)
    assert whole[0].num_rows >= 4  # the case is not trivial: several names pass the floor
    approximate = []
    for seed in range(3):
        split = names_from_tallies(_merge_split(mentions, 5, seed, seed, 10_000), 3, 7, 0.5, 10_000)
        assert split[0].equals(whole[0]) and split[1].equals(whole[1])
        approximate.append(names_from_tallies(_merge_split(mentions, 5, 0, seed, 20), 3, 7, 0.5, 20))
    assert all(a[0].equals(approximate[0][0]) and a[1].equals(approximate[0][1]) for a in approximate)
    # above the limit a sample split over two parts counts twice; the kept samples are still the best distinct
    counts = dict(
        zip(*approximate[0][0].select(["name_key", "n_candidates"]).to_pydict().values(), strict=True)
    )
    exact = dict(zip(*whole[0].select(["name_key", "n_candidates"]).to_pydict().values(), strict=True))
    assert any(counts[k] > exact[k] for k in exact if exact[k] > 20)
    assert approximate[0][1].equals(whole[1])


def _hot_name_shards(n_shards: int, rows_per_shard: int) -> list[pa.Table]:
    """Shards in which every row names one hot person (plus, in a row in ten, one of a few others):
    the corpus-wide pattern of a celebrity, whose mentions grow with the corpus."""
    rng = random.Random(11)
    shards = []
    for s in range(n_shards):
        rows = []
        for i in range(rows_per_shard):
            sid = f"s{s:03d}-{i:04d}" if rng.random() > 0.05 else f"s000-{rng.randrange(rows_per_shard):04d}"
            names = ["hot person"] + ([f"other {rng.randrange(5)}"] if i % 10 == 0 else [])
            rows.append((sid, names, round(rng.random(), 3)))
        shards.append(samples(rows, {r[0]: ["hot person"] for r in rows if rng.random() < 0.2}))
    return shards


def test_tally_fold_state_stays_bounded_for_a_hot_name() -> None:
    # The candidates reducers fold one shard's tallies at a time. A name in every row of every shard (12,000
    # mentions) must hold no more than a capped tally: ids up to exact_up_to, max_rows best samples twice,
    # its forms. A reduction that gathered the name's mentions in one call would hold all 12,000.
    max_rows, exact_up_to = 20, 100
    shards = _hot_name_shards(40, 300)
    mentions = [explode_mentions(t) for t in shards]
    fold = TallyFold(max_rows, exact_up_to)
    for shard in mentions:
        fold.add(name_tallies(shard, max_rows, exact_up_to))
    hot_mentions = sum(int(pc.sum(pc.equal(m.column("name_key"), "hot person")).as_py()) for m in mentions)
    assert hot_mentions == 12_000
    per_name_bound = 2 * exact_up_to + 2 * max_rows + 2  # ids, ner ids, best and best NER, forms
    assert fold.max_held <= 6 * per_name_bound  # the hot name and the 5 others
    # the folded answer: the one-table answer's kept samples and names (counts above exact_up_to are sums)
    folded = names_from_tallies(fold.table(), 5, max_rows, 0.1, exact_up_to)
    whole = aggregate_names(pa.concat_tables(mentions), 5, max_rows, 0.1)
    assert folded[1].equals(whole[1])
    assert folded[0].column("name_key").equals(whole[0].column("name_key"))
    # twice the corpus, the same bound: the state follows the caps, not the mentions
    more = TallyFold(max_rows, exact_up_to)
    for shard in _hot_name_shards(80, 300):
        more.add(name_tallies(explode_mentions(shard), max_rows, exact_up_to))
    assert more.max_held <= 6 * per_name_bound


def test_key_count_fold_sums_pieces_within_bounded_state() -> None:
    rng = random.Random(2)
    pieces = []
    for _ in range(300):
        keys = [f"k{rng.randrange(200)}" for _ in range(100)]
        pieces.append(mention_key_counts(pa.table({"name_key": pa.array(keys, pa.string())})))
    fold = KeyCountFold()
    for piece in pieces:
        fold.add(piece)
    expected: dict[str, int] = {}
    for piece in pieces:
        for k, c in zip(*piece.to_pydict().values(), strict=True):
            expected[k] = expected.get(k, 0) + c
    assert sorted(fold.at_least(160).to_pylist()) == sorted(k for k, c in expected.items() if c >= 160)
    assert 0 < len(fold.at_least(160)) < len(expected)
    assert sum(p.num_rows for p in pieces) > 20_000
    assert fold.max_rows_held <= 2 * 1024 + 2 * max(p.num_rows for p in pieces)


def test_split_by_bucket_puts_each_name_in_one_bucket() -> None:
    mentions = explode_mentions(_random_names_samples(500, seed=4))
    first, second = mentions.slice(0, 300), mentions.slice(300)
    pieces = [split_by_bucket(part, 4) for part in (first, second)]
    assert sum(t.num_rows for parts in pieces for t in parts) == mentions.num_rows
    bucket_of: dict[str, int] = {}
    for parts in pieces:
        for b, table in enumerate(parts):
            for key in table.column("name_key").to_pylist():
                assert bucket_of.setdefault(key, b) == b  # the same bucket in every shard
    assert len(set(bucket_of.values())) > 1


@pytest.mark.ray
def test_candidates_reduction_on_ray_matches_the_local_answer(ray_local, tmp_path: Path) -> None:
    # Shards that list some samples twice across files; Ray's partitioned reduction must count them once.
    from laioncele.config import load_config
    from laioncele.io.shards import write_shards
    from pipelines.aggregate import reduce_name_tallies
    from pipelines.stages.names import _kept_names

    table = _random_names_samples(3000, seed=5)
    stage = tmp_path / "names"
    write_shards(table, stage, schema=schema.NAMES_FOUND, stage="names", config_hash="x", rows_per_shard=400)
    columns = ["sample_id", "similarity", "names", "surface_forms", "second_pass_names"]

    def answer(executor: str, overrides: list[str] = ()) -> pa.Table:
        config = load_config(
            None,
            [
                f"ray.executor={executor}",
                "names.max_rows_per_name=20",
                "ray.num_cpus=2",
                "ray.progress_bars=false",
                f"run.output_root={tmp_path / 'out'}",  # the reduction's scratch files
                *overrides,
            ],
        )
        finish = partial(_kept_names, min_candidates=5, max_rows=20, min_ner_share=0.3, exact_up_to=10_000)
        return reduce_name_tallies(config, stage, columns, explode_mentions, finish)

    local, on_ray = answer("local"), answer("ray")
    assert local.num_rows >= 5
    assert on_ray.equals(local)
    # the same answer in 5 buckets (3,000 input rows, 700 a bucket): each bucket reduced by its own task
    assert answer("ray", ["names.aggregation_bucket_rows=700"]).equals(local)
    assert not any((tmp_path / "out" / "_scratch").iterdir())  # the scratch pieces are removed
